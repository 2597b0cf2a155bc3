/** The API scripts and commands use: sessions, runs, sweeps, ablations, tables, the toy job. */
export { Session, defaultRunDir, type SessionOptions, type TrainOptions, type TrainOutcome, type TrainEvent, type EvalKind, type EvalSpec } from "./session.js";
export {
  RunDir,
  RunDirError,
  RunLockedError,
  ConfigChangedError,
  experimentChanges,
  readRunExperiment,
  latestRunCheckpoint,
  type RunRecord,
  type RunHistoryEntry,
  type CheckpointRecord,
  type ConfigChange,
} from "./runs.js";
export { sweep, gridPoints, pointKey, type Grid, type Point, type SweepOptions, type SweepContext } from "./sweep.js";
export { defineAblation, runAblation, mergeParams, type Ablation, type AblationContext, type AblationOutcome } from "./ablation.js";
export { toMarkdown, toCsv, type Row } from "./table.js";
export { runToyJob, trainToy, toyExperiment, TOY_METHODS, type ToyMethod, type ToyJobOptions, type ToyJobResult } from "./toy.js";
export { inspectCheckpoint, scoreCheckpoint } from "./checkpoints.js";
export { diagnose } from "./doctor.js";
export { openPython } from "./python.js";
