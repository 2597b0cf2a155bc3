/** How an op's contract is written: zod schemas for its args, its result and its events. */
import { z } from "zod";
import { Tensor } from "../tensor.js";

export interface OpDef<A extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType, E extends z.ZodType = z.ZodType> {
  readonly args: A;
  readonly result: R;
  readonly event: E;
  /** Compute ops queue one at a time in the worker; control ops are answered at once. */
  readonly compute: boolean;
  readonly doc: string;
}

export function defineOp<A extends z.ZodType, R extends z.ZodType, E extends z.ZodType = z.ZodNever>(def: {
  args: A;
  result: R;
  event?: E;
  compute?: boolean;
  doc: string;
}): OpDef<A, R, E> {
  return { args: def.args, result: def.result, event: (def.event ?? z.never()) as E, compute: def.compute ?? true, doc: def.doc };
}

/** A tensor as it arrives from the codec. */
export const tensorSchema = z.custom<Tensor>((v) => v instanceof Tensor, { message: "expected a tensor" });
