"""Feeding Keras from the uint8 face cache: batches by index, the forward pass over indices, and
the malloc setting that keeps the CPU training loop fast."""

from __future__ import annotations

import sys

import keras
import numpy as np

from common.cache import FaceArrays
from common.losses import decode_outputs
from common.sampling import epoch_order


class FaceBatches(keras.utils.PyDataset):
    """Batches of (float32 RGB 0..255 images, ages) sliced from the uint8 cache by index; with
    ``widths`` (per-image target widths, ``loss.vote_sigma``) the targets are (N, 2) rows of
    age and width (``tf_impl.losses.split_targets``)."""

    def __init__(
        self,
        images: np.ndarray,
        ages: np.ndarray,
        idx: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        max_batches: int = 0,
        band_balance: float = 0.0,
        widths: np.ndarray | None = None,
    ):
        super().__init__()
        self.images, self.ages, self.idx = images, ages, np.asarray(idx)
        self.widths = widths
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.band_balance = band_balance
        n = len(self.idx) // batch_size if shuffle else -(-len(self.idx) // batch_size)
        self.n = max(1, min(n, max_batches) if max_batches else n)
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.idx
        ages = self.ages[self.idx]
        return epoch_order(self.idx, ages, self.seed, self.epoch, self.band_balance)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        sel = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        y = self.ages[sel].astype(np.float32)
        if self.widths is not None:
            y = np.stack([y, self.widths[sel].astype(np.float32)], axis=1)
        return self.images[sel].astype(np.float32), y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def outputs(
    model: keras.Model, faces: FaceArrays, idx: np.ndarray, batch_size: int = 128, mirror=False
):
    """Raw network outputs (logits) for the given image indices; of the mirrored images with
    ``mirror``.

    Batch by batch with ``predict_on_batch``: ``model.predict`` on a ``PyDataset`` would go
    through ``from_generator`` and undo ``keep_freed_memory`` (see ``KeepFreedMemory``).
    """
    if len(idx) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    batches = FaceBatches(faces.images, faces.ages, idx, batch_size)
    return np.concatenate(
        [
            np.asarray(model.predict_on_batch(_mirror(batches[i][0]) if mirror else batches[i][0]))
            for i in range(len(batches))
        ]
    )


def _mirror(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[:, :, ::-1])  # NHWC: width is axis 2


def predict(
    model: keras.Model, faces: FaceArrays, idx: np.ndarray, loss_name: str, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(expected age, std) for the given image indices, decoded by common/."""
    return decode_outputs(outputs(model, faces, idx, batch_size), loss_name)


class KeepFreedMemory(keras.callbacks.Callback):
    """Undoes TensorFlow's malloc setting that makes the Keras CPU loop fault on every step.

    When a ``PyDataset`` is first iterated, TensorFlow's ``from_generator`` lowers glibc's trim
    threshold to 128 KB ("Memory patch applied: M_TRIM_THRESHOLD=128 kb" in its log), which also
    freezes the mmap threshold. Eigen's packing buffers in the convolution gradients are then
    mapped and unmapped on every step: about 150,000 page faults per MobileNetV2 step at 112 px
    and a third fewer images/s on the CPU (``benchmarks/RESULTS.md``). From the second batch of
    each epoch on, freed memory is kept for reuse again (trim threshold 256 MB, mmap threshold
    32 MB). glibc only; a value set through ``MALLOC_TRIM_THRESHOLD_`` /
    ``MALLOC_MMAP_THRESHOLD_`` is left alone.
    """

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            keep_freed_memory()


def keep_freed_memory() -> bool:
    """glibc: keep freed memory for reuse (see ``KeepFreedMemory``); False where not applied."""
    import ctypes
    import os

    if sys.platform != "linux" or any(
        v in os.environ for v in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(
        libc.mallopt(m_trim_threshold, 256 << 20) and libc.mallopt(m_mmap_threshold, 32 << 20)
    )
