/**
 * Flags many commands share, and typed flag kinds: a value is parsed and checked when the flags
 * are read (a bad one is a usage error naming the flag), so commands never cast or re-parse.
 * Kept free of heavy imports so light commands stay quick to start.
 */
import { Args, Flags } from "@oclif/core";
import { UsageError } from "./errors.js";

/** The experiment a command works on (each command must own its `args`: oclif copies only own statics). */
export const experimentArg = { config: Args.string({ description: "preset name, or a .ts / .json experiment file", required: true }) };

export const overrideFlag = (description = "override a field: path=value (repeatable)") => Flags.string({ description, multiple: true, default: [] });
export const setFlag = overrideFlag();
export const deviceFlag = Flags.string({ description: "auto (CUDA when present) | cpu | cuda | cuda:N", default: "auto" });

/** The entries of `values` that are not undefined: flags left out stay out of a request. */
export function given<T extends Record<string, unknown>>(values: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

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

/** A job of several processes (PyTorch's elastic launcher): DDP training, sharded evaluation. */
export const launchFlags = {
  nproc: Flags.integer({ description: "processes on this machine (one per GPU); >1 runs the worker under torchrun's launcher", default: 1, min: 1 }),
  nnodes: Flags.integer({ description: "machines in the job", default: 1, min: 1 }),
  "node-rank": Flags.integer({ description: "this machine's place in the job (node 0 serves; others only compute)", default: 0, min: 0 }),
  rdzv: Flags.string({ description: "HOST:PORT of node 0, reachable from every node (required with --nnodes > 1)" }),
};

/** The flags `launchFlags` parse to. */
export interface LaunchFlagValues {
  nproc: number;
  nnodes: number;
  "node-rank": number;
  rdzv?: string | undefined;
}

/** The session's launch options from those flags (undefined for one process on one machine). */
export function launchOf(flags: LaunchFlagValues): { nproc: number; nnodes: number; nodeRank: number; rdzv?: string } | undefined {
  if (flags.nproc === 1 && flags.nnodes === 1) return undefined;
  if (flags.nnodes > 1 && !flags.rdzv) throw new UsageError("--rdzv HOST:PORT (node 0's address) is required with --nnodes > 1");
  if (flags["node-rank"] >= flags.nnodes) throw new UsageError(`--node-rank ${flags["node-rank"]} is outside a job of ${flags.nnodes} nodes (0…${flags.nnodes - 1})`);
  return { nproc: flags.nproc, nnodes: flags.nnodes, nodeRank: flags["node-rank"], ...(flags.rdzv ? { rdzv: flags.rdzv } : {}) };
}
