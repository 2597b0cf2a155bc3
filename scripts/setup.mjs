#!/usr/bin/env node
// fpdiff set-up: installs what is missing, says what and why, and does nothing when all is there.
//
//   node scripts/setup.mjs            Node deps, TypeScript build, Python env (.venv over Debian torch)
//   node scripts/setup.mjs --conda    the Python env from environment.yml instead (GPU machines)
//   FPD_PYTHON=/path/python ...       use that interpreter; only check it
//
// Runs before `npm test` and `npm run demo` (npm's pre-scripts). Written in plain Node (no deps)
// because it has to work before `npm install`.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const useConda = args.has("--conda") || process.env.FPD_ENV === "conda";
const quiet = args.has("--quiet");
const VENV = join(ROOT, ".venv");
const CONDA_ENV = join(ROOT, ".conda");
const DEBIAN_PYTHON = "/usr/bin/python3";
const DEBIAN_PACKAGES = ["python3-torch", "python3-scipy", "python3-venv", "python3-pip", "python3-torchvision"];

const say = (msg) => console.log(`[setup] ${msg}`);
const fail = (msg) => {
  console.error(`[setup] ERROR: ${msg}`);
  process.exit(1);
};

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: opts.capture ? "pipe" : "inherit", cwd: ROOT, encoding: "utf8", env: opts.env ?? process.env });
  if (r.error) return { ok: false, out: String(r.error.message) };
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

function must(cmd, argv, why, opts) {
  const r = run(cmd, argv, opts);
  if (!r.ok) fail(`${why} failed: ${cmd} ${argv.join(" ")}\n${r.out}`);
  return r.out;
}

function digest(...parts) {
  const h = createHash("sha256");
  for (const p of parts) h.update(existsSync(p) ? readFileSync(p) : `missing:${p}`);
  return h.digest("hex").slice(0, 16);
}

function newestMtime(dir, exts) {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

// ---------------------------------------------------------------------------------------------
// Node side

function nodeDeps() {
  const stamp = join(ROOT, "node_modules", ".fpd-stamp");
  const want = digest(join(ROOT, "package.json"), join(ROOT, "package-lock.json"));
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === want) return;
  say("installing Node dependencies (package.json changed or node_modules is missing)");
  // `npm install` rather than `npm ci` (which deletes node_modules every time). The committed lock
  // is the one npm writes for package.json, every platform's optional packages included, so this
  // leaves the tracked package-lock.json unmodified (checked by test/scripts/setup.test.ts).
  must("npm", ["install", "--no-audit", "--no-fund"], "npm install");
  writeFileSync(stamp, digest(join(ROOT, "package.json"), join(ROOT, "package-lock.json")));
}

function build() {
  const stamp = join(ROOT, "dist", ".fpd-build-stamp");
  const sources = Math.max(
    ...["src", "configs", "bench", "ablations"].map((d) => newestMtime(join(ROOT, d), [".ts"])),
    statSync(join(ROOT, "tsconfig.json")).mtimeMs,
  );
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= sources) return;
  say("compiling TypeScript (sources changed since the last build)");
  must(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(ROOT, "tsconfig.json")], "TypeScript build");
  // What Python validates and types is generated from the zod schemas just built (npm run gen);
  // it rewrites nothing when the committed files are current.
  must(process.execPath, [join(ROOT, "dist", "src", "protocol", "codegen", "main.js"), "--quiet"], "code generation");
  mkdirSync(dirname(stamp), { recursive: true });
  writeFileSync(stamp, new Date().toISOString());
}

// ---------------------------------------------------------------------------------------------
// Python side

const REQUIREMENTS = join(ROOT, "py", "requirements.txt");

/** name==version pairs from requirements.txt; `# no-deps` on the line above marks --no-deps ones. */
function requirements() {
  const out = [];
  let noDeps = false;
  for (const raw of readFileSync(REQUIREMENTS, "utf8").split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) {
      if (line.includes("--no-deps")) noDeps = true;
      continue;
    }
    if (!line) continue;
    const [name, version] = line.split("==");
    out.push({ name, version, noDeps });
    noDeps = false;
  }
  return out;
}

function pyCheck(python, modules) {
  const code = `import importlib, json\nout = {}\nfor m in ${JSON.stringify(modules)}:\n    try:\n        mod = importlib.import_module(m)\n        out[m] = getattr(mod, "__version__", "present")\n    except Exception as e:\n        out[m] = None\nprint(json.dumps(out))`;
  const r = run(python, ["-c", code], { capture: true });
  if (!r.ok) return null;
  try {
    return JSON.parse(r.out.trim().split("\n").pop());
  } catch {
    return null;
  }
}

function installedVersions(python, names) {
  const code = `import json\nfrom importlib import metadata\nout = {}\nfor n in ${JSON.stringify(names)}:\n    try:\n        out[n] = metadata.version(n)\n    except metadata.PackageNotFoundError:\n        out[n] = None\nprint(json.dumps(out))`;
  const r = run(python, ["-c", code], { capture: true });
  return r.ok ? JSON.parse(r.out.trim().split("\n").pop()) : {};
}

function aptInstall(packages) {
  const isRoot = process.getuid?.() === 0;
  const sudo = !isRoot && run("sudo", ["-n", "true"], { capture: true }).ok ? ["sudo", "-n"] : null;
  if (!isRoot && !sudo) {
    fail(
      `Debian's ${packages.join(", ")} are needed and this user cannot install them.\n` +
        `  Ask an administrator for: apt-get install ${packages.join(" ")}\n` +
        `  or use a conda env (npm run setup -- --conda), or point FPD_PYTHON at a Python with torch.`,
    );
  }
  const apt = (argv) => (sudo ? run(sudo[0], [...sudo.slice(1), "apt-get", ...argv]) : run("apt-get", argv));
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  say(`installing Debian packages ${packages.join(", ")} (CPU PyTorch 1.13 and its numerics; about a minute)`);
  let r = sudo ? apt(["install", "-y", "--no-install-recommends", ...packages]) : run("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { env });
  if (!r.ok) {
    say("refreshing Debian's package lists and trying again");
    sudo ? apt(["update"]) : run("apt-get", ["update"], { env });
    r = sudo ? apt(["install", "-y", "--no-install-recommends", ...packages]) : run("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { env });
    if (!r.ok) fail(`apt-get could not install ${packages.join(" ")}`);
  }
}

function debianVenv() {
  if (!existsSync(DEBIAN_PYTHON)) fail(`${DEBIAN_PYTHON} not found: this set-up expects Debian/Ubuntu. Set FPD_PYTHON or use --conda.`);
  const sys = pyCheck(DEBIAN_PYTHON, ["torch", "numpy", "scipy", "venv", "ensurepip", "torchvision"]);
  const missing = [];
  if (!sys?.torch) missing.push("python3-torch");
  if (!sys?.scipy) missing.push("python3-scipy");
  // pytorch-fid's Inception is built from torchvision's blocks; Debian's build matches its torch
  if (!sys?.torchvision) missing.push("python3-torchvision");
  if (!sys?.ensurepip) missing.push("python3-venv", "python3-pip");
  if (missing.length) aptInstall(missing);

  const python = join(VENV, "bin", "python");
  if (existsSync(python) && !pyCheck(python, ["torch"])?.torch) {
    say(".venv exists but cannot import torch; recreating it");
    must("rm", ["-rf", VENV], "removing the broken .venv");
  }
  if (!existsSync(python)) {
    say("creating .venv on Debian's python3 with --system-site-packages (uses Debian's torch, numpy, scipy)");
    must(DEBIAN_PYTHON, ["-m", "venv", "--system-site-packages", VENV], "creating .venv");
  }
  return python;
}

function condaEnv() {
  const conda = ["mamba", "conda"].find((c) => run(c, ["--version"], { capture: true }).ok);
  if (!conda) fail("--conda was asked for but neither conda nor mamba is on PATH");
  const python = join(CONDA_ENV, "bin", "python");
  const stamp = join(CONDA_ENV, ".fpd-stamp");
  const want = digest(join(ROOT, "environment.yml"));
  if (existsSync(python) && existsSync(stamp) && readFileSync(stamp, "utf8") === want) return python;
  say(`creating the conda env in .conda from environment.yml (PyTorch with CUDA; this downloads several GB)`);
  const verb = existsSync(python) ? ["env", "update", "--prune"] : ["env", "create"];
  must(conda, [...verb, "-p", CONDA_ENV, "-f", join(ROOT, "environment.yml")], "conda env");
  writeFileSync(stamp, want);
  return python;
}

function pipPackages(python) {
  const reqs = requirements();
  const have = installedVersions(python, reqs.map((r) => r.name));
  const todo = reqs.filter((r) => have[r.name] !== r.version);
  if (!todo.length) return;
  // Pin the platform's torch / numpy / scipy so pip can never replace them (torch 1.13 breaks on
  // numpy 2, and a pip torch would be a multi-GB CUDA build).
  const platform = installedVersions(python, ["torch", "numpy", "scipy"]);
  const constraints = join(dirname(python), "..", "fpd-constraints.txt");
  writeFileSync(
    constraints,
    Object.entries(platform)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k}==${v}`)
      .join("\n") + "\n",
  );
  say(`installing Python packages ${todo.map((r) => `${r.name}==${r.version}`).join(", ")} (pinned in py/requirements.txt; torch/numpy/scipy held at the platform's versions)`);
  const withDeps = todo.filter((r) => !r.noDeps).map((r) => `${r.name}==${r.version}`);
  const noDeps = todo.filter((r) => r.noDeps).map((r) => `${r.name}==${r.version}`);
  const pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"];
  if (withDeps.length) must(pip[0], [...pip.slice(1), "-c", constraints, ...withDeps], "pip install");
  if (noDeps.length) must(pip[0], [...pip.slice(1), "--no-deps", ...noDeps], "pip install --no-deps");
}

function python() {
  if (process.env.FPD_PYTHON) {
    const py = process.env.FPD_PYTHON;
    const mods = pyCheck(py, ["torch", "zmq", "msgpack", "numpy", "scipy", "torchdiffeq"]);
    if (!mods) fail(`FPD_PYTHON=${py} does not run`);
    const missing = Object.entries(mods).filter(([, v]) => !v).map(([k]) => (k === "zmq" ? "pyzmq" : k));
    if (missing.length) fail(`FPD_PYTHON=${py} lacks ${missing.join(", ")}; install them there (see py/requirements.txt)`);
    return;
  }
  const stamp = join(ROOT, useConda ? ".conda" : ".venv", ".fpd-stamp-pip");
  const want = digest(REQUIREMENTS, join(ROOT, "environment.yml")) + (useConda ? "conda" : "venv");
  const py = join(useConda ? CONDA_ENV : VENV, "bin", "python");
  if (existsSync(py) && existsSync(stamp) && readFileSync(stamp, "utf8") === want) return;
  const interpreter = useConda ? condaEnv() : debianVenv();
  pipPackages(interpreter);
  const mods = pyCheck(interpreter, ["torch", "zmq", "msgpack", "torchdiffeq", "scipy", "matplotlib", "tensorboardX", "torchvision", "pytorch_fid"]);
  const missing = Object.entries(mods ?? {}).filter(([, v]) => !v).map(([k]) => k);
  if (!mods || missing.length) fail(`the Python env at ${interpreter} still lacks ${missing.join(", ") || "everything (it does not run)"}`);
  writeFileSync(stamp, want);
  say(`Python ready: ${interpreter} (torch ${mods.torch})`);
}

const t0 = Date.now();
nodeDeps();
build();
python();
if (!quiet && Date.now() - t0 > 2000) say(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
