// safetensors: `u64 header length N | N bytes of JSON | tensor bytes`, the header mapping each
// name to {dtype, shape, data_offsets: [begin, end)} relative to the tensor bytes, plus an
// optional "__metadata__" string map. Row-major, little-endian, no strides.
//
// The reader checks the header the way the reference Rust implementation does — sane length,
// known dtypes, shapes whose byte size equals the offset range, ranges inside the buffer and not
// overlapping — before touching any tensor bytes, and returns tensors as views of the file when
// they are aligned (writers pad the header to a multiple of 8, so they usually are).

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { SafetensorsError, printable, rethrowWithPath } from './errors.ts';
import { DType, TensorData, dtypeCode, dtypeFromCode, dtypeSize, typedArrayFromBytes } from './tensor.ts';

export type SafetensorsMetadata = Record<string, string>;

export interface SafetensorsFile {
  /** Tensors by name, in the order of their data in the file. */
  tensors: Map<string, TensorData>;
  /** The `__metadata__` map ({} when absent). */
  metadata: SafetensorsMetadata;
}

/** The reference implementation refuses headers above 100 MB. */
const MAX_HEADER = 100_000_000;

/** Parses safetensors bytes. Tensors are views of `bytes` where alignment allows. */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (bytes.length < 8) throw new SafetensorsError(`file of ${bytes.length} bytes is too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  if (n > MAX_HEADER) throw new SafetensorsError(`header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  if (n > bytes.length - 8) throw new SafetensorsError(`header length ${n} runs past the end of the file (${bytes.length} bytes)`);
  if (n < 2 || bytes[8] !== 0x7b /* { */) throw new SafetensorsError('header is not a JSON object');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError('header is not a JSON object');

  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  let metadata: SafetensorsMetadata = {};
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(info);
      continue;
    }
    const label = `tensor '${printable(name)}'`;
    if (typeof info !== 'object' || info === null) throw new SafetensorsError(`${label}: entry is not an object`);
    const { dtype: code, shape, data_offsets: offsets } = info as Record<string, unknown>;
    const dtype = typeof code === 'string' ? dtypeFromCode(code) : undefined;
    if (!dtype) throw new SafetensorsError(`${label}: unsupported dtype ${JSON.stringify(code)}`);
    if (!Array.isArray(shape) || shape.length > 64 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${label}: bad shape ${JSON.stringify(shape)?.slice(0, 80)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(`${label}: bad data_offsets ${JSON.stringify(offsets)?.slice(0, 80)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) {
      throw new SafetensorsError(`${label}: data_offsets [${begin}, ${end}] outside the ${dataLength} data bytes`);
    }
    // numel * size must equal the range; computed in floating point, a huge lying shape simply fails to match
    let nbytes = dtypeSize(dtype);
    for (const d of shape as number[]) nbytes *= d;
    if (nbytes !== end - begin) {
      throw new SafetensorsError(`${label}: ${code} [${(shape as number[]).join(', ')}] needs ${nbytes} bytes, data_offsets give ${end - begin}`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const cur = entries[i]!;
    if (cur.begin < prev.end) throw new SafetensorsError(`tensors '${printable(prev.name)}' and '${printable(cur.name)}' overlap`);
  }

  const tensors = new Map<string, TensorData>();
  for (const e of entries) {
    const numel = (e.end - e.begin) / dtypeSize(e.dtype);
    tensors.set(e.name, new TensorData(e.dtype, e.shape, typedArrayFromBytes(e.dtype, bytes, dataStart + e.begin, numel)));
  }
  return { tensors, metadata };
}

function parseMetadata(info: unknown): SafetensorsMetadata {
  if (typeof info !== 'object' || info === null || Array.isArray(info)) throw new SafetensorsError('__metadata__ is not an object');
  const out: SafetensorsMetadata = {};
  for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new SafetensorsError(`__metadata__['${printable(k)}'] is not a string`);
    Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true }); // "__proto__" too
  }
  return out;
}

/** Reads a safetensors file (path) or bytes. */
export function readSafetensors(source: string | Uint8Array): SafetensorsFile {
  if (typeof source !== 'string') return parseSafetensors(source);
  const bytes = readFileSync(source);
  try {
    return parseSafetensors(bytes);
  } catch (e) {
    rethrowWithPath(e, source);
  }
}

export type TensorMapLike = ReadonlyMap<string, TensorData> | Readonly<Record<string, TensorData>>;

/** safetensors bytes for `tensors` (in the given order), with optional string metadata. */
export function serializeSafetensors(tensors: TensorMapLike, metadata?: SafetensorsMetadata): Uint8Array {
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors as Record<string, TensorData>);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new SafetensorsError(`metadata '${k}' is not a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new SafetensorsError("'__metadata__' cannot be a tensor name");
    const entry = { dtype: dtypeCode(t.dtype), shape: [...t.shape], data_offsets: [offset, offset + t.byteLength] };
    Object.defineProperty(header, name, { value: entry, enumerable: true }); // any name, "__proto__" included
    offset += t.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // pad with spaces so the tensor data start 8-byte aligned (views need alignment on read)
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let p = 8 + headerLen;
  for (const [, t] of list) {
    out.set(t.bytes(), p);
    p += t.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temporary file + rename). */
export function writeSafetensors(path: string, tensors: TensorMapLike, metadata?: SafetensorsMetadata): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, serializeSafetensors(tensors, metadata));
  renameSync(tmp, path);
}
