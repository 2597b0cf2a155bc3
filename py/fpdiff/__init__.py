"""fpdiff: the PyTorch side of fpdiff (worker, numerics, networks, checkpoints)."""

__version__ = "0.1.0"
