"""The experiment as the numerics see it: the frozen dataclasses generated from the zod schemas.

:func:`experiment_from_wire` validates a resolved experiment and builds the classes of
``_generated/types.py`` (:mod:`fpdiff.schema`), whose names — unions (``SDEConfig`` …) and bases
(``ImageModelConfig`` …) included — are this module's. Nothing here restates a field, a default or a
rule; the numerics guard what they rely on where they compute (docs/contracts.md §1).
``python -m fpdiff.config`` validates JSON experiments read from stdin (used by the tests).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ._generated import types as _types
from ._generated.types import *  # noqa: F401,F403  (every generated name under its own name)
from ._generated.types import DataConfig, ToyDataConfig
from .schema import SchemaError as ConfigError
from .schema import encode as to_wire
from .schema import experiment_from_wire


def data_dim(data: DataConfig) -> int:
    """The data dimension D (C·H·W for images)."""
    if isinstance(data, ToyDataConfig):
        return data.dim
    return data.num_channels * data.image_size * data.image_size


def check(raw: Any) -> dict[str, Any]:
    """``{ok, experiment}`` (as Python decoded it) or ``{ok: False, errors: [{path, message}]}``."""
    try:
        return {"ok": True, "experiment": to_wire(experiment_from_wire(raw))}
    except ConfigError as err:
        return {"ok": False, "errors": [{"path": p, "message": m} for p, m in err.errors]}


__all__ = [*_types.__all__, "ConfigError", "check", "data_dim", "experiment_from_wire", "to_wire"]

if __name__ == "__main__":
    raw = json.load(sys.stdin)
    json.dump([check(r) for r in raw] if isinstance(raw, list) else check(raw), sys.stdout)
