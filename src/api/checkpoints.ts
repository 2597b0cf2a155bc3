/**
 * Checkpoints through the worker: inspect a file, score inputs with a checkpoint, convert any
 * accepted checkpoint (PyTorch Score SDE, plain exports, score_flow / score_sde JAX flax states) to
 * the PyTorch Score SDE format or a plain export. Files are read and written by the worker
 * (safe loading, atomic writes); paths are made absolute here because the worker's working
 * directory may differ.
 */
import { resolve } from "node:path";
import type { Experiment } from "../dsl/index.js";
import type { OpResult } from "../protocol/ops/index.js";
import type { Session } from "./session.js";

export type CheckpointInspection = OpResult<"ckpt.inspect">;
export type CheckpointScores = OpResult<"ckpt.score">;
export type ConvertedCheckpoint = OpResult<"ckpt.convert">;

export function inspectCheckpoint(session: Session, path: string): Promise<CheckpointInspection> {
  return session.worker.request("ckpt.inspect", { path: resolve(path) });
}

export interface ScoreOptions {
  experiment: Experiment;
  checkpoint: string;
  /** A .pt or .npz holding `x` [B, ...] and `t` [B] (or one number). */
  input: string;
  /** The .npz to write (`output`, `score`, `labels`, `t`). */
  out: string;
  weights?: "ema" | "model";
  batchSize?: number;
  /** Layout of `x` and of the written arrays; "nhwc" is the JAX code's. Default "nchw". */
  layout?: "nchw" | "nhwc";
}

export function scoreCheckpoint(session: Session, opts: ScoreOptions): Promise<CheckpointScores> {
  return session.worker.request("ckpt.score", {
    experiment: opts.experiment as never,
    checkpoint: resolve(opts.checkpoint),
    input: resolve(opts.input),
    out: resolve(opts.out),
    device: session.device,
    ...(opts.weights ? { weights: opts.weights } : {}),
    ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
    ...(opts.layout ? { layout: opts.layout } : {}),
  });
}

export interface ConvertOptions {
  path: string;
  out: string;
  to: "safetensors" | "state_dict" | "score_sde";
  weights?: "ema" | "model";
  /** Only needed when the file's layout matches no preset. */
  experiment?: Experiment;
}

export function convertCheckpoint(session: Session, opts: ConvertOptions): Promise<ConvertedCheckpoint> {
  return session.worker.request("ckpt.convert", {
    path: resolve(opts.path),
    out: resolve(opts.out),
    to: opts.to,
    ...(opts.weights ? { weights: opts.weights } : {}),
    ...(opts.experiment ? { experiment: opts.experiment as never } : {}),
  });
}
