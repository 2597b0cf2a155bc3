/** The envelope every message travels in. */
import { z } from "zod";
import { ERROR_CODES } from "./errors.js";

export const RequestId = z.union([z.number().int(), z.string()]);

export const RequestEnvelope = z.object({
  v: z.number().int(),
  id: RequestId,
  op: z.string(),
  args: z.record(z.string(), z.unknown()),
});
export type RequestEnvelope = z.infer<typeof RequestEnvelope>;

export const ReplyKind = z.enum(["event", "result", "error"]);

export const ReplyEnvelope = z.object({
  v: z.number().int(),
  id: RequestId.nullable(),
  kind: ReplyKind,
  data: z.unknown(),
});
export type ReplyEnvelope = z.infer<typeof ReplyEnvelope>;

export const ErrorData = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  field: z.string().optional(),
  details: z.object({ traceback: z.string().optional() }).catchall(z.unknown()).optional(),
});
export type ErrorData = z.infer<typeof ErrorData>;
