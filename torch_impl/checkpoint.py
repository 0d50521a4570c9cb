"""Checkpoints that a kill cannot tear and a changed byte cannot slip through.

``save_checkpoint`` writes through a temporary file and a rename, with a CRC-32 of every
tensor and value inside (``crc32``): PyTorch's zip reader does not check its own CRCs, so a
flipped byte in a weight would otherwise load silently. ``load_checkpoint_file`` names the
file when it cannot be read or its content no longer matches.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import torch

from common import results, runner
from common.results import CorruptFileError

KEY = "crc32"


def _crc(value, crc: int = 0) -> int:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        return zlib.crc32(memoryview(data), zlib.crc32(str(value.dtype).encode(), crc))
    if isinstance(value, dict):
        for key, item in value.items():
            crc = _crc(item, zlib.crc32(repr(key).encode(), crc))
        return crc
    if isinstance(value, (list, tuple)):
        for item in value:
            crc = _crc(item, crc)
        return crc
    return zlib.crc32(repr(value).encode(), crc)


def content_crc(state: dict) -> int:
    return _crc({k: v for k, v in state.items() if k != KEY}) & 0xFFFFFFFF


def save_checkpoint(state: dict, path: str | Path) -> None:
    """torch.save with the content's CRC-32, to a temporary file, then renamed into place."""
    buf = io.BytesIO()
    torch.save({**state, KEY: content_crc(state)}, buf)
    results.atomic_write_bytes(path, buf.getvalue())


def load_checkpoint_file(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint's dict; :class:`CorruptFileError` naming the file when it is cut short,
    unreadable or changed since it was written (files without a CRC are taken as they are)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CorruptFileError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    if isinstance(state, dict) and KEY in state:
        stored = state.pop(KEY)
        if stored != content_crc(state):
            raise CorruptFileError(f"{path}: changed since it was written (CRC-32 differs)")
    return state


def resume_state(path: str | Path, cfg, fold_name: str, fold_hash: str, map_location) -> dict:
    """The last checkpoint of an interrupted run, checked to belong to this config and fold;
    :class:`common.runner.ResumeError` (nothing changed on disk) otherwise."""
    try:
        state = load_checkpoint_file(path, map_location=map_location)
    except CorruptFileError as exc:
        raise runner.ResumeError(
            f"{exc}; nothing was changed: move it away to start afresh"
        ) from exc
    runner.check_same_config(state["config"], cfg, Path(path).parent)
    if state["fold_hash"] != fold_hash or state["fold"] != fold_name:
        raise runner.ResumeError(f"{Path(path).parent}: its checkpoint was made on other folds")
    return state
