import { Args, Flags } from "@oclif/core";
import { existsSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { mergeParams, runAblation, type Ablation, type AblationOutcome } from "../api/ablation.js";
import { FpdCommand } from "../cli/base.js";
import { UsageError } from "../cli/errors.js";
import { deviceFlag, keyValueFlag } from "../cli/flags.js";
import { withInterrupt } from "../cli/interrupt.js";
import { table } from "../cli/render.js";

export default class Ablate extends FpdCommand {
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
  static override args = { script: Args.string({ description: "a .ts / .js file whose default export is an ablation", required: true }) };
  static override flags = {
    param: keyValueFlag({ description: "set one of the script's params: key=value (repeatable)", multiple: true, default: [] }),
    out: Flags.string({ description: "output directory (default runs/ablate-<script name>)" }),
    parallel: Flags.integer({ description: "workers running points at once", default: 1, min: 1 }),
    device: deviceFlag,
  };

  async run(): Promise<AblationOutcome> {
    const { args, flags } = await this.parse(Ablate);
    const file = resolve(args.script);
    if (!existsSync(file)) throw new UsageError(`no such file: ${file}`, file);
    let mod: { default?: unknown };
    try {
      mod = (extname(file).endsWith("ts")
        ? await (await import("tsx/esm/api")).tsImport(pathToFileURL(file).href, import.meta.url)
        : await import(pathToFileURL(file).href)) as { default?: unknown };
    } catch (err) {
      throw new UsageError(`${file}: the script failed to load: ${(err as Error)?.message ?? String(err)}`, file);
    }
    let ablation = mod.default as Ablation<never, never, never> | { default?: unknown } | undefined;
    if (ablation && typeof ablation === "object" && "default" in ablation && !("run" in ablation)) ablation = ablation.default as Ablation<never, never, never>;
    if (!ablation || typeof (ablation as Ablation<never, never, never>).run !== "function") {
      throw new UsageError(`${file}: the default export must be defineAblation({...}) with a run() function`, file);
    }
    const a = ablation as Ablation<never, never, never>;
    const params: Record<string, string> = Object.fromEntries(flags.param.map((p) => [p.key, p.value]));
    try {
      mergeParams(a.params, params); // unknown names and wrong types are the user's to fix
    } catch (err) {
      throw new UsageError((err as Error).message, "--param");
    }
    const out = flags.out ?? join("runs", `ablate-${basename(file, extname(file))}`);
    const quiet = this.jsonEnabled();
    const outcome = await withInterrupt((signal) =>
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
    if (!quiet) {
      this.log(table(outcome.rows as Record<string, unknown>[]));
      this.log(`\ntable: ${outcome.markdown}\ncsv:   ${outcome.csv}${outcome.plot ? `\nplot:  ${outcome.plot}` : ""}`);
    }
    return outcome;
  }
}
