#!/usr/bin/env node
// The `fpd` command. Commands are compiled to dist/ by `npm run setup` (or `npm run build`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

if (!existsSync(fileURLToPath(new URL("../dist/src/commands", import.meta.url)))) {
  console.error("fpd: the commands are not built yet. Run `npm run setup` (installs what is missing and builds) and try again.");
  process.exit(1);
}
const { execute } = await import("@oclif/core");
await execute({ dir: import.meta.url });
