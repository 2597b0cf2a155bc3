/**
 * Python types from the JSON Schema bundle: one frozen, keyword-only dataclass per object schema
 * (`x-py-class`), snake_case fields with the zod defaults, and `WIRE` (field → camelCase key) for
 * the way back; a base class per `x-py-base` (the fields its sections share, stated once); a type
 * alias per named schema that is no class (`SDEConfig = Union[…]`). Frozen dataclasses rather than
 * a validation library's models: the numerics import them as plain values (isinstance, attribute
 * access, hashing), validation is the JSON Schema's job (the `jsonschema` package), and nothing
 * here needs a dependency.
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
  /** Base class → the classes that share its fields. */
  private readonly bases = new Map<string, PyClass[]>();

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
    for (const c of this.classes.values()) {
      const base = c.schema["x-py-base"];
      if (typeof base === "string") this.bases.set(base, [...(this.bases.get(base) ?? []), c]);
    }
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
    if (typeof raw.$ref === "string") return raw.$ref.replace(/^#\/\$defs\//, ""); // a type alias
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

  /** The line of field `key` of class `c`: name, type and default. */
  private field(c: PyClass, key: string): string {
    const name = fieldNames(c)[key]!;
    if (PY_KEYWORDS.has(name)) throw new Error(`codegen: ${c.name}.${key} is a Python keyword`);
    const prop = props(c)[key]!;
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
    if (!(c.schema.required as string[] | undefined ?? []).includes(key)) {
      if (!type.startsWith("Optional[")) type = `Optional[${type}]`;
      return `    ${name}: ${type} = None`;
    }
    return `    ${name}: ${type}`;
  }

  /**
   * One class: its fields (a member of a base only those whose schema differs from the other
   * members'), `WIRE` and `OPTIONAL` (a member inherits them from its base).
   */
  private emitClass(c: PyClass): string {
    const base = c.schema["x-py-base"];
    const shared = typeof base === "string" ? this.sharedKeys(base) : new Set<string>();
    const lines = [`@dataclass(frozen=True, kw_only=True)`, `class ${c.name}${typeof base === "string" ? `(${base})` : ""}:`];
    const doc = typeof c.schema.description === "string" ? c.schema.description : undefined;
    if (doc) lines.push(`    """${doc.replace(/"""/g, "'''")}"""`);
    for (const key of Object.keys(props(c))) if (!shared.has(key)) lines.push(this.field(c, key));
    if (typeof base !== "string") lines.push(...wireLines(c));
    return lines.join("\n");
  }

  /** The keys whose schema (default included) is the same in every member of `base`. */
  private sharedKeys(base: string): Set<string> {
    const [first, ...rest] = this.bases.get(base)!;
    const same = (key: string) => rest.every((m) => JSON.stringify(props(m)[key]) === JSON.stringify(props(first!)[key]));
    return new Set(Object.keys(props(first!)).filter(same));
  }

  /**
   * A base class: every field of its members, in their order — a shared one as they all state it,
   * one whose default differs without a default (each member gives its own), typed by what the
   * members allow together. The members must agree on keys, field names and what is required.
   */
  private emitBase(base: string): string {
    const members = this.bases.get(base)!;
    const first = members[0]!;
    const outline = (c: PyClass) => JSON.stringify([c.schema["x-py-fields"], c.schema.required ?? []]);
    const odd = members.find((m) => outline(m) !== outline(first));
    if (odd) throw new Error(`codegen: ${odd.name} and ${first.name} share the base ${base} but not their fields`);
    const shared = this.sharedKeys(base);
    const names = members.map((m) => m.name);
    const lines = [
      `@dataclass(frozen=True, kw_only=True)`,
      `class ${base}:`,
      `    """What ${names.slice(0, -1).join(", ")} and ${names.at(-1)} share: one shape, other defaults."""`,
    ];
    for (const key of Object.keys(props(first))) {
      if (shared.has(key)) {
        lines.push(this.field(first, key));
        continue;
      }
      const types = [...new Set(members.map((m) => this.type(props(m)[key]!)))];
      const consts = members.map((m) => this.deref(props(m)[key]!).const);
      if (types.length > 1 && consts.some((v) => v === undefined)) {
        throw new Error(`codegen: ${base}.${key} has other types in ${names.join(", ")}`);
      }
      const type = types.length === 1 ? types[0]! : `Literal[${consts.map((v) => pyLiteral(v!)).join(", ")}]`;
      lines.push(`    ${fieldNames(first)[key]}: ${type}`);
    }
    return [...lines, ...wireLines(first)].join("\n");
  }

  /** `Name = …` for each named schema that is no class (the sections' unions, enums, records). */
  private aliases(): Array<[string, string]> {
    return Object.entries(this.bundle.$defs)
      .filter(([, def]) => typeof def["x-py-class"] !== "string")
      .map(([name, def]) => [name, this.type(def)]);
  }

  module(): string {
    const byName = (a: string, b: string) => a.localeCompare(b);
    const bases = [...this.bases.keys()].sort(byName);
    const names = [...this.classes.keys()].sort(byName);
    const aliases = this.aliases();
    // bases first (their members subclass them), aliases last (they name the classes at import)
    const classes = [...bases.map((b) => this.emitBase(b)), ...names.map((n) => this.emitClass(this.classes.get(n)!))];
    const all = [...bases, ...names, ...aliases.map(([name]) => name)].sort(byName);
    return [
      HEADER,
      classes.join("\n\n\n"),
      aliases.map(([name, type]) => `${name} = ${type}`).join("\n"),
      `__all__ = [\n${all.map((n) => `    ${JSON.stringify(n)},`).join("\n")}\n]\n`,
    ].join("\n\n\n");
  }
}

function props(c: PyClass): Record<string, JsonSchema> {
  return (c.schema.properties ?? {}) as Record<string, JsonSchema>;
}

function fieldNames(c: PyClass): Record<string, string> {
  return (c.schema["x-py-fields"] ?? {}) as Record<string, string>;
}

/** `WIRE` (field → wire key) and `OPTIONAL` (fields the wire may leave out). */
function wireLines(c: PyClass): string[] {
  const required = new Set((c.schema.required ?? []) as string[]);
  const wire = Object.entries(fieldNames(c)).map(([key, name]) => `${JSON.stringify(name)}: ${JSON.stringify(key)}`);
  const lines = [`    WIRE: ClassVar[dict[str, str]] = {${wire.join(", ")}}`];
  // None is sent as an absent key (a required nullable as null)
  const optional = Object.entries(props(c)).filter(([key, prop]) => !required.has(key) && !("default" in prop));
  if (optional.length) {
    const names = optional.map(([key]) => JSON.stringify(fieldNames(c)[key]));
    lines.push(`    OPTIONAL: ClassVar[frozenset[str]] = frozenset({${names.join(", ")}})`);
  }
  return lines;
}

const HEADER = `# Generated by \`npm run gen\` from the zod schemas in src/dsl and src/protocol/ops. Do not edit.
"""The experiment and every op's arguments, results and events as frozen dataclasses.

Field names are the wire's camelCase keys in snake_case; \`WIRE\` maps each field back to its key.
Defaults are the zod schemas'. Sections that are one shape with other defaults share a base class
that states their fields once (\`ImageModelConfig\`: NCSN++ and DDPM++); named unions are type
aliases (\`SDEConfig\`). Validation is not here: fpdiff.schema checks every message against
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
