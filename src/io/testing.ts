// Writers for the formats src/io reads — pickles, zip archives, torch.save (zip and legacy) and
// torch.jit.save-style archives — byte-compatible with what PyTorch writes, so tests can build
// small checkpoints (including broken and hostile ones) without Python.

import { TensorData, dtypeSize, typedArrayFromBytes, type DType } from './tensor.ts';

// --- pickle -------------------------------------------------------------------------------------

const ENC = new TextEncoder();

/** Emits pickle opcodes (protocol 2 unless told otherwise). */
export class PickleBuilder {
  private readonly out: number[] = [];

  raw(...bytes: number[]): this {
    for (const b of bytes) this.out.push(b & 0xff);
    return this;
  }
  private u32(n: number): this { return this.raw(n, n >>> 8, n >>> 16, n >>> 24); }
  private text(s: string): this { for (const b of ENC.encode(s)) this.out.push(b); return this; }

  proto(v = 2): this { return this.raw(0x80, v); }
  stop(): this { return this.raw(0x2e); }
  mark(): this { return this.raw(0x28); }
  none(): this { return this.raw(0x4e); }
  bool(b: boolean): this { return this.raw(b ? 0x88 : 0x89); }
  int(n: number | bigint): this {
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 256) return this.raw(0x4b, n);
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 65536) return this.raw(0x4d, n, n >>> 8);
    if (typeof n === 'number' && Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31) return this.raw(0x4a).u32(n >>> 0);
    // LONG1: little-endian two's complement, minimal length
    let v = BigInt(n);
    const bytes: number[] = [];
    for (;;) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
      const sign = bytes[bytes.length - 1]! & 0x80;
      if ((v === 0n && !sign) || (v === -1n && sign)) break;
    }
    return this.raw(0x8a, bytes.length, ...bytes);
  }
  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.raw(0x47, ...b);
  }
  str(s: string): this {
    const b = ENC.encode(s);
    return this.raw(0x58).u32(b.length).raw(...b);
  }
  bytes(b: Uint8Array): this { return this.raw(0x42).u32(b.length).raw(...b); }
  global(module: string, name: string): this { return this.raw(0x63).text(`${module}\n${name}\n`); }
  stackGlobal(module: string, name: string): this { return this.str(module).str(name).raw(0x93); }
  emptyDict(): this { return this.raw(0x7d); }
  emptyList(): this { return this.raw(0x5d); }
  emptyTuple(): this { return this.raw(0x29); }
  tuple(): this { return this.raw(0x74); }
  setitem(): this { return this.raw(0x73); }
  setitems(): this { return this.raw(0x75); }
  append(): this { return this.raw(0x61); }
  appends(): this { return this.raw(0x65); }
  reduce(): this { return this.raw(0x52); }
  build(): this { return this.raw(0x62); }
  newobj(): this { return this.raw(0x81); }
  binpersid(): this { return this.raw(0x51); }
  put(i: number): this { return i < 256 ? this.raw(0x71, i) : this.raw(0x72).u32(i); }
  get(i: number): this { return i < 256 ? this.raw(0x68, i) : this.raw(0x6a).u32(i); }

  toBytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

/** A tensor written as a strided view of a 1-D storage tensor (to test view materialisation). */
export class StridedTensor {
  constructor(
    readonly storage: TensorData,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** A TorchScript module: class name (e.g. `__torch__.clip.model.CLIP`) and attributes in order. */
export class ScriptModule {
  constructor(readonly className: string, readonly attrs: Record<string, Writable>) {}
}

export type Writable =
  | null | boolean | number | bigint | string | Uint8Array | TensorData | StridedTensor | ScriptModule
  | readonly Writable[] | { readonly [key: string]: Writable };

const STORAGE_NAMES: Partial<Record<DType, string>> = {
  float64: 'DoubleStorage', float32: 'FloatStorage', float16: 'HalfStorage', bfloat16: 'BFloat16Storage',
  int64: 'LongStorage', int32: 'IntStorage', int16: 'ShortStorage', int8: 'CharStorage', uint8: 'ByteStorage', bool: 'BoolStorage',
};

interface WrittenStorage { key: string; storage: TensorData }

/**
 * Pickles `value` the way torch.save does: dicts as `collections.OrderedDict` when `ordered`,
 * tensors as `_rebuild_tensor_v2(persistent storage id, offset, size, stride, False, OrderedDict())`.
 * `legacy` writes the 6-field storage ids of the legacy format.
 */
export function pickleTorch(value: Writable, opts: { legacy?: boolean; ordered?: boolean } = {}): { pickle: Uint8Array; storages: WrittenStorage[] } {
  const b = new PickleBuilder().proto(2);
  const storages: WrittenStorage[] = [];
  const keys = new Map<TensorData, string>();
  const storageKey = (t: TensorData): string => {
    let k = keys.get(t);
    if (k === undefined) {
      k = opts.legacy ? String(94_000_000 + storages.length * 64) : String(storages.length);
      keys.set(t, k);
      storages.push({ key: k, storage: t });
    }
    return k;
  };
  const tensor = (storage: TensorData, offset: number, shape: readonly number[], stride: readonly number[]): void => {
    const typeName = STORAGE_NAMES[storage.dtype];
    if (!typeName) throw new Error(`no torch storage type for ${storage.dtype}`);
    b.global('torch._utils', '_rebuild_tensor_v2').mark();
    b.mark().str('storage').global('torch', typeName).str(storageKey(storage)).str('cpu').int(storage.numel);
    if (opts.legacy) b.none();
    b.tuple().binpersid();
    b.int(offset).mark();
    for (const d of shape) b.int(d);
    b.tuple().mark();
    for (const s of stride) b.int(s);
    b.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce();
    b.tuple().reduce();
  };
  const walk = (v: Writable): void => {
    if (v === null) b.none();
    else if (typeof v === 'boolean') b.bool(v);
    else if (typeof v === 'bigint') b.int(v);
    else if (typeof v === 'number') (Number.isInteger(v) ? b.int(v) : b.float(v));
    else if (typeof v === 'string') b.str(v);
    else if (v instanceof Uint8Array) b.bytes(v);
    else if (v instanceof TensorData) {
      const stride: number[] = [];
      for (let i = v.shape.length - 1, s = 1; i >= 0; i--) { stride.unshift(s); s *= v.shape[i]!; }
      tensor(v, 0, v.shape, stride);
    } else if (v instanceof StridedTensor) tensor(v.storage, v.offset, v.shape, v.stride);
    else if (v instanceof ScriptModule) {
      const dot = v.className.lastIndexOf('.');
      b.global(v.className.slice(0, dot), v.className.slice(dot + 1)).emptyTuple().newobj();
      b.emptyDict().mark();
      for (const [k, x] of Object.entries(v.attrs)) { b.str(k); walk(x); }
      b.setitems().build();
    } else if (Array.isArray(v)) {
      b.emptyList().mark();
      for (const x of v) walk(x);
      b.appends();
    } else {
      if (opts.ordered) b.global('collections', 'OrderedDict').emptyTuple().reduce();
      else b.emptyDict();
      b.mark();
      for (const [k, x] of Object.entries(v as Record<string, Writable>)) { b.str(k); walk(x); }
      b.setitems();
    }
  };
  walk(value);
  return { pickle: b.stop().toBytes(), storages };
}

// --- zip ----------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip of stored entries whose data start on 64-byte boundaries, as PyTorch writes them. */
export function writeZip(entries: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = ENC.encode(name);
    const crc = crc32(data);
    // pad the extra field (id 0x4246 'FB', like PyTorch) so the data are 64-byte aligned
    let pad = (64 - ((offset + 30 + nameBytes.length + 4) % 64)) % 64;
    const extraLen = 4 + pad;
    const local = new Uint8Array(30 + nameBytes.length + extraLen);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, 0, true); // stored
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    lv.setUint16(28, extraLen, true);
    local.set(nameBytes, 30);
    lv.setUint16(30 + nameBytes.length, 0x4246, true);
    lv.setUint16(32 + nameBytes.length, pad, true);
    local.fill(0x5a, 34 + nameBytes.length); // 'Z'
    pad = 0;
    const cd = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    cd.set(nameBytes, 46);
    central.push(cd);
    parts.push(local, data);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, eocd];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const a of all) { out.set(a, p); p += a.length; }
  return out;
}

// --- torch.save / torch.jit.save ------------------------------------------------------------------

/** torch.save(value) in the zip format (dicts as OrderedDicts, like state_dict()). */
export function saveTorchZip(value: Writable, opts: { root?: string; ordered?: boolean } = {}): Uint8Array {
  const root = opts.root ?? 'archive';
  const { pickle, storages } = pickleTorch(value, { ordered: opts.ordered ?? true });
  return writeZip([
    [`${root}/data.pkl`, pickle],
    ...storages.map(({ key, storage }) => [`${root}/data/${key}`, storage.bytes()] as const),
    [`${root}/version`, ENC.encode('3\n')],
  ]);
}

/** torch.jit.save-like archive of a module tree (data.pkl + data/, constants.pkl, code/, version). */
export function saveTorchScript(module: ScriptModule, opts: { root?: string } = {}): Uint8Array {
  const root = opts.root ?? 'archive';
  const { pickle, storages } = pickleTorch(module);
  const constants = new PickleBuilder().proto(2).emptyTuple().stop().toBytes();
  return writeZip([
    ...storages.map(({ key, storage }) => [`${root}/data/${key}`, storage.bytes()] as const),
    [`${root}/data.pkl`, pickle],
    [`${root}/code/__torch__/model.py`, ENC.encode('class Model(Module):\n  pass\n')],
    [`${root}/constants.pkl`, constants],
    [`${root}/version`, ENC.encode('4\n')],
  ]);
}

/** The three pickles that open a legacy file: magic number, protocol version, sys info. */
export function legacyHeader(): Uint8Array {
  const b = new PickleBuilder();
  b.proto(2).int(0x1950a86a20f9469cfc6cn).stop();
  b.proto(2).int(1001).stop();
  b.proto(2).emptyDict().mark()
    .str('protocol_version').int(1001).str('little_endian').bool(true)
    .str('type_sizes').emptyDict().mark().str('short').int(2).str('int').int(4).str('long').int(8).setitems()
    .setitems().stop();
  return b.toBytes();
}

/** torch.save(value, _use_new_zipfile_serialization=False): the legacy format. */
export function saveTorchLegacy(value: Writable, opts: { ordered?: boolean } = {}): Uint8Array {
  const { pickle, storages } = pickleTorch(value, { legacy: true, ordered: opts.ordered ?? true });
  const header = legacyHeader();
  const sorted = [...storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const keyList = new PickleBuilder().proto(2).emptyList().mark();
  for (const s of sorted) keyList.str(s.key);
  const keys = keyList.appends().stop().toBytes();
  const chunks: Uint8Array[] = [header, pickle, keys];
  for (const { storage } of sorted) {
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, BigInt(storage.numel), true);
    chunks.push(count, storage.bytes());
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let p = 0;
  for (const c of chunks) { out.set(c, p); p += c.length; }
  return out;
}

/** Deterministic pseudo-random numbers (mulberry32) for tests. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tensor of `dtype` with varied bit patterns (from a seeded generator; floats may be NaN/inf). */
export function randomTensor(dtype: DType, shape: readonly number[], seed = 1): TensorData {
  let n = 1;
  for (const d of shape) n *= d;
  const bytes = new Uint8Array(n * dtypeSize(dtype));
  const r = rng(seed);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
  if (dtype === 'bool') for (let i = 0; i < bytes.length; i++) bytes[i]! &= 1;
  return new TensorData(dtype, shape, typedArrayFromBytes(dtype, bytes, 0, n));
}
