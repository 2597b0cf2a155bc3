"""Uniform read access to model/data configs given as Mappings or attribute objects.

Configs reach the networks either as snake_case dicts (tests, the wire after key conversion) or as
frozen dataclasses from ``fpdiff.config``. ``ConfigView`` reads both the same way and falls back to
per-kind defaults, so a partial config (e.g. ``{"kind": "ddpmpp", "nf": 8}``) is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Optional

_MISSING = object()


def _raw_get(obj: Any, name: str, default: Any = _MISSING) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class ConfigView:
    """Read-only view over one or more config layers (first layer that has the field wins).

    Looks a field up by its snake_case name and, failing that, by its camelCase spelling (configs
    that skipped the wire's key conversion).
    """

    def __init__(self, *layers: Any):
        self._layers = [layer for layer in layers if layer is not None]

    def get(self, name: str, default: Any = _MISSING) -> Any:
        for layer in self._layers:
            for key in (name, _snake_to_camel(name)):
                value = _raw_get(layer, key)
                if value is not _MISSING:
                    return value
        if default is _MISSING:
            raise KeyError(f"config field {name!r} is missing")
        return default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.get(name)
        except KeyError as e:
            raise AttributeError(str(e)) from None

    def has(self, name: str) -> bool:
        return self.get(name, _MISSING) is not _MISSING

    def as_dict(self, names: Optional[Iterable[str]] = None) -> dict:
        """Snake_case dict of the given fields (default: every key any dict layer has)."""
        if names is None:
            seen: list = []
            for layer in reversed(self._layers):
                keys = layer.keys() if isinstance(layer, Mapping) else getattr(
                    layer, "__dataclass_fields__", {}).keys()
                for k in keys:
                    if k not in seen:
                        seen.append(k)
            names = seen
        return {n: self.get(n) for n in names if self.has(n)}


def cfg_get(cfg: Any, name: str, default: Any = _MISSING) -> Any:
    """One field of a Mapping / attribute config (snake_case, then camelCase)."""
    return ConfigView(cfg).get(name, default)
