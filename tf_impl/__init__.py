"""The Keras 3 (TensorFlow backend) side of the zoo.

TensorFlow's default CPU allocator hands every activation buffer back to the system and maps it
afresh on the next step: for MobileNetV2 at 112 px that was over 200,000 page faults per training
step and a fifth to a half of the process's CPU time in the kernel. Its BFC allocator keeps the
buffers in a pool (the same peak memory here) and trains about 30 % faster on the CPU
(``benchmarks/RESULTS.md``; ``tf_impl.train.KeepFreedMemory`` fixes the other half). The
variable is read when TensorFlow makes its first CPU tensor, so importing ``tf_impl`` before any
TensorFlow work is enough; a value set by the user wins.
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
