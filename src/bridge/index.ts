export { Worker, type WorkerOptions, type RequestOptions } from "./worker.js";
export { resolvePython, workerEnv, type PythonChoice } from "./python.js";
