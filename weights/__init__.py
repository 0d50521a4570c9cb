"""Registry of pretrained weight entries: weights are data, verified on load.

Each entry names its framework and architecture, where the file comes from, its hash, the
preprocessing it expects, the data it was trained on and its licence. Files are looked up
locally first (``$AGEZOO_WEIGHTS_DIR``, then the framework's cache) and only then downloaded.
The one exception in the repository is the zoo's released model: ``weights/released/`` holds
it as ONNX with its model card (``python -m agezoo.release``); every ``*.card.json`` there is
registered as an age model, and its file is refused unless the sha256 matches the card.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights could be found neither locally nor downloaded."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    framework: str  # torch | keras
    arch: str
    url: str
    sha256: str  # full hash when known, else the prefix the file name carries
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    data: str
    licence: str
    mae: float | None = None  # age MAE, for trained age models
    task: str = "backbone"  # backbone (ImageNet features) | age (a whole trained age model)
    default: bool = False  # the age model agezoo predict uses when none is named

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_TV = "https://download.pytorch.org/models/"
_TV_LICENCE = "BSD-3-Clause (torchvision); ImageNet terms apply"

ENTRIES: Registry[WeightsEntry] = Registry("weights entry")
register = ENTRIES.register


for _arch, _file, _sha, _size in [
    ("resnet34", "resnet34-b627a593.pth", "b627a593", 224),
    ("resnet50", "resnet50-11ad3fa6.pth", "11ad3fa6", 224),
    ("inception_v3", "inception_v3_google-0cc3c7bd.pth", "0cc3c7bd", 299),
    (
        "mobilenet_v2",
        "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        224,
    ),
]:
    register(
        WeightsEntry(
            name=f"torch/{_arch}/imagenet",
            framework="torch",
            arch=_arch,
            url=_TV + _file,
            sha256=_sha,
            input_size=_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            data="ImageNet-1k",
            licence=_TV_LICENCE,
        )
    )


def weights_dirs() -> list[Path]:
    """Local folders searched for weight files, in order."""
    dirs = []
    if os.environ.get("AGEZOO_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["AGEZOO_WEIGHTS_DIR"]).expanduser())
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    dirs.append(Path.home() / ".keras" / "models")
    return dirs


def find_local(filename: str) -> Path | None:
    for folder in weights_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return None


def sha256_prefix_in_name(path: str | Path) -> str | None:
    """The hex hash prefix torchvision-style names carry (``resnet50-11ad3fa6.pth``)."""
    m = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", Path(path).name)
    return m.group(1) if m else None


def check_sha256(path: str | Path, expected: str) -> None:
    """Raises ValueError unless the file's sha256 starts with ``expected``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    if not h.hexdigest().startswith(expected.lower()):
        raise ValueError(
            f"{path}: sha256 {h.hexdigest()[:16]}… does not match the expected {expected[:16]}…; "
            "the file is corrupt or not the one named"
        )


def offline_message(entry: WeightsEntry, reason: str) -> str:
    where = weights_dirs()[0]
    return (
        f"{entry.arch}: ImageNet weights unavailable ({reason}). Download {entry.url} "
        f"elsewhere and put {entry.filename} in {where} (or set AGEZOO_WEIGHTS_DIR to its "
        "folder), or train from scratch with weights=none."
    )


def load_pretrained(weights: str, arch: str, load: Callable[[], object]) -> bool:
    """The weights policy both frameworks share; returns whether ImageNet weights were loaded.

    ``imagenet`` must load (WeightsUnavailableError otherwise); ``auto`` falls back to training
    from scratch after a prominent warning; anything else loads nothing here.
    """
    if weights not in ("imagenet", "auto"):
        return False
    try:
        load()
        return True
    except WeightsUnavailableError as exc:
        if weights == "imagenet":
            raise
        warnings.warn(
            f"{exc}\n>>> TRAINING {arch} FROM SCRATCH (pretrained: false) <<<", stacklevel=3
        )
        return False


# ------------------------------------------------------------------ trained age models

RELEASED_DIR = Path(__file__).resolve().parent / "released"


def _cards(folder: Path, pattern: str) -> dict[str, dict]:
    import json

    cards = {}
    for path in sorted(folder.glob(pattern)):
        card = json.loads(path.read_text())
        cards[card["name"]] = card
    return cards


def released_cards(folder: Path | None = None) -> dict[str, dict]:
    """The released files' cards (``weights/released/*.card.json``, or another folder's), by
    registry name."""
    return _cards(folder or RELEASED_DIR, "*.card.json")


def released_entry(card: dict) -> WeightsEntry:
    """The registry entry of a released model's card."""
    return WeightsEntry(
        name=card["name"],
        framework=card["framework"],
        arch=card["arch"],
        url="released/" + card["weights_file"],
        sha256=card["sha256"],
        input_size=card["input_size"],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        data=card["data"],
        licence=card["licence"],
        mae=card.get("val_mae"),
        task="age",
        default=bool(card.get("default")),
    )


for _card in released_cards().values():
    register(released_entry(_card))


def released_ensembles(folder: Path | None = None) -> dict[str, dict]:
    """The released ensembles' cards (``weights/released/*.ensemble.json``: member names and
    the temperature fitted for their averaged distribution), by registry name."""
    return _cards(folder or RELEASED_DIR, "*.ensemble.json")


ENSEMBLES: dict[str, dict] = released_ensembles()


def age_models() -> list[str]:
    """Names of the trained age models: registered ones, ensembles and general models trained
    here."""
    registered = (n for n, e in ENTRIES.items() if e.task == "age")
    return sorted({*registered, *ENSEMBLES, *local_general()})


def default_age_model() -> str | None:
    """The registered default, else the newest general model trained here (PyTorch first)."""
    defaults = [name for name, card in ENSEMBLES.items() if card.get("default")]
    defaults += [name for name, e in ENTRIES.items() if e.task == "age" and e.default]
    if defaults:
        return defaults[0]
    local = sorted(local_general(), key=lambda n: (not n.startswith("torch/"), n))
    return local[0] if local else None


def local_general() -> dict[str, Path]:
    """``FRAMEWORK/ARCH/general`` → its newest card, from ``make model``."""
    import json

    found: dict[str, Path] = {}
    for folder in (weights_dirs()[0], trained_weights_dir()):
        if not folder.is_dir():
            continue
        for card in sorted(folder.glob("general-*.card.json"), key=lambda c: c.stat().st_mtime):
            found[json.loads(card.read_text())["name"]] = card
    return found


def trained_weights_dir() -> Path:
    """Where trained age models are kept when they are not in ``$AGEZOO_WEIGHTS_DIR``."""
    from common.datasets import default_cache_dir

    return default_cache_dir() / "weights"


def age_model_file(name: str) -> Path:
    """The local, hash-checked file of a registered age model (downloaded when it has a URL).

    Raises KeyError for a name that is no age model, WeightsUnavailableError when the file can
    be had neither locally nor from its URL.
    """
    local = local_general()
    if name in local:
        return _file_of_card(local[name])
    entry = ENTRIES.get(name)
    if entry is None or entry.task != "age":
        raise KeyError(name)
    if entry.url.startswith("released/"):
        path = RELEASED_DIR / entry.filename
        if not path.is_file():
            raise WeightsUnavailableError(f"{entry.name}: the released file {path} is missing")
        check_sha256(path, entry.sha256)
        return path
    path = find_local(entry.filename)
    if path is None and (trained_weights_dir() / entry.filename).is_file():
        path = trained_weights_dir() / entry.filename
    if path is None and entry.url.startswith(("http://", "https://")):
        from common.datasets import download_file

        try:
            path = download_file(entry.url, trained_weights_dir() / entry.filename)
        except OSError as exc:
            raise WeightsUnavailableError(_age_offline(entry, str(exc))) from exc
    if path is None:
        raise WeightsUnavailableError(_age_offline(entry, "file not found"))
    check_sha256(path, entry.sha256)
    return path


def _age_offline(entry: WeightsEntry, reason: str) -> str:
    return (
        f"{entry.name}: weights unavailable ({reason}). Put {entry.filename} in "
        f"{weights_dirs()[0]} or {trained_weights_dir()}, or train it with `make model`."
    )


# ------------------------------------------------------------------ AAF-pretrained backbones


# model.weights names of the age-pretrained weights agezoo.pretrain publishes, and how to make
# them: AAF alone (make pretrain), AAF + APPA (never FG-NET: the LOPO models start there).
PRETRAINED_KINDS = {
    "aaf": ("AAF", "make pretrain FRAMEWORK={framework} MODEL={arch}", "AGEZOO_AAF_DIR"),
    "aaf-appa": (
        "AAF + APPA",
        "python -m agezoo.pretrain --kind aaf-appa --framework {framework} --model {arch}",
        "AGEZOO_AAF_DIR and AGEZOO_APPA_DIR",
    ),
}


def aaf_weights(framework: str, arch: str, kind: str = "aaf") -> Path:
    """The newest age-pretrained weights of a kind (``PRETRAINED_KINDS``) for this framework
    and architecture, hash-checked.

    Looks for ``KIND-FRAMEWORK-ARCH-*.card.json`` (written by ``agezoo.pretrain``) in
    ``$AGEZOO_WEIGHTS_DIR`` and the cache; the weights file its card names must match its hash.
    """
    if kind not in PRETRAINED_KINDS:
        raise ValueError(f"unknown pretrained weights {kind!r}; known: {list(PRETRAINED_KINDS)}")
    data, command, needs = PRETRAINED_KINDS[kind]
    dirs = [d for d in (weights_dirs()[0], trained_weights_dir()) if d.is_dir()]
    cards = [c for d in dirs for c in d.glob(f"{kind}-{framework}-{arch}-*.card.json")]
    if not cards:
        where = " or ".join(str(d) for d in dirs) or str(trained_weights_dir())
        raise WeightsUnavailableError(
            f"no {data}-pretrained {framework} {arch} weights in {where}; train them with "
            f"`{command.format(framework=framework, arch=arch)}` (needs {needs})"
        )
    return _file_of_card(max(cards, key=lambda c: c.stat().st_mtime))


def _file_of_card(card_file: Path) -> Path:
    """The weights file a model card names, checked against the card's sha256."""
    import json

    card = json.loads(card_file.read_text())
    path = card_file.parent / card["weights_file"]
    if not path.is_file():
        raise WeightsUnavailableError(f"{card_file.name} names {path.name}, which is missing")
    check_sha256(path, card["sha256"])
    return path
