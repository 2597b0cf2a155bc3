"""Every message checked against the JSON Schema generated from the zod schemas, then typed.

zod is the only author of the experiment and of every op's arguments, results and events; ``npm run
gen`` exports them to ``_generated/schema.json`` and dataclasses in ``_generated/types.py``. This
module validates a camelCase wire value with ``jsonschema`` (the wire is never trusted), reports
problems with the TypeScript field paths (``loss.terms[1].alpha``), builds the dataclasses and turns
results back into wire values, all by the schema's own annotations (``x-py-class``, ``x-py-fields``,
``x-py-union``, ``WIRE``): it knows no field by name.
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


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
        # no torch imported: no tensor can exist
        "tensor": lambda _, v: "torch" in sys.modules and isinstance(v, sys.modules["torch"].Tensor),
        # JSON has no NaN or infinity; msgpack does, and no field of ours means them
        "number": lambda _, v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    }),
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


def _deref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DEFS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _branch(union: dict[str, Any], value: Any) -> Optional[int]:
    """The branch of a union a map means: the one its discriminator names, else the only object
    branch (``"autodiff" | {finiteDifference…}``); None if neither (or not a map)."""
    tag = union.get("x-py-union", {})
    if not isinstance(value, dict):
        return None
    if "key" in tag and value.get(tag["key"]) in tag["values"]:
        return tag["values"].index(value[tag["key"]])
    return tag.get("object")


def join(prefix: str, path: Iterable[Union[str, int]]) -> str:
    out = prefix
    for seg in path:
        out = f"{out}[{seg}]" if isinstance(seg, int) else (f"{out}.{seg}" if out else str(seg))
    return out


_ARTICLE = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "a boolean",
            "object": "an object", "array": "a list", "tensor": "a tensor", "null": "null"}


def _problems(errors: Iterable[Any], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in errors:
        path = join(prefix, e.absolute_path)
        if e.validator in ("oneOf", "anyOf") and e.context:
            # a failed union: the problems of the branch the value meant, else what it may be
            i, tag = _branch(e.schema, e.instance), e.schema.get("x-py-union", {})
            chosen = [sub for sub in e.context if sub.schema_path[0] == i]
            if chosen:
                out += _problems(chosen, prefix)
                continue
            if "key" in tag and isinstance(e.instance, dict):
                options = " | ".join(json.dumps(v) for v in tag["values"])
                out.append((join(path, [tag["key"]]), f"expected one of {options}"))
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


def decode(schema: dict[str, Any], value: Any) -> Any:
    """A validated wire value → the generated dataclasses (numbers as floats where the schema says)."""
    node = _deref(schema)
    if "x-py-class" in node and isinstance(value, dict):
        props, names = node["properties"], node["x-py-fields"]
        return getattr(T, node["x-py-class"])(**{names[k]: decode(props[k], v) for k, v in value.items()})
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        i = _branch(node, value)
        if i is None:  # literals and scalars: the first branch that takes the value
            i = next((j for j, b in enumerate(union) if _Validator({**b, "$defs": DEFS}).is_valid(value)), None)
        return value if i is None else decode(union[i], value)
    if "const" in node or "enum" in node:
        return value  # a literal is exactly what it is (imageSize 32 stays an int)
    kind = node.get("type")
    if isinstance(kind, list):  # [X, "null"] (or [tensor, number]): the first that is not null
        kind = next((k for k in kind if k != "null"), None) if value is not None else "null"
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "array" and isinstance(value, (list, tuple)):
        # a zod tuple is `prefixItems` (with `items: false`); a list is `items`
        prefix, items = node.get("prefixItems") or [], node.get("items", {})
        subs = [prefix[i] if i < len(prefix) else items for i in range(len(value))]
        return tuple(decode(sub, v) if isinstance(sub, dict) else v for sub, v in zip(subs, value))
    if kind == "object" and isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: decode(node["additionalProperties"], v) for k, v in value.items()}
    return value


def encode(value: Any) -> Any:
    """Dataclasses (in lists and records too) → camelCase wire values; dict keys are kept."""
    return _to_wire({}, value)


def to_wire(key: str, value: Any) -> Any:
    """A handler's answer (generated dataclasses, or dicts with snake_case field names) as the wire
    value of schema ``key``, record keys kept. Applied once, at the worker boundary."""
    return _to_wire(_node(key), value)


def _to_wire(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, (str, int, float, type(None))):  # most values: nothing to rename
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a dataclass names its own wire keys (`WIRE`; its fields are its __dict__, in order); an
        # optional field that is None is left out
        optional = getattr(value, "OPTIONAL", ())
        return {value.WIRE[k]: encode(v) for k, v in vars(value).items() if v is not None or k not in optional}
    node = _deref(schema)
    if isinstance(value, (list, tuple)):
        items = node.get("items")
        return [_to_wire(items if isinstance(items, dict) else {}, v) for v in value]
    if not isinstance(value, dict):
        return value
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        i = _branch(node, value)
        if i is None:  # no discriminator to go by: the first object branch
            i = next((j for j, b in enumerate(union) if _deref(b).get("type") == "object"), None)
        return encode(value) if i is None else _to_wire(union[i], value)
    if "properties" not in node:  # a record: its keys are data
        extra = node.get("additionalProperties")
        return {k: _to_wire(extra if isinstance(extra, dict) else {}, v) for k, v in value.items()}
    wire, required = getattr(T, node["x-py-class"]).WIRE, node.get("required", ())
    # an absent optional is None in Python and left out on the wire (a required nullable stays null)
    pairs = [(wire.get(k, k), v) for k, v in value.items()]
    return {k: _to_wire(node["properties"].get(k, {}), v) for k, v in pairs if v is not None or k in required}


def parse(key: str, value: Any, prefix: str = "") -> Any:
    """Validate against schema ``key`` (:class:`SchemaError` listing every problem, its paths
    prefixed by ``prefix``), then decode: the one way a wire value becomes Python."""
    errors = list(_validator(key).iter_errors(value))
    if errors:
        errors.sort(key=lambda e: list(map(str, e.absolute_path)))
        raise SchemaError(_problems(errors, prefix))
    return decode(_node(key), value)


def experiment_from_wire(raw: Any, prefix: str = "") -> T.ExperimentConfig:
    """A resolved camelCase experiment → :class:`ExperimentConfig`, or :class:`SchemaError`."""
    return parse("experiment", raw, prefix)
