/**
 * fpdiff's typed vocabulary for experiments. Builders return plain JSON-serialisable objects whose
 * types are inferred from the zod schemas exported beside them.
 *
 * Loading presets and files lives in `./load.js` (it needs the preset registry, which itself is
 * written with this module).
 */
export * from "./errors.js";
export * from "./sde.js";
export * from "./model.js";
export * from "./data.js";
export * from "./loss.js";
export * from "./optim.js";
export * from "./training.js";
export * from "./experiment.js";
export * from "./overrides.js";
export * from "./layout.js";
