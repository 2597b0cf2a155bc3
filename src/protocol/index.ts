export * from "./version.js";
export * from "./tensor.js";
export * from "./codec.js";
export * from "./errors.js";
export * from "./envelope.js";
export * from "./ops/index.js";
export { Device, HelloResult } from "./ops/core.js";
