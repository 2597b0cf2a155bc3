import { Args } from "@oclif/core";
import { FpdCommand } from "../../cli/base.js";
import { listPresets } from "../../dsl/load.js";

export default class ConfigList extends FpdCommand {
  static override summary = "List the presets with a one-line description each.";
  static override examples = ["<%= config.bin %> config list", "<%= config.bin %> config list toy/", "<%= config.bin %> config list --json"];
  static override args = {
    prefix: Args.string({ description: "only presets whose name starts with this (e.g. fp/, toy/)", required: false }),
  };

  async run(): Promise<{ presets: Array<{ name: string; description: string }> }> {
    const { args } = await this.parse(ConfigList);
    const presets = (await listPresets()).filter((p) => !args.prefix || p.name.startsWith(args.prefix));
    const width = Math.max(0, ...presets.map((p) => p.name.length));
    for (const p of presets) this.log(`${p.name.padEnd(width)}  ${p.description}`);
    return { presets };
  }
}
