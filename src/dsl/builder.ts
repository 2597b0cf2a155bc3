/**
 * The builders of a section's kinds (`sde.ve({sigmaMax: 80})`, `data.toy({dataset: "moons"})`):
 * one schema per kind, parsed with its discriminator set.
 */
import type { z } from "zod";
import { parseOrThrow } from "./errors.js";

/** A builder's options: the schema's input without the discriminator, optional when none is required. */
type Options<S extends z.ZodType, K extends string> = {} extends Omit<z.input<S>, K>
  ? [opts?: Omit<z.input<S>, K>]
  : [opts: Omit<z.input<S>, K>];

export type Builder<S extends z.ZodType, K extends string = "kind"> = (...[opts]: Options<S, K>) => z.output<S>;

/**
 * `section.kind(opts)` for each kind → schema of `kinds`: `opts` with `key` set to the kind, parsed
 * by the kind's schema; a ConfigError names the fields under `section` and the builder (`sde.ve()`).
 */
export function builders<M extends Record<string, z.ZodType>, K extends string = "kind">(
  section: string,
  kinds: M,
  key = "kind" as K,
): { [N in keyof M]: Builder<M[N], K> } {
  const out: Record<string, unknown> = {};
  for (const [kind, schema] of Object.entries(kinds)) {
    out[kind] = (opts?: object) => parseOrThrow(schema, { ...opts, [key]: kind }, section, `${section}.${kind}()`);
  }
  return out as { [N in keyof M]: Builder<M[N], K> };
}
