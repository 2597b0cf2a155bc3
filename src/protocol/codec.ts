/**
 * msgpack codec of the wire, with the tensor extension shared with py/fpdiff/protocol.py:
 *
 *   u8 layout (1) | u8 dtype code | u8 ndim | 5 zero bytes | ndim × u64 LE shape | raw LE data
 *
 * Encoding writes the payload straight into msgpackr's output buffer (one copy of the data);
 * decoding views the received buffer in place when its alignment allows, and copies otherwise.
 */
import { addExtension, Packr, Unpackr } from "msgpackr";
import os from "node:os";
import { ARRAY_OF, DTYPES, itemSize, numel, Tensor, type DType } from "./tensor.js";

export const TENSOR_EXT = 0x10;
const LAYOUT = 1;

if (os.endianness() !== "LE") throw new Error("fpdiff's wire format assumes a little-endian host");

export class CodecError extends Error {}

function writeTensor(t: Tensor, allocate: (size: number) => { target: Uint8Array; targetView: DataView; position: number }): void {
  const ndim = t.shape.length;
  const head = 8 + 8 * ndim;
  const len = head + t.bytes.byteLength;
  const { target, targetView, position } = allocate(6 + len);
  target[position] = 0xc9; // ext 32: the payload length never has to be guessed in advance
  targetView.setUint32(position + 1, len);
  target[position + 5] = TENSOR_EXT;
  const p = position + 6;
  target.fill(0, p, p + 8);
  target[p] = LAYOUT;
  target[p + 1] = DTYPES.indexOf(t.dtype);
  target[p + 2] = ndim;
  for (let i = 0; i < ndim; i++) targetView.setBigUint64(p + 8 + 8 * i, BigInt(t.shape[i]!), true);
  target.set(t.bytes, p + head);
}

export function readTensor(payload: Uint8Array, maxTensorBytes = Infinity): Tensor {
  if (payload.byteLength < 8) throw new CodecError("tensor payload shorter than its 8-byte header");
  const [layout, code, ndim] = [payload[0]!, payload[1]!, payload[2]!];
  if (layout !== LAYOUT) throw new CodecError(`tensor payload layout ${layout} is not supported`);
  const dtype: DType | undefined = DTYPES[code];
  if (dtype === undefined) throw new CodecError(`tensor dtype code ${code} is unknown`);
  const head = 8 + 8 * ndim;
  if (payload.byteLength < head) throw new CodecError(`tensor payload too short for its ${ndim}-d shape`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(Number(view.getBigUint64(8 + 8 * i, true)));
  const size = itemSize(dtype);
  const nbytes = numel(shape) * size;
  if (nbytes > maxTensorBytes) throw new CodecError(`tensor of ${nbytes} bytes exceeds the limit of ${maxTensorBytes}`);
  if (payload.byteLength - head !== nbytes) {
    throw new CodecError(`tensor of dtype ${dtype} and shape [${shape.join(", ")}] needs ${nbytes} data bytes but carries ${payload.byteLength - head}`);
  }
  const offset = payload.byteOffset + head;
  const Ctor = ARRAY_OF[dtype];
  const data =
    offset % size === 0
      ? new Ctor(payload.buffer, offset, nbytes / size)
      : new Ctor(payload.buffer.slice(offset, offset + nbytes) as ArrayBuffer, 0, nbytes / size);
  return new Tensor(dtype, shape, data);
}

addExtension({
  Class: Tensor,
  type: TENSOR_EXT,
  pack(value: Tensor, allocate: Parameters<typeof writeTensor>[1]) {
    writeTensor(value, allocate);
  },
  unpack(payload: Uint8Array) {
    return readTensor(payload);
  },
} as unknown as Parameters<typeof addExtension>[0]);

const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true, moreTypes: false, int64AsType: "number" });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export function encode(doc: unknown): Buffer {
  return packr.pack(doc);
}

export function decode(buf: Uint8Array): unknown {
  return unpackr.unpack(buf);
}

/**
 * Read the scalar fields (`v`, `id`, `kind`/`op`) at the start of an envelope without decoding
 * its payload, so that an oversized or undecodable reply can still be matched to its request.
 */
export function peekHeader(buf: Uint8Array): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const byte = () => {
    if (p >= buf.byteLength) throw new CodecError("truncated");
    return buf[p++]!;
  };
  const str = (len: number) => {
    const s = Buffer.from(buf.buffer, buf.byteOffset + p, len).toString("utf8");
    p += len;
    return s;
  };
  const scalar = (): string | number | null | undefined => {
    const b = byte();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return str(b - 0xa0);
    switch (b) {
      case 0xc0: return null;
      case 0xcc: return byte();
      case 0xcd: p += 2; return dv.getUint16(p - 2);
      case 0xce: p += 4; return dv.getUint32(p - 4);
      case 0xcf: p += 8; return Number(dv.getBigUint64(p - 8));
      case 0xd0: p += 1; return dv.getInt8(p - 1);
      case 0xd1: p += 2; return dv.getInt16(p - 2);
      case 0xd2: p += 4; return dv.getInt32(p - 4);
      case 0xd3: p += 8; return Number(dv.getBigInt64(p - 8));
      case 0xd9: return str(byte());
      case 0xda: p += 2; return str(dv.getUint16(p - 2));
      default: return undefined;
    }
  };
  try {
    const h = byte();
    let n: number;
    if (h >= 0x80 && h <= 0x8f) n = h - 0x80;
    else if (h === 0xde) { n = dv.getUint16(p); p += 2; }
    else if (h === 0xdf) { n = dv.getUint32(p); p += 4; }
    else return out;
    for (let i = 0; i < n; i++) {
      const key = scalar();
      if (key !== "v" && key !== "id" && key !== "op" && key !== "kind") break;
      const value = scalar();
      if (value === undefined) break;
      out[key] = value;
    }
  } catch {
    // a header we cannot read yields what was found so far
  }
  return out;
}
