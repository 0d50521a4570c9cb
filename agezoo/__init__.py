"""agezoo: the age of every face in a photo, with a calibrated uncertainty.

    >>> import agezoo
    >>> callable(agezoo.predict) and callable(agezoo.AgeEstimator)
    True

``agezoo.predict(images, model=None)`` takes paths, RGB uint8 arrays or PIL images and returns
one record per face (file, face, box, age, std, low, high, method), as ``agezoo predict --json``
does; ``agezoo.AgeEstimator(model)`` loads a model once for many calls (``agezoo.api``).

This package is the application layer: the ``agezoo`` command, the backend table, ``make
pretrain``. Below it sit the frameworks (``torch_impl``, ``tf_impl``) and below those the
framework-free floor (``common``, ``weights``); imports only point down (``tests/test_layers.py``).
"""

import os

# TensorFlow (under Keras and MTCNN) writes its start-up and per-call C++ info and warning lines
# to stderr, where they drown the lines that name bad photos; errors still show. Set before any
# framework loads, and only where the user has not chosen otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from agezoo.api import AgeEstimator, predict  # noqa: E402

__all__ = ["AgeEstimator", "predict"]
