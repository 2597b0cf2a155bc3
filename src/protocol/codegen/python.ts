/**
 * Python types from the JSON Schema bundle: one frozen, keyword-only dataclass per object schema
 * (`x-py-class`), snake_case fields with the zod defaults, and `WIRE` (field → camelCase key) for
 * the way back. Frozen dataclasses rather than a validation library's models: the numerics import
 * them as plain values (isinstance, attribute access, hashing), validation is the JSON Schema's job
 * (the `jsonschema` package), and nothing here needs a dependency.
 */
import type { Bundle, Json, JsonSchema } from "./bundle.js";

const PY_KEYWORDS = new Set([
  "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
  "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in",
  "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
]);

interface PyClass {
  name: string;
  schema: JsonSchema;
}

function isObj(v: Json | undefined): v is { [key: string]: Json } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

export class PythonEmitter {
  private readonly classes = new Map<string, PyClass>();

  constructor(private readonly bundle: Bundle) {
    const visit = (node: Json) => {
      if (Array.isArray(node)) return node.forEach(visit);
      if (!isObj(node)) return;
      const cls = node["x-py-class"];
      if (typeof cls === "string") {
        const prev = this.classes.get(cls);
        if (prev && JSON.stringify(prev.schema) !== JSON.stringify(node)) {
          throw new Error(`codegen: two different schemas want the Python class ${cls}`);
        }
        this.classes.set(cls, { name: cls, schema: node });
      }
      for (const [k, v] of Object.entries(node)) if (k !== "default" && k !== "x-py-fields") visit(v);
    };
    visit(bundle as unknown as Json);
  }

  private deref(node: JsonSchema): JsonSchema {
    const ref = node.$ref;
    if (typeof ref === "string") {
      const id = ref.replace(/^#\/\$defs\//, "");
      const def = this.bundle.$defs[id];
      if (!def) throw new Error(`codegen: dangling $ref ${ref}`);
      return this.deref(def);
    }
    return node;
  }

  /** The Python type annotation of a schema node. */
  type(raw: JsonSchema): string {
    const node = this.deref(raw);
    if (typeof node["x-py-class"] === "string") return node["x-py-class"];
    if (node.type === "tensor") return "Tensor";
    if ("const" in node) return `Literal[${pyLiteral(node.const!)}]`;
    if (Array.isArray(node.enum)) return `Literal[${node.enum.map(pyLiteral).join(", ")}]`;
    const union = (node.anyOf ?? node.oneOf) as JsonSchema[] | undefined;
    if (union) {
      const parts = union.filter((b) => this.deref(b).type !== "null").map((b) => this.type(b));
      const unique = [...new Set(parts)];
      const inner = unique.length === 1 ? unique[0]! : `Union[${unique.join(", ")}]`;
      return union.some((b) => this.deref(b).type === "null") ? `Optional[${inner}]` : inner;
    }
    if (Array.isArray(node.type)) {
      const parts = node.type.filter((t) => t !== "null").map((t) => this.type({ ...node, type: t }));
      const inner = parts.length === 1 ? parts[0]! : `Union[${parts.join(", ")}]`;
      return node.type.includes("null") ? `Optional[${inner}]` : inner;
    }
    switch (node.type) {
      case "string":
        return "str";
      case "number":
        return "float";
      case "integer":
        return "int";
      case "boolean":
        return "bool";
      case "null":
        return "None";
      case "array": {
        if (Array.isArray(node.prefixItems)) {
          return `tuple[${(node.prefixItems as JsonSchema[]).map((i) => this.type(i)).join(", ")}]`;
        }
        return isObj(node.items) ? `tuple[${this.type(node.items)}, ...]` : "tuple[Any, ...]";
      }
      case "object": {
        const ap = node.additionalProperties;
        return isObj(ap) ? `dict[str, ${this.type(ap)}]` : "dict[str, Any]";
      }
      default:
        return "Any";
    }
  }

  /** A Python expression for a JSON default of the given node. */
  value(raw: JsonSchema, v: Json): string {
    const node = this.deref(raw);
    const cls = node["x-py-class"];
    if (typeof cls === "string" && isObj(v)) {
      const fields = node["x-py-fields"] as Record<string, string>;
      const props = node.properties as Record<string, JsonSchema>;
      const kw = Object.entries(v).map(([k, x]) => `${fields[k]}=${this.value(props[k]!, x)}`);
      return `${cls}(${kw.join(", ")})`;
    }
    if (Array.isArray(v)) {
      const item = isObj(node.items) ? node.items : {};
      const inner = v.map((x) => this.value(item, x));
      return inner.length === 1 ? `(${inner[0]},)` : `(${inner.join(", ")})`;
    }
    if (typeof v === "number" && this.type(node) === "float") return pyFloat(v);
    return pyLiteral(v);
  }

  private field(name: string, prop: JsonSchema, required: boolean): string {
    let type = this.type(prop);
    const fixed = this.deref(prop);
    if (!("default" in prop) && "const" in fixed) {
      // A discriminator: the class can only ever hold this value.
      return `    ${name}: ${type} = ${pyLiteral(fixed.const!)}`;
    }
    if ("default" in prop) {
      const expr = this.value(prop, prop.default!);
      const needsFactory = /^[A-Z]\w*\(/.test(expr) || isObj(prop.default!);
      return needsFactory
        ? `    ${name}: ${type} = field(default_factory=lambda: ${expr})`
        : `    ${name}: ${type} = ${expr}`;
    }
    if (!required) {
      if (!type.startsWith("Optional[")) type = `Optional[${type}]`;
      return `    ${name}: ${type} = None`;
    }
    return `    ${name}: ${type}`;
  }

  private emitClass(c: PyClass): string {
    const props = (c.schema.properties ?? {}) as Record<string, JsonSchema>;
    const fields = (c.schema["x-py-fields"] ?? {}) as Record<string, string>;
    const required = new Set((c.schema.required ?? []) as string[]);
    const lines = [`@dataclass(frozen=True, kw_only=True)`, `class ${c.name}:`];
    const doc = typeof c.schema.description === "string" ? c.schema.description : undefined;
    if (doc) lines.push(`    """${doc.replace(/"""/g, "'''")}"""`);
    const wire: string[] = [];
    const optional: string[] = [];
    for (const [key, prop] of Object.entries(props)) {
      const name = fields[key]!;
      if (PY_KEYWORDS.has(name)) throw new Error(`codegen: ${c.name}.${key} is a Python keyword`);
      lines.push(this.field(name, prop, required.has(key)));
      wire.push(`${JSON.stringify(name)}: ${JSON.stringify(key)}`);
      if (!required.has(key) && !("default" in prop)) optional.push(JSON.stringify(name));
    }
    lines.push(`    WIRE: ClassVar[dict[str, str]] = {${wire.join(", ")}}`);
    // Fields the wire may leave out: None is sent as an absent key (a required nullable as null).
    if (optional.length) lines.push(`    OPTIONAL: ClassVar[frozenset[str]] = frozenset({${optional.join(", ")}})`);
    return lines.join("\n");
  }

  module(): string {
    const names = [...this.classes.keys()].sort((a, b) => a.localeCompare(b));
    const body = names.map((n) => this.emitClass(this.classes.get(n)!)).join("\n\n\n");
    return `${HEADER}\n\n${body}\n\n\n__all__ = [\n${names.map((n) => `    ${JSON.stringify(n)},`).join("\n")}\n]\n`;
  }
}

const HEADER = `# Generated by \`npm run gen\` from the zod schemas in src/dsl and src/protocol/ops. Do not edit.
"""The experiment and every op's arguments, results and events as frozen dataclasses.

Field names are the wire's camelCase keys in snake_case; \`WIRE\` maps each field back to its key.
Defaults are the zod schemas'. Validation is not here: fpdiff.schema checks every message against
schema.json (generated beside this file) before it builds one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional, Union

if TYPE_CHECKING:
    from torch import Tensor
else:
    Tensor = Any`;

function pyFloat(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`codegen: non-finite default ${v}`);
  const s = String(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

function pyLiteral(v: Json): string {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `(${v.map(pyLiteral).join(", ")}${v.length === 1 ? "," : ""})`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyLiteral(x)}`).join(", ")}}`;
}
