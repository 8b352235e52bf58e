"""torchtrack: a reproducible PyTorch regression pipeline tracked in TensorBoard and MLflow."""

from torchtrack import cpu_kernels

cpu_kernels.pin()  # first, before anything imports torch: the same bits on every x86-64 CPU

__version__ = "0.1.0"
