/** NumPy's .npy format (version 1.0) for a tensor, so samples open with `numpy.load`. */
import type { Tensor } from "../protocol/tensor.js";

const DESCR: Record<string, string> = {
  float16: "<f2",
  float32: "<f4",
  float64: "<f8",
  int64: "<i8",
  int32: "<i4",
  uint8: "|u1",
  bool: "|b1",
  bfloat16: "<u2", // numpy has no bfloat16: the raw 16-bit words
};

export function toNpy(t: Tensor): Buffer {
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  let header = `{'descr': '${DESCR[t.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n"; // the format pads the header to 64 bytes
  const pre = Buffer.alloc(10);
  pre.write("\x93NUMPY", 0, "latin1");
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, "latin1"), Buffer.from(t.bytes)]);
}
