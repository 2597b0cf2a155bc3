/** fpdiff's public entry point: the bridge, the protocol's types, the API and the DSL. */
export * from "./bridge/index.js";
export * from "./protocol/index.js";
export * from "./api/index.js";
export * as dsl from "./dsl/index.js";
export { loadExperiment, listPresets } from "./dsl/load.js";
