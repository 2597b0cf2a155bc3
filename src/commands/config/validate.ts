import { FpdCommand } from "../../cli/base.js";
import { ConfigError, type ConfigIssue } from "../../dsl/index.js";
import { loadExperiment } from "../../dsl/load.js";
import { experimentArg, setFlag } from "../../cli/flags.js";

export interface ValidateResult {
  config: string;
  valid: boolean;
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
}

export default class ConfigValidate extends FpdCommand {
  static override summary = "Check an experiment: types, ranges, unknown keys and cross-field rules.";
  static override description = "Exits 1 when the experiment is invalid; every problem names its field path.";
  static override examples = [
    "<%= config.bin %> config validate highorder/ve_cifar10_order3",
    "<%= config.bin %> config validate ./my_experiment.json --set loss.terms[0].reduce=mean --json",
  ];
  static override args = experimentArg;
  static override flags = {
    set: setFlag,
  };

  async run(): Promise<ValidateResult> {
    const { args, flags } = await this.parse(ConfigValidate);
    let result: ValidateResult;
    try {
      const { warnings } = await loadExperiment(args.config, { set: flags.set });
      result = { config: args.config, valid: true, errors: [], warnings };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      result = { config: args.config, valid: false, errors: err.issues, warnings: [] };
    }
    if (!this.jsonEnabled()) {
      if (result.valid) this.log(`✓ ${args.config} is valid`);
      else this.log(`✗ ${args.config} is invalid`);
      for (const e of result.errors) this.log(`  error   ${e.path || "(experiment)"}: ${e.message}`);
      for (const w of result.warnings) this.log(`  warning ${w.path}: ${w.message}`);
    }
    if (!result.valid) process.exitCode = 1;
    return result;
  }
}
