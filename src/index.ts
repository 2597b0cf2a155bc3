/** fpdiff's public entry point: the bridge, the protocol's types and the DSL. */
export * from "./bridge/index.js";
export * from "./protocol/index.js";
