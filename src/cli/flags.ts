/** Flags many commands share; kept free of heavy imports so light commands stay quick to start. */
import { Flags } from "@oclif/core";

export const setFlag = Flags.string({ description: "override a field: path=value (repeatable)", multiple: true, default: [] });
export const deviceFlag = Flags.string({ description: "auto (CUDA when present) | cpu | cuda | cuda:N", default: "auto" });

/** A job of several processes (PyTorch's elastic launcher): DDP training, sharded evaluation. */
export const launchFlags = {
  nproc: Flags.integer({ description: "processes on this machine (one per GPU); >1 runs the worker under torchrun's launcher", default: 1, min: 1 }),
  nnodes: Flags.integer({ description: "machines in the job", default: 1, min: 1 }),
  "node-rank": Flags.integer({ description: "this machine's place in the job (node 0 serves; others only compute)", default: 0, min: 0 }),
  rdzv: Flags.string({ description: "HOST:PORT of node 0, reachable from every node (required with --nnodes > 1)" }),
};

/** The session's launch options from those flags (undefined for one process). */
export function launchOf(flags: { nproc: number; nnodes: number; "node-rank": number; rdzv?: string | undefined }) {
  if (flags.nproc === 1 && flags.nnodes === 1) return undefined;
  return { nproc: flags.nproc, nnodes: flags.nnodes, nodeRank: flags["node-rank"], ...(flags.rdzv ? { rdzv: flags.rdzv } : {}) };
}
