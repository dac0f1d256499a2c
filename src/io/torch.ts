// PyTorch checkpoints: torch.save's zip format, the legacy (<= 1.5) format and TorchScript
// archives (torch.jit.save), read without running anything from the file.
//
//   zip:         <root>/data.pkl (the object pickle) + <root>/data/<key> (raw storages)
//   TorchScript: the same, plus code/ and constants.pkl; data.pkl is the module tree, each module
//                an object of a `__torch__.*` class whose attributes are its parameters, buffers
//                and submodules — rebuilt here as PyObjects, so flattening it gives state_dict()
//   legacy:      magic pickle, protocol pickle, sys-info pickle, the object pickle, the pickled
//                list of storage keys, then each storage as an int64 element count + raw data
//
// Tensors come out as TensorData with the dtype of their storage (a file may mix float16 and
// float32 — OpenAI's CLIP archives do), materialised contiguous. Contiguous tensors are views
// of the file's bytes (zip storages are 64-byte aligned), so loading costs no copy; strided or
// unaligned ones are copied, and every copy is charged to a budget of twice the file size, so a
// lying header cannot make the loader allocate more than the file could justify.
//
// Format reference: /work/shared/reference/formats.md section 6 (shared/ in the workspace).

import { readFileSync } from 'node:fs';
import { CheckpointError, printable, rethrowWithPath } from './errors.ts';
import {
  GlobalResolver, PickleValue, PyDict, PyGlobal, PyObject, dataClass, describeValue, isPyDict, unpickleAt,
} from './pickle.ts';
import { DType, TensorData, TypedArray, dtypeSize, swapBytesInPlace, typedArrayFromBytes } from './tensor.ts';
import { ZipArchive, isZip } from './zip.ts';

export type CheckpointFormat = 'zip' | 'torchscript' | 'legacy';

/** `torch.XStorage` in a persistent id: which dtype the storage's bytes hold. */
class StorageType extends PyGlobal {
  constructor(module: string, name: string, readonly dtype: DType) {
    super(module, name);
  }
}

const STORAGE_DTYPES: Record<string, DType> = {
  DoubleStorage: 'float64', FloatStorage: 'float32', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8',
  ByteStorage: 'uint8', BoolStorage: 'bool',
};

// torch.<dtype> globals (newer files pickle dtypes, e.g. in tensor metadata or configs)
const TORCH_DTYPE_NAMES = [
  'float64', 'double', 'float32', 'float', 'float16', 'half', 'bfloat16', 'int64', 'long', 'int32', 'int',
  'int16', 'short', 'int8', 'uint8', 'bool', 'complex64', 'complex128',
];

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

/** Where a storage's elements are: `numel` elements of `dtype` starting at element `offset` of storage `key`. */
interface StorageRef {
  key: string;
  dtype: DType;
  offset: number;
  numel: number;
}

/** A tensor seen in the first pass over a legacy pickle, before storages are located. */
class PendingTensor {}

/** What a persistent id resolves to: a storage, only usable as a tensor's first argument. */
class StorageHandle {
  constructor(readonly ref: StorageRef, readonly rootNumel: number) {}
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isIntTuple(v: unknown): v is number[] {
  return Array.isArray(v) && v.length <= 64 && v.every(isCount);
}

/** Reads storages and rebuilds tensors, charging copies to a budget tied to the file size. */
class TensorFactory {
  private budget: number;
  private readonly cache = new Map<string, TypedArray>();

  constructor(
    fileSize: number,
    /** Raw bytes of a storage, or undefined when the file has no such storage. */
    private readonly storageBytes: (key: string) => Uint8Array | undefined,
    private readonly bigEndian: boolean,
  ) {
    this.budget = 2 * fileSize + (1 << 20);
  }

  private charge(bytes: number, what: string): void {
    this.budget -= bytes;
    if (this.budget < 0) throw new CheckpointError(`${what}: materialising it needs more memory than a file of this size can justify`);
  }

  /** The whole storage as a typed array: a view into the file when aligned, else one copy. */
  private storage(ref: StorageRef, rootNumel: number): TypedArray {
    const cached = this.cache.get(ref.key);
    if (cached) return cached;
    const bytes = this.storageBytes(ref.key);
    if (!bytes) throw new CheckpointError(`storage '${ref.key}' is missing from the file`);
    const size = dtypeSize(ref.dtype);
    if (rootNumel * size > bytes.length) {
      throw new CheckpointError(`storage '${ref.key}' should hold ${rootNumel} ${ref.dtype} elements (${rootNumel * size} bytes) but has ${bytes.length} bytes`);
    }
    const aligned = (bytes.byteOffset % size) === 0;
    if (!aligned || this.bigEndian) this.charge(rootNumel * size, `storage '${ref.key}'`);
    const arr = typedArrayFromBytes(ref.dtype, bytes, 0, rootNumel, { copy: this.bigEndian });
    if (this.bigEndian) swapBytesInPlace(arr);
    this.cache.set(ref.key, arr);
    return arr;
  }

  /** torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...) */
  tensor(ref: StorageRef, rootNumel: number, storageOffset: PickleValue, size: PickleValue, stride: PickleValue): TensorData {
    const what = `tensor in storage '${ref.key}'`;
    if (!isCount(storageOffset)) throw new CheckpointError(`${what}: bad storage offset`);
    if (!isIntTuple(size)) throw new CheckpointError(`${what}: bad size`);
    if (!isIntTuple(stride) || stride.length !== size.length) throw new CheckpointError(`${what}: bad stride for size [${size.join(', ')}]`);
    const shape = size;
    let numel = 1;
    for (const d of shape) numel *= d;
    // Bounds: the last element the view touches must lie inside the storage (or view) it cuts.
    if (numel > 0) {
      let last = storageOffset;
      for (let i = 0; i < shape.length; i++) {
        const span = (shape[i]! - 1) * stride[i]!;
        if (span > ref.numel) { last = Infinity; break; }
        last += span;
      }
      if (!(last < ref.numel)) {
        throw new CheckpointError(`${what}: view (offset ${storageOffset}, size [${shape.join(', ')}], stride [${stride.join(', ')}]) reaches past the storage's ${ref.numel} elements`);
      }
    }
    const src = this.storage(ref, rootNumel);
    const base = ref.offset + storageOffset;
    if (numel === 0) return new TensorData(ref.dtype, shape, src.subarray(0, 0));
    let contiguous = true;
    for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
      if (shape[i]! !== 1 && stride[i]! !== expect) { contiguous = false; break; }
      expect *= shape[i]!;
    }
    if (contiguous) return new TensorData(ref.dtype, shape, src.subarray(base, base + numel));
    this.charge(numel * dtypeSize(ref.dtype), what);
    return new TensorData(ref.dtype, shape, gather(src, base, shape, stride, numel));
  }
}

/** Copies a strided view into a new contiguous array, a run at a time when the last stride is 1. */
function gather(src: TypedArray, base: number, shape: readonly number[], stride: readonly number[], numel: number): TypedArray {
  const out = new (src.constructor as new (n: number) => TypedArray)(numel);
  const nd = shape.length;
  const inner = shape[nd - 1]!;
  const innerStride = stride[nd - 1]!;
  const idx = new Array<number>(Math.max(nd - 1, 0)).fill(0);
  let o = 0;
  let p = base;
  for (;;) {
    if (innerStride === 1) {
      (out as Float32Array).set((src as Float32Array).subarray(p, p + inner), o);
      o += inner;
    } else {
      for (let j = 0, q = p; j < inner; j++, q += innerStride) (out as Float32Array)[o++] = (src as Float32Array)[q]!;
    }
    // advance the outer index (odometer)
    let d = nd - 2;
    while (d >= 0) {
      idx[d]!++;
      p += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      p -= idx[d]! * stride[d]!;
      idx[d] = 0;
      d--;
    }
    if (d < 0) return out;
  }
}

/** The torch names the unpickler may resolve, on top of its data-only builtins. */
function torchGlobals(
  rebuild: (storage: PickleValue, offset: PickleValue, size: PickleValue, stride: PickleValue) => PickleValue,
  torchScript: boolean,
): GlobalResolver {
  const table = new Map<string, PyGlobal>();
  const add = (g: PyGlobal): void => void table.set(g.qualifiedName, g);
  const asTensor = (v: PickleValue, what: string): PickleValue => {
    if (v instanceof TensorData || v instanceof PendingTensor) return v;
    throw new CheckpointError(`${what}: expected a tensor`);
  };
  const rebuildV2 = new PyGlobal('torch._utils', '_rebuild_tensor_v2', (a) => {
    if (a.length < 4) throw new CheckpointError('_rebuild_tensor_v2: too few arguments');
    return rebuild(a[0]!, a[1]!, a[2]!, a[3]!);
  });
  const rebuildV1 = new PyGlobal('torch._utils', '_rebuild_tensor', (a) => {
    if (a.length < 4) throw new CheckpointError('_rebuild_tensor: too few arguments');
    return rebuild(a[0]!, a[1]!, a[2]!, a[3]!);
  });
  add(rebuildV2);
  add(rebuildV1);
  // Parameters are their data: requires_grad, hooks and extra state carry no weights.
  add(new PyGlobal('torch._utils', '_rebuild_parameter', (a) => asTensor(a[0] ?? null, '_rebuild_parameter')));
  add(new PyGlobal('torch._utils', '_rebuild_parameter_with_state', (a) => asTensor(a[0] ?? null, '_rebuild_parameter_with_state')));
  const tensorType = new PyGlobal('torch', 'Tensor');
  const parameterType = new PyGlobal('torch.nn.parameter', 'Parameter');
  add(tensorType);
  add(parameterType);
  // _rebuild_from_type_v2(func, new_type, args, state): a tensor (sub)class rebuilt by func(*args)
  add(new PyGlobal('torch._tensor', '_rebuild_from_type_v2', (a) => {
    const [func, type, args] = a;
    const fn = func === rebuildV2 ? rebuildV2 : func === rebuildV1 ? rebuildV1 : undefined;
    if (!fn) throw new CheckpointError('_rebuild_from_type_v2: unsupported rebuild function');
    if (type !== tensorType && type !== parameterType) throw new CheckpointError('_rebuild_from_type_v2: unsupported tensor type');
    if (!Array.isArray(args)) throw new CheckpointError('_rebuild_from_type_v2: arguments are not a tuple');
    return fn.call!(args);
  }));
  for (const [name, dtype] of Object.entries(STORAGE_DTYPES)) {
    add(new StorageType('torch', name, dtype));
    add(new StorageType('torch.cuda', name, dtype));
  }
  for (const n of TORCH_DTYPE_NAMES) add(new PyGlobal('torch', n));
  add(new PyGlobal('torch', 'Size', (a) => {
    if (a.length && !Array.isArray(a[0])) throw new CheckpointError('torch.Size: argument is not a tuple');
    return a.length ? [...(a[0] as PickleValue[])] : [];
  }));
  add(new PyGlobal('torch', 'device', (a) => {
    const [type, index] = a;
    if (typeof type !== 'string') throw new CheckpointError('torch.device: expected a device string');
    return typeof index === 'number' ? `${type}:${index}` : type;
  }));
  // TorchScript's typed-list helpers are identities on the data.
  for (const n of ['build_intlist', 'build_tensorlist', 'build_doublelist', 'build_boollist', 'restore_type_tag']) {
    add(new PyGlobal('torch.jit._pickle', n, (a) => a[0] ?? null));
  }
  const classes = new Map<string, PyGlobal>();
  return (module, name) => {
    const g = table.get(`${module}.${name}`);
    if (g) return g;
    // TorchScript module classes (`__torch__.clip.model.___torch_mangle_13.LayerNorm`): attribute bags
    if (torchScript && (module === '__torch__' || module.startsWith('__torch__.')) && /^[\w.]+$/.test(module) && /^\w+$/.test(name)) {
      const key = `${module}.${name}`;
      let c = classes.get(key);
      if (!c) classes.set(key, (c = dataClass(module, name)));
      return c;
    }
    return undefined;
  };
}

/**
 * Validates a persistent id `('storage', torch.XStorage, key, location, numel[, view])` and
 * returns where the storage's elements are (legacy views point into a root storage).
 */
function parseStorageId(pid: PickleValue, legacy: boolean): { ref: StorageRef; rootNumel: number } {
  if (!Array.isArray(pid) || pid.length < 5) throw new CheckpointError(`unsupported persistent id (expected a ('storage', ...) tuple)`);
  const [kind, type, key, location, numel, view] = pid;
  if (kind !== 'storage') {
    throw new CheckpointError(`unsupported persistent id of kind ${typeof kind === 'string' ? `'${printable(kind, 40)}'` : describeValue(kind)}`);
  }
  if (!(type instanceof StorageType)) throw new CheckpointError(`persistent id: ${describeValue(type)} is not a storage type`);
  if (typeof key !== 'string' || key.length === 0 || key.length > 256 || key.includes('..') || key.includes('/')) {
    throw new CheckpointError('persistent id: bad storage key');
  }
  const label = `storage '${printable(key)}'`;
  if (typeof location !== 'string') throw new CheckpointError(`${label}: bad location`);
  if (!isCount(numel)) throw new CheckpointError(`${label}: bad element count`);
  const ref: StorageRef = { key, dtype: type.dtype, offset: 0, numel };
  if (legacy && view !== undefined && view !== null) {
    // (view_key, offset, view_numel): a slice of the root storage
    if (!Array.isArray(view) || view.length !== 3 || !isCount(view[1]) || !isCount(view[2])) {
      throw new CheckpointError(`${label}: bad view metadata`);
    }
    const [, offset, viewNumel] = view as [unknown, number, number];
    if (offset + viewNumel > numel) throw new CheckpointError(`${label}: view [${offset}, ${offset + viewNumel}) exceeds its ${numel} elements`);
    return { ref: { key, dtype: type.dtype, offset, numel: viewNumel }, rootNumel: numel };
  }
  return { ref, rootNumel: numel };
}

/** Unpickles `pkl` with torch's globals, storages read through `storageBytes`. */
function unpickleTorch(
  pkl: Uint8Array, offset: number, fileSize: number, storageBytes: (key: string) => Uint8Array | undefined,
  opts: { bigEndian: boolean; torchScript: boolean; legacy: boolean; pending?: boolean },
): { value: PickleValue; end: number; storages: Map<string, { dtype: DType; numel: number }> } {
  const factory = new TensorFactory(fileSize, storageBytes, opts.bigEndian);
  const storages = new Map<string, { dtype: DType; numel: number }>();
  const persistentLoad = (pid: PickleValue): PickleValue => {
    const { ref, rootNumel } = parseStorageId(pid, opts.legacy);
    const seen = storages.get(ref.key);
    if (seen && (seen.dtype !== ref.dtype || seen.numel !== rootNumel)) {
      throw new CheckpointError(`storage '${ref.key}' is referenced as ${seen.numel} x ${seen.dtype} and as ${rootNumel} x ${ref.dtype}`);
    }
    storages.set(ref.key, { dtype: ref.dtype, numel: rootNumel });
    return new StorageHandle(ref, rootNumel);
  };
  const rebuild = (storage: PickleValue, off: PickleValue, size: PickleValue, stride: PickleValue): PickleValue => {
    if (!(storage instanceof StorageHandle)) throw new CheckpointError('tensor rebuilt from something that is not a storage');
    if (opts.pending) return new PendingTensor();
    return factory.tensor(storage.ref, storage.rootNumel, off, size, stride);
  };
  const { value, end } = unpickleAt(pkl, offset, { globals: torchGlobals(rebuild, opts.torchScript), persistentLoad });
  return { value, end, storages };
}

// --- formats ------------------------------------------------------------------------------------

/** Which kind of PyTorch file `bytes` is (by magic bytes), or undefined. */
export function checkpointFormat(bytes: Uint8Array): CheckpointFormat | undefined {
  if (isZip(bytes)) {
    try {
      return findZipRoot(new ZipArchive(bytes)).torchScript ? 'torchscript' : 'zip';
    } catch {
      return 'zip';
    }
  }
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! <= 5) return 'legacy';
  return undefined;
}

function findZipRoot(zip: ZipArchive): { root: string; torchScript: boolean } {
  const roots = zip.names.filter((n) => /^([^/]*\/)?data\.pkl$/.test(n));
  if (roots.length === 0) throw new CheckpointError('zip archive without a data.pkl: not a PyTorch checkpoint');
  if (roots.length > 1) throw new CheckpointError(`zip archive with several data.pkl entries (${roots.slice(0, 3).join(', ')})`);
  const root = roots[0]!.slice(0, -'data.pkl'.length); // "name/" or ""
  const torchScript = zip.has(`${root}constants.pkl`) || zip.names.some((n) => n.startsWith(`${root}code/`));
  return { root, torchScript };
}

function loadZip(bytes: Uint8Array): PickleValue {
  const zip = new ZipArchive(bytes);
  const { root, torchScript } = findZipRoot(zip);
  let bigEndian = false;
  if (zip.has(`${root}byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${root}byteorder`)).trim();
    if (order !== 'little' && order !== 'big') throw new CheckpointError(`unknown byteorder '${order.slice(0, 20)}'`);
    bigEndian = order === 'big';
  }
  const storageBytes = (key: string): Uint8Array | undefined => {
    const name = `${root}data/${key}`;
    return zip.has(name) ? zip.read(name) : undefined;
  };
  const pkl = zip.read(`${root}data.pkl`);
  return unpickleTorch(pkl, 0, bytes.length, storageBytes, { bigEndian, torchScript, legacy: false }).value;
}

function loadLegacy(bytes: Uint8Array): PickleValue {
  const plain = (offset: number): { value: PickleValue; end: number } => unpickleAt(bytes, offset);
  const magic = plain(0);
  if (magic.value !== LEGACY_MAGIC) {
    throw new CheckpointError('not a PyTorch checkpoint (a pickle, but without the legacy magic number)');
  }
  const protocol = plain(magic.end);
  if (protocol.value !== LEGACY_PROTOCOL) throw new CheckpointError(`unsupported legacy protocol version (${describeValue(protocol.value)} ${typeof protocol.value === 'number' ? protocol.value : ''})`);
  const sysInfo = plain(protocol.end);
  if (!isPyDict(sysInfo.value)) throw new CheckpointError('legacy checkpoint: bad sys_info record');
  const bigEndian = (sysInfo.value as PyDict)['little_endian'] === false;

  // Pass 1 finds where the object pickle ends and which storages (dtype, size) it uses; the
  // storages themselves come after the key list that follows it.
  const opts = { bigEndian, torchScript: false, legacy: true };
  const first = unpickleTorch(bytes, sysInfo.end, bytes.length, () => undefined, { ...opts, pending: true });
  const keyList = plain(first.end);
  if (!Array.isArray(keyList.value) || !keyList.value.every((k) => typeof k === 'string')) {
    throw new CheckpointError('legacy checkpoint: bad storage key list');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const located = new Map<string, Uint8Array>();
  let p = keyList.end;
  for (const key of keyList.value as string[]) {
    const label = `storage '${printable(key)}'`;
    const info = first.storages.get(key);
    if (!info) throw new CheckpointError(`legacy checkpoint: ${label} is listed but no tensor uses it (its element size is unknown)`);
    if (located.has(key)) throw new CheckpointError(`legacy checkpoint: ${label} listed twice`);
    if (p + 8 > bytes.length) throw new CheckpointError(`legacy checkpoint: truncated before ${label}`);
    const count = view.getBigInt64(p, !bigEndian);
    p += 8;
    const size = dtypeSize(info.dtype);
    if (count < 0n || count * BigInt(size) > BigInt(bytes.length - p)) {
      throw new CheckpointError(`legacy checkpoint: ${label} claims ${count} elements, more than the ${bytes.length - p} bytes left`);
    }
    const n = Number(count) * size;
    located.set(key, bytes.subarray(p, p + n));
    p += n;
  }
  return unpickleTorch(bytes, sysInfo.end, bytes.length, (k) => located.get(k), opts).value;
}

/** Parses checkpoint bytes of any of the three formats into its object tree. */
export function parseCheckpoint(bytes: Uint8Array): PickleValue {
  if (isZip(bytes)) return loadZip(bytes);
  if (bytes.length >= 2 && bytes[0] === 0x80) return loadLegacy(bytes);
  if (bytes.length >= 262 && new TextDecoder().decode(bytes.subarray(257, 262)) === 'ustar') {
    throw new CheckpointError('tar-based checkpoint (PyTorch < 0.1.10) is not supported');
  }
  throw new CheckpointError('not a PyTorch checkpoint (neither a zip archive nor a pickle)');
}

/**
 * Loads a PyTorch checkpoint (`.pt`/`.pth`, zip or legacy) or TorchScript archive and returns
 * its object tree: dicts as PyDict, TorchScript modules as PyObjects, tensors as TensorData.
 * Synchronous: parsing is CPU work anyway; pass bytes read elsewhere to avoid blocking on I/O.
 */
export function loadCheckpoint(source: string | Uint8Array): PickleValue {
  if (typeof source !== 'string') return parseCheckpoint(source);
  const bytes = readFileSync(source);
  try {
    return parseCheckpoint(bytes);
  } catch (e) {
    rethrowWithPath(e, source);
  }
}

// --- state dicts --------------------------------------------------------------------------------

const MAX_DEPTH = 256;
// Walking limits: a real checkpoint has thousands of containers; a hostile one can make a few
// dozen shared dicts stand for 2^40 paths.
const MAX_CONTAINER_VISITS = 250_000;
const MAX_CHILD_VISITS = 20_000_000;

function isContainer(v: unknown): boolean {
  return Array.isArray(v) || isPyDict(v) || v instanceof PyObject
    || (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype);
}

/**
 * Every tensor in an object tree under its dotted path, in tree order: `{g_ema: {style.1.weight},
 * latent_avg}` -> `g_ema.style.1.weight`, `latent_avg`; a TorchScript module tree gives its
 * state_dict() keys. Dicts, module objects, lists/tuples (by index) and plain JS objects are
 * walked; other values (opts, flags, None) are skipped. A bare tensor gives the key "".
 * A reference back to an enclosing container (omegaconf nodes point at their parent) is not
 * followed; a tree whose shared sub-trees would take unbounded work to walk is refused.
 */
export function flattenStateDict(root: PickleValue): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  const onPath = new Set<object>();
  let containers = 0;
  let children = 0;
  const tooLarge = (): never => {
    throw new CheckpointError('object tree too large to flatten (shared sub-trees?)');
  };
  const visit = (v: PickleValue, key: string, depth: number): void => {
    if (v instanceof TensorData) {
      if (out.has(key)) throw new CheckpointError(`two tensors flatten to the same key '${printable(key)}'`);
      out.set(key, v);
      return;
    }
    if (!isContainer(v) || onPath.has(v as object)) return; // a cycle: its tensors are reached from the first visit
    if (depth > MAX_DEPTH) throw new CheckpointError(`object tree nested deeper than ${MAX_DEPTH} levels at '${printable(key)}'`);
    if (++containers > MAX_CONTAINER_VISITS) tooLarge();
    onPath.add(v as object);
    const prefix = key === '' ? '' : `${key}.`;
    if (Array.isArray(v)) {
      if ((children += v.length) > MAX_CHILD_VISITS) tooLarge();
      v.forEach((x, i) => {
        if (x instanceof TensorData || isContainer(x)) visit(x, `${prefix}${i}`, depth + 1);
      });
    } else {
      const keys = Object.keys(v as object);
      if ((children += keys.length) > MAX_CHILD_VISITS) tooLarge();
      for (const k of keys) {
        const x = (v as PyDict)[k]!;
        if (x instanceof TensorData || isContainer(x)) visit(x, prefix + k, depth + 1);
      }
    }
    onPath.delete(v as object);
  };
  visit(root, '', 0);
  return out;
}

/** Entries whose key starts with `prefix`, with the prefix removed (`'g_ema.'`, `'state_dict.encoder.'`). */
export function selectPrefix(stateDict: ReadonlyMap<string, TensorData>, prefix: string): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [k, v] of stateDict) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v);
  return out;
}
