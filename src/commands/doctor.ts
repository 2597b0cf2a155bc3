import { Flags } from "@oclif/core";
import { FpdCommand } from "../cli/base.js";
import { diagnose, type DoctorReport } from "../api/doctor.js";

export default class Doctor extends FpdCommand {
  static override summary = "Check the environment fpdiff needs and say what to fix.";
  static override description =
    "Reports Node and npm, the Python interpreter fpdiff uses (FPD_PYTHON, the project's .venv, or python3) and its packages, " +
    "probed through pythonia independently of the worker (so a worker that cannot start is still explained), CUDA devices, " +
    "and a worker round trip with its latency. Exits with status 1 when something required is missing.";
  static override examples = ["<%= config.bin %> doctor", "<%= config.bin %> doctor --json", "FPD_PYTHON=/opt/conda/bin/python <%= config.bin %> doctor"];
  static override flags = {
    python: Flags.string({ description: "interpreter to check instead of the one fpdiff would pick" }),
    "skip-worker": Flags.boolean({ description: "do not start a worker", default: false }),
  };

  async run(): Promise<DoctorReport> {
    const { flags } = await this.parse(Doctor);
    const report = await diagnose({ python: flags.python, skipWorker: flags["skip-worker"] });
    if (!this.jsonEnabled()) {
      const mark = { ok: "ok  ", warn: "WARN", fail: "FAIL" } as const;
      for (const c of report.checks) {
        this.log(`${mark[c.status]}  ${c.name.padEnd(12)} ${c.detail}`);
        if (c.hint && c.status !== "ok") this.log(`      ${"".padEnd(12)} → ${c.hint}`);
      }
      this.log(report.ok ? "\nfpdiff is ready." : "\nfpdiff is NOT ready: fix the FAIL lines above.");
    }
    if (!report.ok) process.exitCode = 1;
    return report;
  }
}
