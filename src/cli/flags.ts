/** Flags many commands share; kept free of heavy imports so light commands stay quick to start. */
import { Flags } from "@oclif/core";

export const setFlag = Flags.string({ description: "override a field: path=value (repeatable)", multiple: true, default: [] });
export const deviceFlag = Flags.string({ description: "auto (CUDA when present) | cpu | cuda | cuda:N", default: "auto" });
