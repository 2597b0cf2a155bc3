/**
 * Tensors on the TypeScript side: a dtype, a shape and the raw little-endian data of a
 * C-contiguous array. They cross the wire as one msgpack extension (see codec.ts) and arrive in
 * Python as torch tensors.
 */

export const DTYPES = ["float16", "bfloat16", "float32", "float64", "int64", "int32", "uint8", "bool"] as const;
export type DType = (typeof DTYPES)[number];

/** Typed-array view per dtype. float16 and bfloat16 have no JS array type: raw 16-bit words. */
export interface DataOf {
  float16: Uint16Array;
  bfloat16: Uint16Array;
  float32: Float32Array;
  float64: Float64Array;
  int64: BigInt64Array;
  int32: Int32Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}
export type TensorData = DataOf[DType];

type ArrayCtor = { new (buf: ArrayBufferLike, off: number, len: number): TensorData; new (len: number): TensorData; BYTES_PER_ELEMENT: number };

export const ARRAY_OF: Record<DType, ArrayCtor> = {
  float16: Uint16Array as unknown as ArrayCtor,
  bfloat16: Uint16Array as unknown as ArrayCtor,
  float32: Float32Array as unknown as ArrayCtor,
  float64: Float64Array as unknown as ArrayCtor,
  int64: BigInt64Array as unknown as ArrayCtor,
  int32: Int32Array as unknown as ArrayCtor,
  uint8: Uint8Array as unknown as ArrayCtor,
  bool: Uint8Array as unknown as ArrayCtor,
};

export function itemSize(dtype: DType): number {
  return ARRAY_OF[dtype].BYTES_PER_ELEMENT;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DataOf[D];

  constructor(dtype: D, shape: readonly number[], data: DataOf[D]) {
    if (!DTYPES.includes(dtype)) throw new TypeError(`unknown dtype ${String(dtype)}`);
    for (const [i, n] of shape.entries()) {
      if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`shape[${i}] must be a non-negative integer, got ${n}`);
    }
    if (data.length !== numel(shape)) {
      throw new TypeError(`a ${dtype} tensor of shape [${shape.join(", ")}] needs ${numel(shape)} elements, got ${data.length}`);
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
  }

  get numel(): number {
    return this.data.length;
  }

  /** The raw bytes, without copying. */
  get bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  /** Elements as JS numbers (int64 through Number, float16 / bfloat16 decoded). */
  toArray(): number[] {
    if (this.dtype === "float16") return Array.from(this.data as Uint16Array, halfToNumber);
    if (this.dtype === "bfloat16") return Array.from(this.data as Uint16Array, bfloatToNumber);
    if (this.dtype === "int64") return Array.from(this.data as BigInt64Array, Number);
    return Array.from(this.data as ArrayLike<number>);
  }

  /** JSON form (for `--json` output and logs): dtype, shape and the values as numbers. */
  toJSON(): { dtype: D; shape: readonly number[]; data: number[] } {
    return { dtype: this.dtype, shape: this.shape, data: this.toArray() };
  }

  /** The scalar of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new RangeError(`item() needs one element, this tensor has ${this.numel}`);
    return this.toArray()[0]!;
  }
}

export function tensor(values: ArrayLike<number> | Float32Array, shape?: readonly number[]): Tensor<"float32">;
export function tensor<D extends DType>(values: ArrayLike<number> | DataOf[D], shape: readonly number[] | undefined, dtype: D): Tensor<D>;
/** Build a tensor from numbers or a matching typed array (shape defaults to 1-d). */
export function tensor(values: ArrayLike<number> | TensorData, shape?: readonly number[], dtype: DType = "float32"): Tensor {
  const s = shape ?? [values.length];
  const Ctor = ARRAY_OF[dtype];
  let data: TensorData;
  if (values instanceof Ctor) data = values as TensorData;
  else if (dtype === "int64") data = BigInt64Array.from(Array.from(values as ArrayLike<number>, (v) => BigInt(v)));
  else if (dtype === "float16") data = Uint16Array.from(values as ArrayLike<number>, numberToHalf);
  else if (dtype === "bfloat16") data = Uint16Array.from(values as ArrayLike<number>, numberToBfloat);
  else {
    data = new Ctor(values.length);
    (data as Float64Array).set(values as ArrayLike<number>);
  }
  return new Tensor(dtype, s, data);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bfloatToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

function numberToBfloat(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40; // NaN stays NaN
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16; // round to nearest even
}

function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function numberToHalf(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -24 / 2) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  let e = Math.floor(Math.log2(a));
  let m = Math.round((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  return sign | ((e + 15) << 10) | m;
}
