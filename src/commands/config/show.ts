import { Flags } from "@oclif/core";
import { originalLayout } from "../../dsl/layout.js";
import { loadExperiment } from "../../dsl/load.js";
import { FpdCommand } from "../../cli/base.js";
import { experimentArg, setFlag } from "../../cli/flags.js";

function render(value: unknown, indent = ""): string[] {
  if (value === null || typeof value !== "object") return [`${JSON.stringify(value)}`];
  const lines: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      lines.push(`${indent}${k}:`, ...render(v, `${indent}  `));
    } else if (Array.isArray(v) && v.some((x) => x !== null && typeof x === "object")) {
      lines.push(`${indent}${k}:`);
      v.forEach((item, i) => lines.push(`${indent}  [${i}]`, ...render(item, `${indent}    `)));
    } else {
      lines.push(`${indent}${k}: ${JSON.stringify(v)}`);
    }
  }
  return lines;
}

export default class ConfigShow extends FpdCommand {
  static override summary = "Show a resolved experiment in the original Score SDE layout.";
  static override description =
    "Sections training, sampling, eval, data, model, optim with the original snake_case names, plus seed and loss. " +
    "With --wire, the experiment exactly as it travels to the worker (camelCase).";
  static override examples = [
    "<%= config.bin %> config show ve/cifar10_ncsnpp_continuous --json",
    "<%= config.bin %> config show fp/ve_cifar10 --set model.nf=8 --set loss.terms[1].alpha=0.3",
    "<%= config.bin %> config show ./my_experiment.ts --wire",
  ];
  static override args = experimentArg;
  static override flags = {
    set: setFlag,
    wire: Flags.boolean({ description: "the camelCase experiment as sent to the worker", default: false }),
  };

  async run(): Promise<Record<string, unknown>> {
    const { args, flags } = await this.parse(ConfigShow);
    const { experiment, warnings } = await loadExperiment(args.config, { set: flags.set });
    const shown = flags.wire ? (experiment as unknown as Record<string, unknown>) : originalLayout(experiment);
    if (!this.jsonEnabled()) {
      for (const line of render(shown)) this.log(line);
      for (const w of warnings) this.warn(`${w.path}: ${w.message}`);
    }
    return shown;
  }
}
