export { Worker, type WorkerOptions, type RequestOptions } from "./worker.js";
export { WorkerProcess, type ReadyLine } from "./process.js";
export { RequestClient } from "./client.js";
export { resolvePython, workerEnv, type PythonChoice } from "./python.js";
