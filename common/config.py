"""Run configuration: frozen dataclasses, YAML presets (``common/configs/``), ``key=value``.

Example:
    >>> cfg = apply_overrides(Config(), ["optim.lr=0.01", "model.name=resnet34"])
    >>> cfg.optim.lr, cfg.model.name
    (0.01, 'resnet34')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from common.augment import color_jitter

# Package data, so that an installed wheel has its presets as an editable install does.
CONFIG_DIR = Path(str(resources.files("common") / "configs"))


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fgnet"  # a common.datasets.DATASETS name, synthetic, or names joined by +
    root: str | None = None  # folder or CSV file; FG-NET is found through AGEZOO_FGNET_DIR
    size: int = 224  # aligned crop side in pixels
    margin: float = 0.2
    detector: str = "blazeface"  # images without landmarks: a common.detectors.DETECTORS name
    landmarks: bool = True  # false: every image aligned by the detector, as agezoo predict sees it
    num_classes: int = 101  # ages 0 .. num_classes - 1
    synthetic_persons: int = 40
    synthetic_images_per_person: int = 8


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet50"
    weights: str = "auto"  # auto | imagenet | none | PATH
    input_size: int | None = None  # network input; defaults to data.size
    freeze_backbone: bool = False


@dataclass(frozen=True)
class LossConfig:
    name: str = "mean_variance"  # mean_variance | softmax | l2
    lambda_mean: float = 0.2
    lambda_var: float = 0.05
    label_sigma: float = 0.0  # > 0: CE against a Gaussian of this std (years) around the age
    # true: an image whose data set gives the label's spread (APPA's vote std) takes a Gaussian
    # of that std as its target; the others keep label_sigma
    vote_sigma: bool = False


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 30
    schedule: str = "cosine"  # cosine | step | constant
    step_size: int = 10
    gamma: float = 0.1
    early_stopping: int = 0  # patience in epochs; 0 = off
    band_balance: float = 0.0  # sampling by age decade: 0 as the data come, 1 every decade alike


@dataclass(frozen=True)
class ProtocolConfig:
    kind: str = "holdout"  # holdout | kfold | lopo | official (AAF: its val.txt is the test set)
    k: int = 5
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    # official only: the test people train too (a final model, no test figures); the
    # validation people are those of the held-out split
    train_on_test: bool = False


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    seed: int = 0
    augment: bool = True
    augment_color: str = "mild"  # a row of common.augment.COLOR
    out_dir: str = "runs"
    run_dir: str | None = None  # default: OUT_DIR/FRAMEWORK-MODEL-LOSS-TIMESTAMP
    resume: bool = False  # continue the run in run_dir from its last checkpoint
    fold: int = 0  # which fold of the protocol to train (train.py trains one)
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    amp: bool = True  # mixed precision on GPUs
    channels_last: bool = True  # memory format on GPUs (PyTorch)
    xla: bool = False  # jit_compile the Keras train step on TensorFlow GPUs (always on JAX)
    max_steps_per_epoch: int = 0  # 0 = all batches; >0 for smoke tests
    tensorboard: bool = True  # when the tensorboard package is installed

    def __post_init__(self):
        color_jitter(self.augment_color)  # an unknown name fails when the config is read


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def comparable(cfg_dict: dict) -> dict:
    """The settings a resumed run must share with the run it continues (not where it runs,
    or whether it logs to TensorBoard). A setting added since the run was made counts as its
    default."""
    try:
        cfg_dict = to_dict(from_dict(Config, cfg_dict))
    except (TypeError, ValueError):
        pass  # a config of another schema: compared as it is, and so refused
    skip = ("resume", "run_dir", "device", "tensorboard")
    return {k: v for k, v in cfg_dict.items() if k not in skip}


def _coerce(value, tp, where: str):
    """Converts a YAML / command-line value to the field's declared type."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: cannot read {value!r} as {tp}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{where}: {value!r} is not a boolean")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where}: {value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {value!r} is not an integer") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {value!r} is not a number") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: {value!r} is not a string")
        return str(value)
    raise ValueError(f"{where}: unsupported type {tp}")


def from_dict(cls, data: dict | None, where: str = "config"):
    """Builds a (nested) config dataclass; unknown keys are an error that names them."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, tp, f"{where}.{name}")
    return cls(**kwargs)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Applies ``section.key=value`` (or top-level ``key=value``) overrides."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {item!r}: no config section {part!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else value
    return from_dict(Config, data)


def preset_path(name_or_path: str) -> Path:
    """A preset name (``common/configs/NAME.yaml``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        return path
    path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = training_presets()
        raise FileNotFoundError(f"no preset {name_or_path!r} in {CONFIG_DIR}; known: {known}")
    return path


def training_presets() -> list[str]:
    """The training presets in ``common/configs/`` (the ``bench-*`` files are benchmark presets)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("bench-"))


def load_config(name_or_path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML preset, then the overrides."""
    cfg = Config()
    if name_or_path:
        path = preset_path(name_or_path)
        cfg = from_dict(Config, yaml.safe_load(path.read_text()) or {}, where=path.name)
    return apply_overrides(cfg, list(overrides))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
