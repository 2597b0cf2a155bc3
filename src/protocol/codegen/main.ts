/**
 * `npm run gen`: writes what the Python worker checks and types from the zod schemas —
 * `py/fpdiff/_generated/schema.json` (JSON Schema of the experiment and of every op) and
 * `py/fpdiff/_generated/types.py` (frozen dataclasses). `--check` writes nothing and exits 1 when
 * the files on disk differ from what the schemas generate (CI and the tests run it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { buildBundle } from "./bundle.js";
import { PythonEmitter } from "./python.js";

/** The generated files, path (relative to the repository root) → content. */
export function generate(): Record<string, string> {
  const bundle = buildBundle();
  return {
    "py/fpdiff/_generated/schema.json": `${JSON.stringify(bundle, null, 1)}\n`,
    "py/fpdiff/_generated/types.py": new PythonEmitter(bundle).module(),
    "py/fpdiff/_generated/__init__.py": '"""Generated from the zod schemas by `npm run gen`; never edited by hand."""\n',
  };
}

/** Files whose content differs from what the schemas generate (empty: up to date). */
export function stale(root: string): string[] {
  return Object.entries(generate())
    .filter(([rel, text]) => !existsSync(join(root, rel)) || readFileSync(join(root, rel), "utf8") !== text)
    .map(([rel]) => rel);
}

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return dir;
}

function main(argv: string[]): number {
  const root = findRoot();
  if (argv.includes("--check")) {
    const bad = stale(root);
    if (bad.length) {
      console.error(`generated files are out of date (run \`npm run gen\`): ${bad.join(", ")}`);
      return 1;
    }
    return 0;
  }
  const files = generate();
  const changed: string[] = [];
  for (const [rel, text] of Object.entries(files)) {
    const path = join(root, rel);
    if (existsSync(path) && readFileSync(path, "utf8") === text) continue;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    changed.push(relative(root, path));
  }
  if (!argv.includes("--quiet") || changed.length) {
    console.log(changed.length ? `[gen] wrote ${changed.join(", ")}` : "[gen] generated files are up to date");
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exit(main(process.argv.slice(2)));
