// TensorData: a tensor as it comes out of a file — dtype, shape and a typed array — before any
// network sees it. Readers (torch, safetensors, image) produce it, writers consume it.
//
// Dtype names follow PyTorch (`float32`, `float16`, `int64`, ...), the vocabulary of src/graph.
// Half-precision values are kept as their raw bits (Uint16Array: Node 20 has no Float16Array);
// `toFloat32Array` upcasts them exactly. `dtypeCode` gives the safetensors / official-key-file
// spelling (`F32`, `F16`, `I64`, ...).

import { IoError } from './errors.ts';

export type DType =
  | 'float64' | 'float32' | 'float16' | 'bfloat16'
  | 'int64' | 'int32' | 'int16' | 'int8'
  | 'uint64' | 'uint32' | 'uint16' | 'uint8'
  | 'bool';

/** The typed array that holds each dtype (float16/bfloat16: raw bits; bool: 0/1 bytes). */
export interface DTypeArrays {
  float64: Float64Array; float32: Float32Array; float16: Uint16Array; bfloat16: Uint16Array;
  int64: BigInt64Array; int32: Int32Array; int16: Int16Array; int8: Int8Array;
  uint64: BigUint64Array; uint32: Uint32Array; uint16: Uint16Array; uint8: Uint8Array;
  bool: Uint8Array;
}
export type TypedArray = DTypeArrays[DType];

interface DTypeInfo {
  size: number;
  code: string;
  array: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray; new (length: number): TypedArray };
  float: boolean;
}

const DTYPES: Record<DType, DTypeInfo> = {
  float64: { size: 8, code: 'F64', array: Float64Array, float: true },
  float32: { size: 4, code: 'F32', array: Float32Array, float: true },
  float16: { size: 2, code: 'F16', array: Uint16Array, float: true },
  bfloat16: { size: 2, code: 'BF16', array: Uint16Array, float: true },
  int64: { size: 8, code: 'I64', array: BigInt64Array, float: false },
  int32: { size: 4, code: 'I32', array: Int32Array, float: false },
  int16: { size: 2, code: 'I16', array: Int16Array, float: false },
  int8: { size: 1, code: 'I8', array: Int8Array, float: false },
  uint64: { size: 8, code: 'U64', array: BigUint64Array, float: false },
  uint32: { size: 4, code: 'U32', array: Uint32Array, float: false },
  uint16: { size: 2, code: 'U16', array: Uint16Array, float: false },
  uint8: { size: 1, code: 'U8', array: Uint8Array, float: false },
  bool: { size: 1, code: 'BOOL', array: Uint8Array, float: false },
};

const BY_CODE = new Map<string, DType>(Object.entries(DTYPES).map(([d, i]) => [i.code, d as DType]));

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** Bytes per element. */
export function dtypeSize(dtype: DType): number {
  return DTYPES[dtype].size;
}

/** True for float64/32/16 and bfloat16. */
export function isFloatDType(dtype: DType): boolean {
  return DTYPES[dtype].float;
}

/** The safetensors spelling (`F32`, `F16`, `BF16`, `I64`, `U8`, `BOOL`, ...), also used by the official_*_keys.json fixtures. */
export function dtypeCode(dtype: DType): string {
  return DTYPES[dtype].code;
}

/** Inverse of `dtypeCode`; undefined for an unknown code. */
export function dtypeFromCode(code: string): DType | undefined {
  return BY_CODE.get(code);
}

/** Product of the dimensions (1 for a scalar). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export class TensorData<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  /**
   * Row-major elements. May be a view into the file's bytes (and shared with other tensors
   * cut from the same storage, as in PyTorch): copy it before writing to it.
   */
  readonly data: DTypeArrays[D];

  constructor(dtype: D, shape: readonly number[], data: DTypeArrays[D]) {
    const n = shapeSize(shape);
    if (data.length !== n) {
      throw new IoError(`tensor of shape [${shape.join(', ')}] needs ${n} elements, got ${data.length}`);
    }
    if (!(data instanceof DTYPES[dtype].array)) {
      throw new IoError(`a ${dtype} tensor needs a ${DTYPES[dtype].array.name}, got ${data.constructor.name}`);
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
  }

  get numel(): number {
    return this.data.length;
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  /** The elements' bytes, little-endian (a view, no copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  toString(): string {
    return `TensorData(${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

/** A 32-bit float tensor, e.g. `f32([2, 3], data)`. */
export function f32(shape: readonly number[], data?: Float32Array | readonly number[]): TensorData<'float32'> {
  const arr = data instanceof Float32Array ? data : data ? Float32Array.from(data) : new Float32Array(shapeSize(shape));
  return new TensorData('float32', shape, arr);
}

/**
 * `count` elements of `dtype` read from `bytes` at `byteOffset` (little-endian): a view when the
 * offset is aligned for the element size, a copy otherwise (typed arrays need alignment).
 * The caller has bounds-checked the range.
 */
export function typedArrayFromBytes<D extends DType>(
  dtype: D, bytes: Uint8Array, byteOffset: number, count: number, opts: { copy?: boolean } = {},
): DTypeArrays[D] {
  const info = DTYPES[dtype];
  const start = bytes.byteOffset + byteOffset;
  if (!opts.copy && start % info.size === 0) {
    return new info.array(bytes.buffer, start, count) as DTypeArrays[D];
  }
  const out = new info.array(count) as DTypeArrays[D];
  new Uint8Array(out.buffer).set(bytes.subarray(byteOffset, byteOffset + count * info.size));
  return out;
}

/** Reverses the byte order of every element in place (for big-endian files). */
export function swapBytesInPlace(arr: TypedArray): void {
  const size = arr.BYTES_PER_ELEMENT;
  if (size === 1) return;
  const b = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  for (let i = 0; i < b.length; i += size) {
    for (let lo = i, hi = i + size - 1; lo < hi; lo++, hi--) {
      const t = b[lo]!;
      b[lo] = b[hi]!;
      b[hi] = t;
    }
  }
}

// --- half precision ---------------------------------------------------------------------------

let HALF_TABLE: Float32Array | undefined;

/** float32 value of every float16 bit pattern: the upcast is a table lookup, exact by construction. */
function halfTable(): Float32Array {
  if (HALF_TABLE) return HALF_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return (HALF_TABLE = t);
}

/** float16 bits -> float32 values (exact). */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** bfloat16 bits -> float32 values (exact: bfloat16 is the top half of a float32). */
export function bfloat16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/** float32 values -> float16 bits, rounding to nearest even (as `tensor.half()` does). */
export function float32ToFloat16Bits(values: Float32Array | readonly number[]): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00; // overflow -> inf
    } else if (e <= 0) {
      // subnormal half (or zero): shift the mantissa with its implicit bit, round to nearest even
      if (e < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
    } else {
      let h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into the exponent: correct
      out[i] = sign | h;
    }
  }
  return out;
}

/**
 * The tensor's values as a Float32Array. float32 data is returned as is (no copy — it may be a
 * view into the file); float16/bfloat16 are upcast exactly; float64 and integers are rounded to
 * the nearest float32 (exact for integers below 2^24).
 */
export function toFloat32Array(t: TensorData): Float32Array {
  switch (t.dtype) {
    case 'float32': return t.data as Float32Array;
    case 'float16': return float16BitsToFloat32(t.data as Uint16Array);
    case 'bfloat16': return bfloat16BitsToFloat32(t.data as Uint16Array);
    case 'int64': case 'uint64': {
      const src = t.data as BigInt64Array | BigUint64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    default: return Float32Array.from(t.data as Float64Array);
  }
}

/** The tensor converted to a float32 TensorData (the same object when it already is one). */
export function toFloat32(t: TensorData): TensorData<'float32'> {
  if (t.dtype === 'float32') return t as TensorData<'float32'>;
  return new TensorData('float32', t.shape, toFloat32Array(t));
}
