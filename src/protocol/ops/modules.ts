/** Every op module as a namespace, for the code generator (it names each exported `…Schema`). */
export * as config from "./config.js";
export * as core from "./core.js";
export * as data from "./data.js";
export * as models from "./models.js";
export * as numerics from "./numerics.js";
export * as runs from "./runs.js";
export * as scale from "./scale.js";
export * as toy from "./toy.js";
export * as train from "./train.js";
