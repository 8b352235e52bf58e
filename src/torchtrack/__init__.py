"""torchtrack: a reproducible PyTorch regression pipeline tracked in TensorBoard and MLflow."""

__version__ = "0.1.0"
