/**
 * Every op's contract, by area. The bridge's `request()` infers argument, result and event types
 * from this table (tRPC style): a new op is one entry here and one handler in py/fpdiff/ops/.
 */
import type { z } from "zod";
import { configOps } from "./config.js";
import { coreOps } from "./core.js";
import { dataOps } from "./data.js";
import type { OpDef } from "./define.js";
import { modelsOps } from "./models.js";
import { numericsOps } from "./numerics.js";
import { runsOps } from "./runs.js";
import { scaleOps } from "./scale.js";
import { toyOps } from "./toy.js";
import { trainOps } from "./train.js";

export const ops = {
  ...coreOps,
  ...configOps,
  ...modelsOps,
  ...numericsOps,
  ...trainOps,
  ...toyOps,
  ...dataOps,
  ...runsOps,
  ...scaleOps,
} as const;

export type Ops = typeof ops;
export type OpName = keyof Ops;
export type OpArgs<K extends OpName> = z.input<Ops[K]["args"]>;
export type OpResult<K extends OpName> = z.output<Ops[K]["result"]>;
export type OpEvent<K extends OpName> = z.output<Ops[K]["event"]>;

export function opDef(name: string): OpDef | undefined {
  return Object.hasOwn(ops, name) ? (ops as Record<string, OpDef>)[name] : undefined;
}

export { defineOp, tensorSchema, type OpDef } from "./define.js";
