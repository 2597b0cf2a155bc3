/**
 * Flags many commands share, and typed flag kinds: a value is parsed and checked when the flags
 * are read (a bad one is a usage error naming the flag), so commands never cast or re-parse.
 * Kept free of heavy imports so light commands stay quick to start.
 */
import { Flags } from "@oclif/core";
import { UsageError } from "./errors.js";

export const overrideFlag = (description = "override a field: path=value (repeatable)") => Flags.string({ description, multiple: true, default: [] });
export const setFlag = overrideFlag();
export const deviceFlag = Flags.string({ description: "auto (CUDA when present) | cpu | cuda | cuda:N", default: "auto" });

/** EMA (evaluation) or the raw training weights. */
export const weightsFlag = (description = "EMA weights (evaluation) or raw training weights") =>
  Flags.option({ description, options: ["ema", "model"] as const, default: "ema" as const })();

/** A finite number (`1e-5`, `0.3`). */
export const numberFlag = Flags.custom<number>({
  parse: async (input) => {
    const n = Number(input.trim());
    if (input.trim() === "" || !Number.isFinite(n)) throw new UsageError(`expected a number, got ${JSON.stringify(input)}`);
    return n;
  },
});

/** Comma-separated finite numbers (`0.001,0.01,1`). */
export const numberListFlag = Flags.custom<number[]>({
  parse: async (input) => {
    const parts = input.split(",").map((s) => s.trim());
    const out = parts.map(Number);
    const bad = parts.findIndex((p, i) => p === "" || !Number.isFinite(out[i]!));
    if (bad >= 0) throw new UsageError(`expected comma-separated numbers, got ${JSON.stringify(parts[bad])} in ${JSON.stringify(input)}`);
    return out;
  },
});

/** `key=value` (repeatable); the key must be non-empty. */
export const keyValueFlag = Flags.custom<{ key: string; value: string }>({
  parse: async (input) => {
    const i = input.indexOf("=");
    if (i <= 0) throw new UsageError(`expected key=value, got ${JSON.stringify(input)}`);
    return { key: input.slice(0, i), value: input.slice(i + 1) };
  },
});

/** Comma-separated names, each one of `choices`. */
export const choiceListFlag = <T extends string>(choices: readonly T[]) =>
  Flags.custom<T[]>({
    parse: async (input) => {
      const names = input.split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = names.filter((n) => !(choices as readonly string[]).includes(n));
      if (unknown.length) throw new UsageError(`unknown ${unknown.join(", ")}; one of ${choices.join(", ")}`);
      return names as T[];
    },
  });
