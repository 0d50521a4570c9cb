"""The one table from a backend's name to its modules, and the model lookup of ``agezoo predict``.

Every framework package offers the same modules (as einops' backends do): ``train`` with
``fit`` and ``main``, ``predictor`` with ``load_predictor(path, device)``, ``export`` with
``main``. This table is the only place that names them; they are imported on first use, so a
backend that is not installed costs nothing until it is asked for.

Example:
    >>> BACKENDS["torch"].run_file, BACKENDS["keras"].run_file
    ('best.pt', 'model.keras')
    >>> backend_for_file("model.onnx").name
    'onnx'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from common import results
from common.predictor import ModelNotFoundError, Predictor


@dataclass(frozen=True)
class Backend:
    """Where one backend's code lives and which files are its own.

    Attributes:
        name: ``torch``, ``keras`` or ``onnx`` (the ``framework`` of results and model cards).
        package: the module prefix of its ``train`` / ``predictor`` / ``export`` modules.
        predictor: the module with ``load_predictor(path, device)``.
        run_file: the file that marks one of its run folders (``None``: it has none).
        suffixes: the model file suffixes it loads.
        trains: whether it has ``train`` (``fit``, ``main``) and ``export`` modules.
    """

    name: str
    package: str
    predictor: str
    run_file: str | None
    suffixes: tuple[str, ...]
    trains: bool = True

    def module(self, part: str) -> ModuleType:
        """``train``, ``predictor`` or ``export`` of this backend, imported now."""
        if not self.trains and part != "predictor":
            raise ValueError(f"the {self.name} backend has no {part} module")
        return importlib.import_module(
            self.predictor if part == "predictor" else self.package + "." + part
        )


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "torch_impl", "torch_impl.predictor", results.TORCH_BEST, (".pt", ".pth")),
        Backend("keras", "tf_impl", "tf_impl.predictor", results.KERAS_MODEL, (".keras",)),
        Backend("onnx", "common", "common.onnx_predictor", None, (".onnx",), trains=False),
    )
}
TRAINING = tuple(name for name, b in BACKENDS.items() if b.trains)  # torch, keras


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown framework {name!r}; known: {list(BACKENDS)}")
    return BACKENDS[name]


def backend_of_run(run_dir: str | Path) -> Backend | None:
    """The backend whose run file the folder holds, or ``None``."""
    run_dir = Path(run_dir)
    return next(
        (b for b in BACKENDS.values() if b.run_file and (run_dir / b.run_file).is_file()), None
    )


def backend_for_file(path: str | Path) -> Backend | None:
    """The backend that loads a model file of this suffix, or ``None``."""
    suffix = Path(path).suffix.lower()
    return next((b for b in BACKENDS.values() if suffix in b.suffixes), None)


def check_members(name: str, card: dict) -> None:
    """An ensemble's temperature was fitted on its members' files: refuse it when a member's
    name now points at another file (a member released again without the ensemble refitted)."""
    import weights

    for member, sha in zip(card["members"], card.get("member_sha256", []), strict=False):
        entry = weights.ENTRIES.get(member)
        if entry is not None and entry.sha256 != sha:
            raise ModelNotFoundError(
                f"ensemble {name} was fitted on {member} sha256 {sha[:12]}…, which is released "
                f"now as {entry.sha256[:12]}…; refit it: {card.get('command', '')}"
            )


def load_predictor(
    ref: str | Path | list[str | Path] | None = None, device: str = "auto"
) -> Predictor:
    """A predictor for a run folder, a model file (``.pt``, ``.keras``, ``.onnx``) or a name.

    Run folders hold ``best.pt`` (PyTorch) or ``model.keras`` (Keras). A name is looked up among
    the trained age models of the weights registry (a released ensemble's name loads its
    members with its fitted temperature); ``None`` takes the registry's default. A list of
    several references is their ensemble (``common.ensemble``).
    """
    if isinstance(ref, (list, tuple)):
        if len(ref) == 1:
            return load_predictor(ref[0], device)
        from common.ensemble import ensemble

        return ensemble([load_predictor(r, device) for r in ref])
    if ref is None:
        ref = _default_model_name()
    import weights

    if isinstance(ref, str) and ref in weights.ENSEMBLES:
        from common.ensemble import ensemble

        card = weights.ENSEMBLES[ref]
        check_members(ref, card)
        members = [load_predictor(m, device) for m in card["members"]]
        both = ensemble(members, temperature=card["temperature"])
        both.card = replace(both.card, arch=f"{ref} = {' + '.join(card['members'])}")
        return both
    path = Path(ref)
    if path.is_dir():
        found = backend_of_run(path)
        if found is None:
            marks = " nor ".join(b.run_file for b in BACKENDS.values() if b.run_file)
            raise ModelNotFoundError(f"{path}: a folder with neither {marks}")
        return found.module("predictor").load_predictor(path, device)
    if path.is_file():
        found = backend_for_file(path)
        if found is None:
            known = ", ".join(s for b in BACKENDS.values() for s in b.suffixes)
            raise ModelNotFoundError(f"{path}: not a model file ({known})")
        return found.module("predictor").load_predictor(path, device)
    return load_predictor(_registered_file(str(ref)), device)


def _default_model_name() -> str:
    import weights

    name = weights.default_age_model()
    if name is None:
        raise ModelNotFoundError(
            "no model named and no default age model is registered yet: pass --model RUN_DIR "
            "(a folder from make train-torch / make train-tf), a .pt / .keras / .onnx file, or "
            f"one of the registered age models ({', '.join(weights.age_models()) or 'none'})"
        )
    return name


def _registered_file(name: str) -> Path:
    import weights

    try:
        return weights.age_model_file(name)
    except KeyError as exc:
        known = ", ".join(weights.age_models()) or "none registered yet"
        raise ModelNotFoundError(
            f"{name}: not a run folder, a model file or a registered age model ({known})"
        ) from exc
