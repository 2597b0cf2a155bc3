"""Ops of the data area: a synthetic data set in an official file format (see fpdiff.synthetic)."""

from __future__ import annotations

from .._generated import types as T
from ..synthetic import write_synthetic_cifar10
from . import OpContext, op


@op("data.synthetic")
def data_synthetic(args: T.DataSyntheticArgs, ctx: OpContext) -> T.DataSyntheticResult:
    """Write a small synthetic data set in CIFAR-10's python format at ``path``."""
    path, files = write_synthetic_cifar10(args.path, args.images_per_file, args.seed)
    return T.DataSyntheticResult(path=path, files=files, images_per_file=args.images_per_file)
