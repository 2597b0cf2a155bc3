/**
 * The JSON Schema bundle the Python worker validates against: the resolved experiment and every
 * op's arguments, result and events, exported with zod's own `toJSONSchema` (output side: what the
 * TypeScript client sends after parsing, and what it expects back).
 *
 * Additions travel with the schemas for the Python side, which has no rule of its own: on each
 * object schema `x-py-class` (the generated dataclass), `x-py-fields` (camelCase wire key →
 * snake_case field) and, for sections that are one shape with other defaults, `x-py-base` (the
 * Python base class that states their shared fields once); on each union that a map can be matched
 * to, `x-py-union` (below). The snake_case rule lives here only: `_` before an upper-case letter
 * that follows a lower-case letter or digit, then lower case; single-letter keys (`N`) stay.
 */
import { z } from "zod";
import * as loss from "../../dsl/loss.js";
import * as data from "../../dsl/data.js";
import * as model from "../../dsl/model.js";
import * as optim from "../../dsl/optim.js";
import * as sde from "../../dsl/sde.js";
import * as training from "../../dsl/training.js";
import { ResolvedExperimentSchema } from "../../dsl/experiment.js";
import { ops } from "../ops/index.js";
import { tensorSchema } from "../ops/define.js";
import * as opModules from "../ops/modules.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonSchema = { [key: string]: Json };

export interface OpEntry {
  args: JsonSchema;
  result: JsonSchema;
  event: JsonSchema | null;
  compute: boolean;
  doc: string;
}

export interface Bundle {
  $defs: Record<string, JsonSchema>;
  experiment: JsonSchema;
  ops: Record<string, OpEntry>;
}

/**
 * Python class names of the experiment's sections (the names the numerics import). Every other
 * exported `…Schema` of `src/protocol/ops` is named after its constant without `Schema`.
 */
const SECTION_NAMES: Array<[z.ZodType, string]> = [
  [sde.VeSdeSchema, "VESDEConfig"],
  [sde.VpSdeSchema, "VPSDEConfig"],
  [sde.SubVpSdeSchema, "SubVPSDEConfig"],
  [model.NcsnppSchema, "NCSNppConfig"],
  [model.DdpmppSchema, "DDPMppConfig"],
  [model.MlpSchema, "MLPConfig"],
  [data.Cifar10Schema, "CIFAR10Config"],
  [data.Imagenet32Schema, "ImageNet32Config"],
  [data.ResolvedToyDataSchema, "ToyDataConfig"],
  [loss.DsmTermSchema, "DSMTerm"],
  [loss.HighOrderLambdasSchema, "HighOrderLambdas"],
  [loss.HighOrderTermSchema, "HighOrderTerm"],
  [loss.FiniteDifferenceStepsSchema, "FiniteDifferenceSteps"],
  [loss.FiniteDifferenceSchema, "FiniteDifference"],
  [loss.ScoreFpeTermSchema, "ScoreFPETerm"],
  [loss.LossSchema, "LossConfig"],
  [optim.AdamSchema, "AdamConfig"],
  [training.TrainingSchema, "TrainingConfig"],
  [training.ResolvedBpdSchema, "BpdConfig"],
  [training.ResolvedEvalSchema, "EvalConfig"],
  [training.ResolvedPcSamplingSchema, "PCSamplingConfig"],
  [training.ResolvedOdeSamplingSchema, "ODESamplingConfig"],
  [ResolvedExperimentSchema, "ExperimentConfig"],
  // the sections' unions: Python names them as type aliases (`SDEConfig = Union[…]`)
  [sde.SdeSchema, "SDEConfig"],
  [model.ModelSchema, "ModelConfig"],
  [data.ResolvedDataSchema, "DataConfig"],
  [loss.LossTermSchema, "LossTerm"],
  [training.ResolvedSamplingSchema, "SamplingConfig"],
];

/**
 * Sections built by one zod function with other defaults (`ncsnppShape`, `imageShape`): Python
 * states their fields once, in the named base class, and each section's class only the fields
 * whose default differs (an `isinstance` of the base asks "an image network?", "image data?").
 */
const PY_BASES: Array<[string, string[]]> = [
  ["ImageModelConfig", ["NCSNppConfig", "DDPMppConfig"]],
  ["ImageDataConfig", ["CIFAR10Config", "ImageNet32Config"]],
];

export function snakeCase(key: string): string {
  if (key.length === 1) return key;
  return key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function pascal(s: string): string {
  return s
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join("");
}

function registry(): z.core.$ZodRegistry<{ id: string }> {
  const reg = z.registry<{ id: string }>();
  const seen = new Map<string, z.ZodType>();
  const add = (schema: z.ZodType, id: string) => {
    const other = seen.get(id);
    if (other && other !== schema) throw new Error(`codegen: two schemas want the name ${id}`);
    if (reg.has(schema)) return;
    seen.set(id, schema);
    reg.add(schema, { id });
  };
  for (const [schema, id] of SECTION_NAMES) add(schema, id);
  for (const mod of Object.values(opModules)) {
    for (const [name, value] of Object.entries(mod)) {
      if (name.endsWith("Schema") && value instanceof z.ZodType && value !== tensorSchema) {
        add(value, name.slice(0, -"Schema".length));
      }
    }
  }
  // zod reads metadata with `get` only: names from here, everything else `.meta()` gave (e.g.
  // uniqueItems) from the global registry.
  return {
    get: (schema: z.core.$ZodType) => {
      const global = z.globalRegistry.get(schema);
      const own = reg.get(schema);
      return global || own ? { ...global, ...own } : undefined;
    },
  } as unknown as z.core.$ZodRegistry<{ id: string }>;
}

/** The tensor schema or a copy of it (`.describe()` clones): the same check function. */
function isTensor(schema: unknown): boolean {
  const def = (schema as { _zod?: { def?: { fn?: unknown } } })._zod?.def;
  return def?.fn !== undefined && def.fn === (tensorSchema as unknown as { _zod: { def: { fn: unknown } } })._zod.def.fn;
}

/** zod → JSON Schema for one schema; `$defs` go into the shared table. */
function exportOne(schema: z.ZodType, reg: z.core.$ZodRegistry<{ id: string }>, defs: Record<string, JsonSchema>): JsonSchema {
  const out = z.toJSONSchema(schema, {
    io: "output",
    metadata: reg,
    unrepresentable: (ctx) => {
      if (isTensor(ctx.zodSchema)) return { type: "tensor" as never };
      throw new Error(`codegen: no JSON Schema for ${ctx.path.join(".")}: ${ctx.message}`);
    },
  }) as JsonSchema;
  delete out.$schema;
  const own = (out.$defs ?? {}) as Record<string, JsonSchema>;
  delete out.$defs;
  for (const [id, def] of Object.entries(own)) {
    const prev = defs[id];
    if (prev && JSON.stringify(prev) !== JSON.stringify(def)) {
      throw new Error(`codegen: ${id} exports differently in two places`);
    }
    defs[id] = def;
  }
  return out;
}

/** Post-pass: fields with a default are optional to Python (it fills them), classes are named. */
function annotate(node: Json, name: string, _named: boolean): void {
  if (Array.isArray(node)) {
    node.forEach((n, i) => annotate(n, `${name}${i}`, false));
    return;
  }
  if (node === null || typeof node !== "object") return;
  const props = node.properties as Record<string, JsonSchema> | undefined;
  if (node.type === "object" && props !== undefined) {
    const required = (node.required ?? []) as string[];
    node.required = required.filter((k) => !("default" in props[k]!));
    if (node.required.length === 0) delete node.required;
    node["x-py-class"] = name;
    node["x-py-fields"] = Object.fromEntries(Object.keys(props).map((k) => [k, snakeCase(k)]));
    for (const [k, v] of Object.entries(props)) annotate(v, `${name}${pascal(k)}`, false);
    return;
  }
  for (const [k, v] of Object.entries(node)) {
    if (k === "x-py-fields" || k === "default" || k === "const" || k === "enum") continue;
    if ((k === "anyOf" || k === "oneOf") && Array.isArray(v)) {
      // Union branches are told apart by their discriminator, else by position.
      v.forEach((branch, i) => annotate(branch, `${name}${branchName(branch) ?? i}`, false));
      continue;
    }
    annotate(v, name, false);
  }
}

function deref(node: JsonSchema, defs: Record<string, JsonSchema>): JsonSchema {
  const ref = node.$ref;
  return typeof ref === "string" ? deref(defs[ref.replace(/^#\/\$defs\//, "")]!, defs) : node;
}

/**
 * `x-py-union` on each union a map can be matched to, so that Python picks a map's branch (to
 * decode it, encode it, or report its problems) without knowing a field: `key` and `values` — the
 * discriminator (the key every branch fixes to its own string, zod's `discriminatedUnion` key) and
 * each branch's value of it — and `object`, the only object branch (`"autodiff" | {…}`, nullables).
 */
function tagUnions(node: Json, defs: Record<string, JsonSchema>): void {
  if (Array.isArray(node)) return node.forEach((n) => tagUnions(n, defs));
  if (node === null || typeof node !== "object") return;
  for (const [k, v] of Object.entries(node)) {
    if (k === "properties") Object.values(v as JsonSchema).forEach((p) => tagUnions(p, defs));
    else if (k !== "default" && k !== "const" && k !== "enum") tagUnions(v, defs);
  }
  const union = (node.anyOf ?? node.oneOf) as JsonSchema[] | undefined;
  if (!Array.isArray(union)) return;
  const branches = union.map((b) => deref(b, defs));
  const valueOf = (b: JsonSchema, key: string): Json | undefined => {
    const prop = (b.properties as Record<string, JsonSchema> | undefined)?.[key];
    return prop && typeof deref(prop, defs).const === "string" ? deref(prop, defs).const : undefined;
  };
  const key = Object.keys(branches[0]?.properties ?? {}).find((k) => {
    const values = branches.map((b) => valueOf(b, k));
    return values.every((v) => v !== undefined) && new Set(values).size === values.length;
  });
  const objects = branches.flatMap((b, i) => (b.type === "object" ? [i] : []));
  const tag: JsonSchema = {};
  if (key !== undefined) Object.assign(tag, { key, values: branches.map((b) => valueOf(b, key)!) });
  if (objects.length === 1) tag.object = objects[0]!;
  if (Object.keys(tag).length > 0) node["x-py-union"] = tag;
}

function branchName(branch: Json): string | undefined {
  if (branch === null || typeof branch !== "object" || Array.isArray(branch)) return undefined;
  const props = branch.properties as Record<string, JsonSchema> | undefined;
  for (const key of ["kind", "method", "type"]) {
    const c = props?.[key]?.const;
    if (typeof c === "string") return pascal(c);
  }
  return undefined;
}

export function buildBundle(): Bundle {
  const reg = registry();
  const defs: Record<string, JsonSchema> = {};
  const experiment = exportOne(ResolvedExperimentSchema, reg, defs);
  const opEntries: Record<string, OpEntry> = {};
  for (const [name, def] of Object.entries(ops)) {
    const base = pascal(name);
    const event = def.event instanceof z.ZodNever ? null : exportOne(def.event, reg, defs);
    opEntries[name] = {
      args: exportOne(def.args, reg, defs),
      result: exportOne(def.result, reg, defs),
      event,
      compute: def.compute,
      doc: def.doc,
    };
    annotate(opEntries[name].args, `${base}Args`, false);
    annotate(opEntries[name].result, `${base}Result`, false);
    if (event) annotate(event, `${base}Event`, false);
  }
  // Named schemas no op refers to (e.g. error details) are exported too: Python may build them.
  for (const mod of Object.values(opModules)) {
    for (const [name, value] of Object.entries(mod)) {
      if (name.endsWith("Schema") && value instanceof z.ZodType && !isTensor(value)) exportOne(value, reg, defs);
    }
  }
  for (const [id, def] of Object.entries(defs)) annotate(def, id, true);
  for (const [base, members] of PY_BASES) {
    for (const m of members) {
      if (!defs[m]) throw new Error(`codegen: base ${base} names ${m}, which is not exported`);
      defs[m]["x-py-base"] = base;
    }
  }
  const sorted = Object.fromEntries(Object.entries(defs).sort(([a], [b]) => a.localeCompare(b)));
  const bundle = { $defs: sorted, experiment, ops: opEntries };
  tagUnions(bundle as unknown as Json, defs);
  return bundle;
}
