// Every command's errors through the real `fpd` binary (src/cli/errors.ts, src/cli/base.ts): one
// error of each kind a command can meet, run with and without --json. Both runs exit with the same
// status; --json prints {error: {code, message, path?, details?}} and the plain run prints the message.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { getPreset } from "../../configs/index.js";
import { applyOverrides } from "../../src/dsl/index.js";
import { Session } from "../../src/index.js";
import { PROJECT_ROOT } from "../../src/paths.js";
import { runCli } from "../helpers/cli.js";

const REF = join(PROJECT_ROOT, "test", "fixtures", "reference");
const SCRIPT = fileURLToPath(new URL("../commands/fixtures/tiny_ablation.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "fpd-errors-"));
const notCkpt = join(dir, "not-a-checkpoint.pth");
const run = join(dir, "run"); // a trained run directory
const brokenRun = join(dir, "broken-run"); // config.json is not JSON
const FAST = ["--set", "training.batchSize=64", "--set", "training.nIters=4", "--device", "cpu"];

interface Case {
  /** Kind of error, for the test's name. */
  kind: string;
  argv: string[];
  code: string;
  exit: number;
  /** The message must contain this. */
  message: RegExp;
  path?: string | RegExp;
}

const CASES: Record<string, Case[]> = {
  "config list": [{ kind: "usage", argv: ["config", "list", "--bogus"], code: "USAGE", exit: 2, message: /Nonexistent flag: --bogus/ }],
  "config show": [
    { kind: "usage", argv: ["config", "show"], code: "USAGE", exit: 2, message: /Missing 1 required arg/ },
    { kind: "config", argv: ["config", "show", "ve/cifar10_ncsnpp_continuous", "--set", "model.nf=abc"], code: "CONFIG", exit: 2, message: /model\.nf/, path: "model.nf" },
    { kind: "prototype path", argv: ["config", "show", "toy/checkerboard_ve_dsm", "--set", "__proto__.polluted=1"], code: "CONFIG", exit: 2, message: /__proto__.*prototype/ },
    { kind: "missing file", argv: ["config", "show", "./no/such/config.ts"], code: "CONFIG", exit: 2, message: /no such file/ },
  ],
  "config validate": [{ kind: "usage", argv: ["config", "validate", "toy/checkerboard_ve_dsm", "--set"], code: "USAGE", exit: 2, message: /--set expects a value/ }],
  doctor: [{ kind: "usage", argv: ["doctor", "--python"], code: "USAGE", exit: 2, message: /--python expects a value/ }],
  train: [
    { kind: "usage", argv: ["train", "toy/checkerboard_ve_dsm", "--max-steps", "-3"], code: "USAGE", exit: 2, message: /max-steps/ },
    { kind: "config", argv: ["train", "toy/checkerboard_ve_dsm", "--set", "optim.lr=fast", "--run-dir", join(dir, "never")], code: "CONFIG", exit: 2, message: /optim\.lr/, path: "optim.lr" },
    { kind: "config changed", argv: ["train", "toy/checkerboard_ve_dsm", ...FAST, "--set", "optim.lr=0.5", "--run-dir", run], code: "CONFIG_CHANGED", exit: 2, message: /optim\.lr: 0\.001 → 0\.5.*--allow-config-change/, path: join(run, "config.json") },
    { kind: "run directory", argv: ["train", "toy/checkerboard_ve_dsm", ...FAST, "--run-dir", brokenRun], code: "RUN_DIR", exit: 2, message: /config\.json: the run's experiment is not valid JSON/, path: join(brokenRun, "config.json") },
    {
      kind: "diverged",
      argv: ["train", "toy/checkerboard_ve_dsm", "--set", "optim.lr=1e30", "--set", "optim.gradClip=-1", "--set", "training.batchSize=64", "--set", "training.nIters=200", "--device", "cpu", "--run-dir"],
      code: "DIVERGED",
      exit: 3,
      message: /training diverged at step \d+/,
    },
  ],
  finetune: [
    { kind: "usage", argv: ["finetune", "fp/ve_cifar10"], code: "USAGE", exit: 2, message: /Missing required flag from/ },
    { kind: "config", argv: ["finetune", "fp/ve_cifar10", "--from", notCkpt, "--set", "model.nf=-1"], code: "CONFIG", exit: 2, message: /model\.nf/, path: "model.nf" },
    { kind: "worker refusal", argv: ["finetune", "fp/ve_cifar10", "--from", notCkpt, "--set", "model.nf=8", "--set", "data.path=/nonexistent", "--device", "cpu", "--run-dir"], code: "BAD_REQUEST", exit: 2, message: /not-a-checkpoint\.pth/ },
  ],
  "eval bpd": [
    { kind: "usage", argv: ["eval", "bpd", "--run", run, "--rtol", "tight"], code: "USAGE", exit: 2, message: /--rtol.*expected a number/s },
    { kind: "missing model", argv: ["eval", "bpd"], code: "USAGE", exit: 2, message: /--run/ },
    { kind: "run directory", argv: ["eval", "bpd", "--run", brokenRun], code: "RUN_DIR", exit: 2, message: /config\.json/, path: join(brokenRun, "config.json") },
    { kind: "worker refusal", argv: ["eval", "bpd", "toy/checkerboard_ve_dsm", "--checkpoint", notCkpt, "--device", "cpu"], code: "BAD_REQUEST", exit: 2, message: /not-a-checkpoint\.pth/ },
  ],
  "eval loss": [
    { kind: "usage", argv: ["eval", "loss", "--run", run, "--t", "soon"], code: "USAGE", exit: 2, message: /--t.*expected a number/s },
    { kind: "config", argv: ["eval", "loss", "--run", run, "--set", "loss.terms[0].reduce=both"], code: "CONFIG", exit: 2, message: /loss\.terms\[0\]\.reduce/, path: "loss.terms[0].reduce" },
  ],
  "eval fpe": [
    { kind: "usage", argv: ["eval", "fpe", "--run", run, "--t", "0.5,2"], code: "USAGE", exit: 2, message: /every time must be in \(0, 1\]/, path: "--t" },
    { kind: "run directory", argv: ["eval", "fpe", "--run", dir], code: "RUN_DIR", exit: 2, message: /not an fpdiff run directory/ },
  ],
  sample: [
    { kind: "usage", argv: ["sample", "--run", run, "--method", "magic"], code: "USAGE", exit: 2, message: /--method/ },
    { kind: "worker refusal", argv: ["sample", "toy/checkerboard_ve_dsm", "--checkpoint", notCkpt, "--device", "cpu", "--out", join(dir, "x.npy")], code: "BAD_REQUEST", exit: 2, message: /not-a-checkpoint\.pth/ },
  ],
  "ckpt inspect": [
    { kind: "usage", argv: ["ckpt", "inspect"], code: "USAGE", exit: 2, message: /Missing 1 required arg/ },
    { kind: "worker refusal", argv: ["ckpt", "inspect", notCkpt], code: "BAD_REQUEST", exit: 2, message: /is not a checkpoint \(unrecognised header/, path: "args.path" },
  ],
  "ckpt score": [
    { kind: "usage", argv: ["ckpt", "score", notCkpt, "--input", notCkpt, "--out", join(dir, "s.npz")], code: "USAGE", exit: 2, message: /Missing required flag preset/ },
    { kind: "config", argv: ["ckpt", "score", notCkpt, "--preset", "ve/cifar10_ncsnpp_contnuous", "--input", notCkpt, "--out", join(dir, "s.npz")], code: "CONFIG", exit: 2, message: /unknown preset.*did you mean ve\/cifar10_ncsnpp_continuous/ },
    {
      kind: "worker refusal",
      argv: ["ckpt", "score", join(REF, "vp_ddpmpp_small_seed0.pth"), "--preset", "ve/cifar10_ncsnpp_continuous", "--set", "model.nf=8", "--input", join(REF, "vp_ddpmpp_small_seed0_io.pt"), "--out", join(dir, "s.npz"), "--device", "cpu"],
      code: "BAD_REQUEST",
      exit: 2,
      message: /vp\/cifar10_ddpmpp_continuous/,
    },
  ],
  "ckpt convert": [
    { kind: "usage", argv: ["ckpt", "convert", notCkpt, "--to", "onnx", "--out", join(dir, "x")], code: "USAGE", exit: 2, message: /--to/ },
    { kind: "worker refusal", argv: ["ckpt", "convert", notCkpt, "--to", "safetensors", "--out", join(dir, "x.safetensors")], code: "BAD_REQUEST", exit: 2, message: /is not a checkpoint \(unrecognised header/ },
  ],
  toy: [
    { kind: "usage", argv: ["toy", "--methods", "dsm,order9"], code: "USAGE", exit: 2, message: /unknown order9/ },
    { kind: "config", argv: ["toy", "--methods", "dsm", "--set", "optim.lr=fast", "--out", join(dir, "toy"), "--device", "cpu"], code: "CONFIG", exit: 2, message: /optim\.lr/, path: "optim.lr" },
  ],
  ablate: [
    { kind: "usage", argv: ["ablate", SCRIPT, "--param", "steps"], code: "USAGE", exit: 2, message: /expected key=value/ },
    { kind: "bad param", argv: ["ablate", SCRIPT, "--param", "stpes=3"], code: "USAGE", exit: 2, message: /stpes.*steps, failAt/, path: "--param" },
    { kind: "missing script", argv: ["ablate", join(dir, "nothing.ts")], code: "USAGE", exit: 2, message: /no such file/ },
  ],
};

beforeAll(async () => {
  writeFileSync(notCkpt, "these bytes are not a checkpoint\n");
  const session = await Session.open({ device: "cpu" });
  try {
    const exp = applyOverrides(getPreset("toy/checkerboard_ve_dsm")!.experiment, ["training.batchSize=64", "training.nIters=4"]);
    await session.train(exp, { runDir: run });
    await session.train(exp, { runDir: brokenRun });
  } finally {
    await session.close();
  }
  writeFileSync(join(brokenRun, "config.json"), '{"experiment": ');
}, 120_000);

for (const [command, cases] of Object.entries(CASES)) {
  describe.concurrent(`fpd ${command}`, () => {
    for (const c of cases) {
      it(`${c.kind}: ${c.code}, exit ${c.exit}, alike with --json`, { timeout: 120_000 }, async () => {
        // a trailing --run-dir gets a fresh directory per invocation (the two runs go at once, and a
        // run directory takes one training process at a time)
        const argv = (suffix: string) =>
          c.argv[c.argv.length - 1] === "--run-dir" ? [...c.argv, join(dir, `${command.replace(/ /g, "-")}-${c.kind.replace(/ /g, "-")}-${suffix}`)] : c.argv;
        const env = { ...process.env, OCLIF_COLUMNS: "100000" }; // no wrapping of the plain message
        const [plain, asJson] = await Promise.all([runCli(argv("plain"), env), runCli([...argv("json"), "--json"], env)]);
        expect(plain.status, plain.stderr).toBe(c.exit);
        expect(asJson.status, asJson.stdout + asJson.stderr).toBe(c.exit);
        const doc = JSON.parse(asJson.stdout) as { error: { code: string; message: string; path?: string; details?: unknown } };
        expect(Object.keys(doc)).toEqual(["error"]);
        expect(doc.error.code).toBe(c.code);
        expect(doc.error.message).toMatch(c.message);
        if (typeof c.path === "string") expect(doc.error.path).toBe(c.path);
        else if (c.path) expect(doc.error.path).toMatch(c.path);
        expect(Object.keys(doc.error).every((k) => ["code", "message", "path", "details"].includes(k))).toBe(true);
        // the plain run says the same thing on stderr
        const words = (s: string) => s.replace(/ ›/g, " ").replace(/\s+/g, " ");
        expect(words(plain.stderr)).toContain(words(doc.error.message.split("\n")[0]!));
      });
    }
  });
}

describe("prototype pollution through --set", () => {
  it("constructor.prototype is refused too, and a valid config is still accepted afterwards in the same process", async () => {
    const { applyOverrides: apply } = await import("../../src/dsl/overrides.js");
    const base = getPreset("toy/checkerboard_ve_dsm")!.experiment;
    expect(() => apply(base, ["__proto__.polluted=1"])).toThrow(/__proto__/);
    expect(() => apply(base, ["constructor.prototype.polluted=1"])).toThrow(/constructor/);
    expect(() => apply(base, ['model={"__proto__": {"polluted": 1}}'])).toThrow();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(apply(base, ["optim.lr=0.002"]).optim.lr).toBe(0.002);
  });
});
