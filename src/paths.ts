/** Where fpdiff's own files are, wherever it runs from (src via tsx, dist, or an installed package). */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, "utf8")).name === "fpdiff") return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find fpdiff's package.json above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** The directory holding fpdiff's package.json. */
export const PROJECT_ROOT = findRoot();
/** The Python package's parent directory (put on PYTHONPATH for the worker). */
export const PY_ROOT = join(PROJECT_ROOT, "py");
