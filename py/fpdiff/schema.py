"""Every message checked against the JSON Schema generated from the zod schemas, then typed.

zod (``src/dsl``, ``src/protocol/ops``) is the only author of the experiment and of every op's
arguments, results and events; ``npm run gen`` exports them to ``_generated/schema.json`` and
frozen dataclasses in ``_generated/types.py``. This module validates a camelCase wire value with the
``jsonschema`` package (the wire is never trusted), reports problems with the TypeScript field paths
(``loss.terms[1].alpha``), builds the dataclasses (camelCase → snake_case by the schema's own
``x-py-fields`` map) and turns results back into wire values (``WIRE``). It knows no field by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import jsonschema

from ._generated import types as T

_BUNDLE: dict[str, Any] = json.loads((Path(__file__).parent / "_generated" / "schema.json").read_text())
DEFS: dict[str, Any] = _BUNDLE["$defs"]
OPS: dict[str, Any] = _BUNDLE["ops"]


class SchemaError(ValueError):
    """A value the schema refuses: ``path`` / ``message`` of the first problem, all in ``errors``."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        self.path, self.message = errors[0]
        lines = [f"{p}: {m}" if p else m for p, m in errors]
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} problems: " + "; ".join(lines))


def _is_tensor(_checker: Any, value: Any) -> bool:
    torch = sys.modules.get("torch")  # no torch imported: no tensor can exist
    return torch is not None and isinstance(value, torch.Tensor)


def _is_number(_checker: Any, value: Any) -> bool:
    # JSON has no NaN or infinity; msgpack does, and no field of ours means them
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"tensor": _is_tensor, "number": _is_number}
    ),
)


@lru_cache(maxsize=None)
def _validator(key: str) -> Any:
    return _Validator({**_node(key), "$defs": DEFS})


def _node(key: str) -> dict[str, Any]:
    """``experiment``, ``<op>.args|result|event`` or ``$defs/<Name>`` (e.g. ``$defs/LossConfig``)."""
    if key == "experiment":
        return _BUNDLE["experiment"]
    if key.startswith("$defs/"):
        return {"$ref": f"#/{key}"}
    op, part = key.rsplit(".", 1)
    return OPS[op][part] or {}  # an op without events: anything it emits goes as it is


# ------------------------------------------------------------------------------------------------
# Problems with their paths


def join(prefix: str, path: Iterable[Union[str, int]]) -> str:
    out = prefix
    for seg in path:
        out = f"{out}[{seg}]" if isinstance(seg, int) else (f"{out}.{seg}" if out else str(seg))
    return out


def _deref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DEFS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _discriminated(branches: list[dict[str, Any]], value: Any) -> Optional[int]:
    """The union branch a map means: the one whose discriminator (``kind``, ``method`` or ``type``)
    it carries, else the only object branch (``"autodiff" | {finiteDifference…}``); None if neither."""
    if not isinstance(value, dict):
        return None
    for i, branch in enumerate(branches):
        props = branch.get("properties", {})
        for key in ("kind", "method", "type"):
            const = _deref(props.get(key, {})).get("const")
            if const is not None and value.get(key) == const:
                return i
    objects = [i for i, b in enumerate(branches) if b.get("type") == "object"]
    return objects[0] if len(objects) == 1 else None


def _branch(error: Any) -> Optional[list[Any]]:
    """For a failed union, the errors of the branch the value meant."""
    by_branch: dict[int, list[Any]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    i = _discriminated([_deref(b) for b in error.validator_value], error.instance)
    return None if i is None else by_branch.get(i, [])


_ARTICLE = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "a boolean",
            "object": "an object", "array": "a list", "tensor": "a tensor", "null": "null"}


def _problems(errors: Iterable[Any], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in errors:
        path = join(prefix, e.absolute_path)
        if e.validator in ("oneOf", "anyOf") and e.context:
            chosen = _branch(e)
            if chosen:
                out += _problems(chosen, prefix)
                continue
            keys = [k for b in e.validator_value for k in ("kind", "method") if k in _deref(b).get("properties", {})]
            if keys and isinstance(e.instance, dict):
                options = [_deref(_deref(b)["properties"][keys[0]]).get("const") for b in e.validator_value]
                out.append((join(path, [keys[0]]), "expected one of " + " | ".join(json.dumps(o) for o in options)))
                continue
        if e.validator == "additionalProperties":
            known = set(e.schema.get("properties", {}))
            out += [(join(path, [k]), "unknown key") for k in e.instance if k not in known]
        elif e.validator == "required":
            out += [(join(path, [k]), "required") for k in e.validator_value if k not in e.instance]
        elif e.validator == "type":
            kinds = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
            shown = repr(e.instance) if len(repr(e.instance)) <= 80 else repr(e.instance)[:77] + "..."
            out.append((path, f"expected {' or '.join(_ARTICLE.get(k, k) for k in kinds)}, got {shown}"))
        else:
            out.append((path, e.message))
    return out


def check(key: str, value: Any, prefix: str = "") -> None:
    """Raises :class:`SchemaError` listing every problem of ``value`` against schema ``key``."""
    errors = sorted(_validator(key).iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise SchemaError(_problems(errors, prefix))


# ------------------------------------------------------------------------------------------------
# Wire ⇄ dataclasses


def decode(schema: dict[str, Any], value: Any) -> Any:
    """A validated wire value → the generated dataclasses (numbers as floats where the schema says)."""
    node = _deref(schema)
    cls_name = node.get("x-py-class")
    if cls_name is not None and isinstance(value, dict):
        cls = getattr(T, cls_name)
        props, names = node["properties"], node["x-py-fields"]
        return cls(**{names[k]: decode(props[k], v) for k, v in value.items()})
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        i = _discriminated([_deref(b) for b in union], value)
        if i is not None:
            return decode(union[i], value)
        for branch in union:  # literals and scalars: the first branch that takes the value
            if _Validator({**branch, "$defs": DEFS}).is_valid(value):
                return decode(branch, value)
        return value
    if "const" in node or "enum" in node:
        return value  # a literal is exactly what it is (imageSize 32 stays an int)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None) if value is not None else "null"
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "array" and isinstance(value, (list, tuple)):
        # a zod tuple is `prefixItems` (with `items: false`); a list is `items`
        prefix, items = node.get("prefixItems") or [], node.get("items", {})
        out = []
        for i, v in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            out.append(decode(sub, v) if isinstance(sub, dict) else v)
        return tuple(out)
    if kind == "object" and isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: decode(node["additionalProperties"], v) for k, v in value.items()}
    return value


def encode(value: Any) -> Any:
    """Dataclasses → camelCase wire values (optional fields that are None left out); dicts keep
    their keys (records carry data, not field names)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        wire, optional = cls.WIRE, getattr(cls, "OPTIONAL", frozenset())
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None and f.name in optional:
                continue
            out[wire[f.name]] = encode(v)
        return out
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def to_wire(key: str, value: Any) -> Any:
    """A handler's answer (a generated dataclass, or a dict with snake_case field names, nested
    alike) as the wire value of schema ``key``: field names by the schema's own map, record keys
    kept. Applied once, at the worker boundary."""
    return _to_wire(_node(key), value)


def _to_wire(schema: dict[str, Any], value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(value)
    node = _deref(schema)
    if isinstance(value, (list, tuple)):
        items = node.get("items", {})
        return [_to_wire(items if isinstance(items, dict) else {}, v) for v in value]
    if not isinstance(value, dict):
        return value
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        branches = [_deref(b) for b in union]
        i = _discriminated(branches, value)
        objects = [b for b in branches if b.get("type") == "object"]
        return _to_wire(branches[i], value) if i is not None else (_to_wire(objects[0], value) if objects else encode(value))
    if "properties" not in node:
        ap = node.get("additionalProperties")
        return {k: _to_wire(ap if isinstance(ap, dict) else {}, v) for k, v in value.items()}
    wire = {snake: camel for camel, snake in node["x-py-fields"].items()}
    required = node.get("required", ())
    out = {}
    for k, v in value.items():
        key = wire.get(k, k)
        if v is None and key not in required:
            continue  # an absent optional (a required nullable stays null)
        out[key] = _to_wire(node["properties"].get(key, {}), v)
    return out


def parse(key: str, value: Any, prefix: str = "") -> Any:
    """Validate, then decode: the one way a wire value becomes Python."""
    check(key, value, prefix)
    return decode(_node(key), value)


def experiment_from_wire(raw: Any, prefix: str = "") -> T.ExperimentConfig:
    """A resolved camelCase experiment → :class:`ExperimentConfig`, or :class:`SchemaError`."""
    return parse("experiment", raw, prefix)
