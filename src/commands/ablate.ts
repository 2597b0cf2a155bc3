import { Args, Command, Flags } from "@oclif/core";
import { existsSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { runAblation, type Ablation, type AblationOutcome } from "../api/ablation.js";
import { withInterrupt } from "../cli/interrupt.js";
import { table } from "../cli/render.js";
import { deviceFlag } from "../cli/common.js";

export default class Ablate extends Command {
  static override summary = "Run an ablation script written in TypeScript.";
  static override description =
    "The script's default export is `defineAblation({name, description, params, grid, run, plot})` (see ablations/). Every " +
    "grid point runs on a worker; finished points are kept in <out>/results.jsonl, so running the same command again after " +
    "an interruption continues where it stopped. Writes <out>/results.md (table), results.csv and results.png.";
  static override examples = [
    "<%= config.bin %> ablate ablations/fpe_weight.ts",
    "<%= config.bin %> ablate ablations/orders.ts --param steps=3000 --parallel 2",
    "<%= config.bin %> ablate ablations/fpe_alpha.ts --out ablations/results/fpe_alpha",
  ];
  static override enableJsonFlag = true;
  static override args = { script: Args.string({ description: "a .ts / .js file whose default export is an ablation", required: true }) };
  static override flags = {
    param: Flags.string({ description: "set one of the script's params: key=value (repeatable)", multiple: true, default: [] }),
    out: Flags.string({ description: "output directory (default runs/ablate-<script name>)" }),
    parallel: Flags.integer({ description: "workers running points at once", default: 1, min: 1 }),
    device: deviceFlag,
  };

  async run(): Promise<AblationOutcome> {
    const { args, flags } = await this.parse(Ablate);
    const file = resolve(args.script);
    if (!existsSync(file)) this.error(`no such file: ${file}`, { exit: 2 });
    const mod = (extname(file).endsWith("ts")
      ? await (await import("tsx/esm/api")).tsImport(pathToFileURL(file).href, import.meta.url)
      : await import(pathToFileURL(file).href)) as { default?: unknown };
    let ablation = mod.default as Ablation<never, never, never> | { default?: unknown } | undefined;
    if (ablation && typeof ablation === "object" && "default" in ablation && !("run" in ablation)) ablation = ablation.default as Ablation<never, never, never>;
    if (!ablation || typeof (ablation as Ablation<never, never, never>).run !== "function") {
      this.error(`${file}: the default export must be defineAblation({...}) with a run() function`, { exit: 2 });
    }
    const a = ablation as Ablation<never, never, never>;
    const params: Record<string, string> = {};
    for (const p of flags.param) {
      const i = p.indexOf("=");
      if (i <= 0) this.error(`--param ${p}: expected key=value`, { exit: 2 });
      params[p.slice(0, i)] = p.slice(i + 1);
    }
    const out = flags.out ?? join("runs", `ablate-${basename(file, extname(file))}`);
    const quiet = this.jsonEnabled();
    let outcome: AblationOutcome;
    try {
      outcome = await withInterrupt((signal) =>
        runAblation(a, {
          outDir: out,
          params,
          signal,
          parallel: flags.parallel,
          device: flags.device,
          log: (m) => !quiet && process.stderr.write(`${m}\n`),
          onPoint: (i) => !quiet && process.stderr.write(`[${a.name}] point ${i.index + 1}/${i.total} ${JSON.stringify(i.point)}${i.resumed ? " (already done)" : " done"}\n`),
        }),
      );
    } catch (err) {
      if (err instanceof Error && /--param/.test(err.message)) this.error(err.message, { exit: 2 });
      throw err;
    }
    if (!quiet) {
      this.log(table(outcome.rows as Record<string, unknown>[]));
      this.log(`\ntable: ${outcome.markdown}\ncsv:   ${outcome.csv}${outcome.plot ? `\nplot:  ${outcome.plot}` : ""}`);
    }
    return outcome;
  }
}
