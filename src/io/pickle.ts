// A data-only unpickler.
//
// Python's pickle is a small stack machine whose GLOBAL opcode names any importable function and
// whose REDUCE opcode calls it: loading an untrusted pickle with Python runs arbitrary code. This
// VM implements every opcode of protocols 0-5 but resolves GLOBAL only through an allow-list of
// names that it rebuilds itself, as plain data (dicts, lists, TensorData, ...): nothing named in a
// file is ever imported, evaluated or called. Any other global is refused when it is *named*, not
// when it would be called, with an UnpicklingError that names it.
//
// Representation of Python values:
//   None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number,
//   str -> string, bytes/bytearray -> Uint8Array, list/tuple/set/frozenset -> array,
//   dict/OrderedDict -> PyDict (a null-prototype object; keys as strings, insertion order — but
//     note JS lists integer-like keys such as "0", "1" first, in ascending order),
//   instance of an allowed class (TorchScript module, argparse.Namespace, omegaconf node)
//     -> PyObject with its attributes as own properties,
//   a global used as a value (typing.Any, torch.float16, torch.FloatStorage) -> PyGlobal.
// Attributes that Python keeps beside a dict's items (OrderedDict._metadata, set by BUILD) are
// kept out of the items: `pyAttributes(value)`.
//
// Limits: every length is checked against the bytes left before anything is allocated, and the
// work done by copying opcodes (BUILD merges, constructor calls) is charged to a budget
// proportional to the input size, so a small file cannot make the VM do unbounded work.

import { UnpicklingError, printable } from './errors.ts';

export type PickleValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PickleValue[] | PyDict | PyObject | PyGlobal
  | object; // values built by extension globals (e.g. TensorData)

export interface PyDict { [key: string]: PickleValue }

const ATTRS = Symbol('pickle.attributes');
const CLASS = Symbol('pickle.class');
const ARGS = Symbol('pickle.args');

/** A named global that the allow-list resolved: a type marker, or something callable as data. */
export class PyGlobal {
  readonly module: string;
  readonly name: string;
  /** Rebuilds the result of calling this global (REDUCE / NEWOBJ / INST / OBJ) from plain data. */
  readonly call?: (args: PickleValue[], kwargs?: PyDict) => PickleValue;

  constructor(module: string, name: string, call?: (args: PickleValue[], kwargs?: PyDict) => PickleValue) {
    this.module = module;
    this.name = name;
    this.call = call;
  }

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }

  toString(): string {
    return this.qualifiedName;
  }
}

/** A class whose instances are rebuilt as generic attribute bags (never running the class's code). */
export function dataClass(module: string, name: string): PyGlobal {
  const g: PyGlobal = new PyGlobal(module, name, (args, kwargs) => new PyObject(g, args, kwargs));
  return g;
}

/**
 * An instance of an allowed class: its pickled attributes are its own enumerable properties;
 * the class and the constructor arguments are kept aside (`pyClassName`, `pyArgs`).
 */
export class PyObject {
  declare readonly [CLASS]: PyGlobal;
  declare readonly [ARGS]: PickleValue[];

  constructor(cls: PyGlobal, args: PickleValue[] = [], kwargs?: PyDict) {
    Object.defineProperty(this, CLASS, { value: cls });
    Object.defineProperty(this, ARGS, { value: args });
    if (kwargs) for (const k of Object.keys(kwargs)) setProperty(this, k, kwargs[k]!);
  }
}

export function newPyDict(): PyDict {
  return Object.create(null) as PyDict;
}

export function isPyDict(v: unknown): v is PyDict {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null && !ArrayBuffer.isView(v);
}

/** "module.Class" of a PyObject, undefined for anything else. */
export function pyClassName(v: unknown): string | undefined {
  return v instanceof PyObject ? v[CLASS].qualifiedName : undefined;
}

/** The constructor arguments a PyObject was created with. */
export function pyArgs(v: PyObject): readonly PickleValue[] {
  return v[ARGS];
}

/**
 * Attributes set by BUILD on a value that keeps its items elsewhere (e.g. the `_metadata` of a
 * state_dict OrderedDict: `{'': {version: 1}, 'style.1': {...}}`), or a non-dict BUILD state.
 */
export function pyAttributes(v: unknown): PyDict | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  return (v as { [ATTRS]?: PyDict })[ATTRS];
}

/** Own data property, whatever the key ("__proto__" included): never goes through a setter. */
function setProperty(target: object, key: string, value: PickleValue): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

// --- the allow-list -----------------------------------------------------------------------------

/** Looks up `module.name`; undefined means "not allowed". */
export type GlobalResolver = (module: string, name: string) => PyGlobal | undefined;

export interface UnpickleOptions {
  /** Extra allowed globals, consulted before the built-in data-only set. */
  globals?: GlobalResolver;
  /** Resolves PERSID / BINPERSID ids (torch storages); without it persistent ids are refused. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
}

// Python 2 module names that Python 3's unpickler maps (fix_imports).
const PY2_MODULES = new Map([['__builtin__', 'builtins'], ['copy_reg', 'copyreg']]);

function dictFromPairs(pairs: PickleValue, what: string, charge: (n: number) => void): PyDict {
  const d = newPyDict();
  if (isPyDict(pairs)) {
    const keys = Object.keys(pairs);
    charge(keys.length);
    for (const k of keys) setProperty(d, k, pairs[k]!);
    return d;
  }
  if (!Array.isArray(pairs)) throw new UnpicklingError(`${what}: expected a dict or a list of pairs`);
  charge(pairs.length);
  for (const p of pairs) {
    if (!Array.isArray(p) || p.length !== 2) throw new UnpicklingError(`${what}: expected (key, value) pairs`);
    setProperty(d, dictKey(p[0]!), p[1]!);
  }
  return d;
}

function toByteArray(v: PickleValue, what: string, charge: (n: number) => void): Uint8Array {
  if (v instanceof Uint8Array) { charge(v.length); return v.slice(); }
  if (Array.isArray(v)) {
    charge(v.length);
    const out = new Uint8Array(v.length);
    v.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) throw new UnpicklingError(`${what}: not a byte value`);
      out[i] = x;
    });
    return out;
  }
  throw new UnpicklingError(`${what}: unsupported argument`);
}

function builtinGlobals(charge: (n: number) => void): Map<string, PyGlobal> {
  const m = new Map<string, PyGlobal>();
  const add = (g: PyGlobal): void => void m.set(g.qualifiedName, g);
  const seq = (args: PickleValue[], what: string): PickleValue[] => {
    if (args.length === 0) return [];
    const a = args[0];
    if (!Array.isArray(a)) throw new UnpicklingError(`${what}: argument is not a sequence`);
    charge(a.length);
    return [...a];
  };
  // Type markers: values in omegaconf metadata (object_type=dict, ref_type=typing.Any, ...).
  for (const n of ['int', 'float', 'str', 'bool', 'complex', 'NoneType', 'type']) add(new PyGlobal('builtins', n));
  for (const n of ['Any', 'Dict', 'List', 'Tuple', 'Optional', 'Union']) add(new PyGlobal('typing', n));
  // Containers, rebuilt from their arguments.
  add(new PyGlobal('builtins', 'object', () => new PyObject(m.get('builtins.object')!)));
  add(new PyGlobal('builtins', 'dict', (args) => (args.length ? dictFromPairs(args[0]!, 'builtins.dict', charge) : newPyDict())));
  add(new PyGlobal('collections', 'OrderedDict', (args) => (args.length ? dictFromPairs(args[0]!, 'collections.OrderedDict', charge) : newPyDict())));
  for (const n of ['list', 'tuple', 'set', 'frozenset']) add(new PyGlobal('builtins', n, (args) => seq(args, `builtins.${n}`)));
  // str.encode(encoding) as data: protocols < 3 write bytes as _codecs.encode(latin-1 str,
  // 'latin1') and bytearrays as bytearray(str, 'latin-1').
  const encode = (args: PickleValue[], what: string): Uint8Array => {
    const [s, enc = 'utf-8'] = args;
    if (typeof s !== 'string' || typeof enc !== 'string') throw new UnpicklingError(`${what}: expected (str, encoding)`);
    charge(s.length);
    const e = enc.toLowerCase().replace(/[-_]/g, '');
    if (e === 'latin1' || e === 'iso88591') {
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 255) throw new UnpicklingError(`${what}: character outside latin-1`);
        out[i] = c;
      }
      return out;
    }
    if (e === 'utf8') return new TextEncoder().encode(s);
    throw new UnpicklingError(`${what}: unsupported encoding '${printable(enc)}'`);
  };
  add(new PyGlobal('_codecs', 'encode', (args) => encode(args, '_codecs.encode')));
  for (const n of ['bytes', 'bytearray']) {
    add(new PyGlobal('builtins', n, (args) => {
      if (args.length === 0) return new Uint8Array(0);
      if (typeof args[0] === 'string') return encode(args, `builtins.${n}`);
      return toByteArray(args[0]!, `builtins.${n}`, charge);
    }));
  }
  // Protocol 0/1 object construction: object.__new__(cls) without running __init__.
  add(new PyGlobal('copyreg', '_reconstructor', (args) => {
    const cls = args[0];
    if (!(cls instanceof PyGlobal) || !cls.call) throw new UnpicklingError('copyreg._reconstructor: first argument is not an allowed class');
    return cls.call([]);
  }));
  add(new PyGlobal('copyreg', '__newobj__', (args) => {
    const cls = args[0];
    if (!(cls instanceof PyGlobal) || !cls.call) throw new UnpicklingError('copyreg.__newobj__: first argument is not an allowed class');
    return cls.call(args.slice(1));
  }));
  // Configuration objects some training scripts save beside the weights.
  add(dataClass('argparse', 'Namespace'));
  for (const n of ['DictConfig']) add(dataClass('omegaconf.dictconfig', n));
  for (const n of ['ListConfig']) add(dataClass('omegaconf.listconfig', n));
  for (const n of ['ContainerMetadata', 'Metadata']) add(dataClass('omegaconf.base', n));
  for (const n of ['AnyNode', 'StringNode', 'IntegerNode', 'FloatNode', 'BooleanNode', 'BytesNode', 'PathNode', 'EnumNode', 'ValueNode', 'InterpolationResultNode']) {
    add(dataClass('omegaconf.nodes', n));
  }
  return m;
}

// --- the VM -------------------------------------------------------------------------------------

const MAX_INT_DIGITS = 4300; // Python's own limit for int <-> str conversion
const MAX_LONG_BYTES = 4096;

// TextDecoder without `fatal`: pickled str is UTF-8 (Python writes lone surrogates with
// surrogatepass); bad sequences become U+FFFD rather than an exception.
const UTF8 = new TextDecoder('utf-8');

class Reader {
  pos: number;
  readonly view: DataView;
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array, start: number) {
    // a plain Uint8Array view: a Node Buffer's slice() would alias instead of copy
    this.bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string): void {
    if (!(n >= 0) || n > this.bytes.length - this.pos) {
      throw new UnpicklingError(`${what} at byte ${this.pos} needs ${n} bytes, only ${this.bytes.length - this.pos} left`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.pos++]!;
  }
  u16(what: string): number { this.need(2, what); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i32(what: string): number { this.need(4, what); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  /** u64 length field; anything beyond the bytes left is an error anyway, so it fits a number. */
  u64(what: string): number {
    this.need(8, what);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    return hi * 2 ** 32 + lo;
  }
  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** A text-protocol argument: the bytes up to (excluding) the next newline. */
  lineBytes(what: string): Uint8Array {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw new UnpicklingError(`${what} at byte ${this.pos}: missing newline`);
    const b = this.bytes.subarray(this.pos, end);
    this.pos = end + 1;
    return b;
  }
  line(what: string): string {
    return UTF8.decode(this.lineBytes(what));
  }
}

/** A dict key as a string property name (tuples as their repr, e.g. "(1, 'a')" -> "(1, a)"). */
function dictKey(k: PickleValue, depth = 0): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint') return String(k);
  if (typeof k === 'boolean') return k ? 'True' : 'False';
  if (k === null) return 'None';
  if (Array.isArray(k) && k.length <= 64 && depth < 4) {
    return `(${k.map((x) => dictKey(x, depth + 1)).join(', ')}${k.length === 1 ? ',' : ''})`;
  }
  throw new UnpicklingError(`unsupported dict key of type ${describeValue(k)}`);
}

/** What kind of value `v` is, for messages (never calls anything on it). */
export function describeValue(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list/tuple';
  if (v instanceof PyGlobal) return `global '${v.qualifiedName}'`;
  if (v instanceof PyObject) return `'${pyClassName(v)}' object`;
  if (isPyDict(v)) return 'dict';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

function bytesToBigInt(b: Uint8Array): bigint {
  // little-endian two's complement
  if (b.length === 0) return 0n;
  let hex = '';
  for (let i = b.length - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
  let v = BigInt('0x' + hex);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v;
}

/** bigint -> number when it is exactly representable as a safe integer. */
function normInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseTextInt(s: string, what: string): number | bigint {
  const t = s.trim().replace(/L$/, '');
  if (!/^[+-]?\d+$/.test(t)) throw new UnpicklingError(`${what}: bad integer ${JSON.stringify(s.slice(0, 40))}`);
  if (t.length > MAX_INT_DIGITS) throw new UnpicklingError(`${what}: integer with more than ${MAX_INT_DIGITS} digits`);
  return normInt(BigInt(t));
}

/**
 * Protocol 0 STRING: a quoted repr() of Python 2 bytes. Escapes give bytes (codecs.escape_decode);
 * torch.load then decodes them as UTF-8.
 */
function decodeStringLiteral(lit: Uint8Array, what: string): string {
  const q = lit[0];
  if (lit.length < 2 || (q !== 0x27 && q !== 0x22) || lit[lit.length - 1] !== q) {
    throw new UnpicklingError(`${what}: not a quoted string`);
  }
  const simple: Record<number, number> = { 0x6e: 10, 0x72: 13, 0x74: 9, 0x5c: 0x5c, 0x27: 0x27, 0x22: 0x22, 0x61: 7, 0x62: 8, 0x66: 12, 0x76: 11 };
  const out: number[] = [];
  const hex = (c: number | undefined): number => (c === undefined ? -1 : parseInt(String.fromCharCode(c), 16));
  for (let i = 1; i < lit.length - 1; i++) {
    const c = lit[i]!;
    if (c !== 0x5c || i + 1 >= lit.length - 1) { out.push(c); continue; }
    const e = lit[++i]!;
    if (e === 0x78 && hex(lit[i + 1]) >= 0 && hex(lit[i + 2]) >= 0) {
      out.push(hex(lit[i + 1]) * 16 + hex(lit[i + 2]));
      i += 2;
    } else if (e >= 0x30 && e <= 0x37) { // octal, up to 3 digits
      let v = e - 0x30;
      for (let k = 0; k < 2 && lit[i + 1]! >= 0x30 && lit[i + 1]! <= 0x37 && i + 1 < lit.length - 1; k++) v = v * 8 + (lit[++i]! - 0x30);
      out.push(v & 0xff);
    } else if (simple[e] !== undefined) {
      out.push(simple[e]!);
    } else {
      out.push(0x5c, e);
    }
  }
  return UTF8.decode(Uint8Array.from(out));
}

/**
 * Protocol 0 UNICODE: raw-unicode-escape, i.e. latin-1 bytes in which only \uXXXX and
 * \UXXXXXXXX are escapes.
 */
function decodeRawUnicodeEscape(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (m, u4?: string, u8?: string) => {
    const cp = parseInt((u4 ?? u8)!, 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}

export interface UnpickleResult {
  value: PickleValue;
  /** Offset of the byte after STOP (legacy torch files concatenate several pickles). */
  end: number;
}

/** Unpickles the stream that starts at `offset` (default 0) and returns its value and end. */
export function unpickleAt(bytes: Uint8Array, offset = 0, options: UnpickleOptions = {}): UnpickleResult {
  return new Unpickler(bytes, offset, options).run();
}

/** Unpickles one pickle stream (the data after its STOP is ignored). */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): PickleValue {
  return unpickleAt(bytes, 0, options).value;
}

class Unpickler {
  private readonly r: Reader;
  private stack: PickleValue[] = [];
  private readonly metastack: PickleValue[][] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly builtins: Map<string, PyGlobal>;
  private budget: number;

  constructor(bytes: Uint8Array, offset: number, private readonly opts: UnpickleOptions) {
    if (!Number.isInteger(offset) || offset < 0 || offset > bytes.length) throw new UnpicklingError(`bad start offset ${offset}`);
    this.r = new Reader(bytes, offset);
    // Copying work allowed: ample for real files (they copy each item once or twice at most),
    // fatal for a pickle that re-applies a large BUILD state or constructor argument in a loop.
    this.budget = 4 * (bytes.length - offset) + 100_000;
    this.builtins = builtinGlobals((n) => this.charge(n));
  }

  private charge(n: number): void {
    this.budget -= n;
    if (this.budget < 0) throw new UnpicklingError('pickle does too much copying work for its size (refusing a decompression-bomb-like stream)');
  }

  private pop(what: string): PickleValue {
    if (this.stack.length === 0) throw new UnpicklingError(`${what} at byte ${this.r.pos - 1}: stack underflow`);
    return this.stack.pop()!;
  }

  private top(what: string): PickleValue {
    if (this.stack.length === 0) throw new UnpicklingError(`${what} at byte ${this.r.pos - 1}: stack underflow`);
    return this.stack[this.stack.length - 1]!;
  }

  private popMark(what: string): PickleValue[] {
    const items = this.stack;
    const prev = this.metastack.pop();
    if (!prev) throw new UnpicklingError(`${what} at byte ${this.r.pos - 1}: no MARK`);
    this.stack = prev;
    return items;
  }

  private resolveGlobal(module: string, name: string): PyGlobal {
    const mod = PY2_MODULES.get(module) ?? module;
    const g = this.opts.globals?.(mod, name) ?? this.builtins.get(`${mod}.${name}`);
    if (!g) throw new UnpicklingError(`refusing global '${printable(`${mod}.${name}`)}' (not in the allow-list)`);
    return g;
  }

  private callGlobal(fn: PickleValue, args: PickleValue, what: string, kwargs?: PickleValue): PickleValue {
    if (!(fn instanceof PyGlobal)) throw new UnpicklingError(`${what}: cannot call ${describeValue(fn)}`);
    if (!fn.call) throw new UnpicklingError(`${what}: global '${fn.qualifiedName}' is not callable here`);
    if (!Array.isArray(args)) throw new UnpicklingError(`${what}: arguments of '${fn.qualifiedName}' are not a tuple`);
    if (kwargs !== undefined && !isPyDict(kwargs)) throw new UnpicklingError(`${what}: keyword arguments are not a dict`);
    return fn.call(args, kwargs && Object.keys(kwargs).length ? kwargs : undefined);
  }

  private setItem(target: PickleValue, key: PickleValue, value: PickleValue, what: string): void {
    if (isPyDict(target) || target instanceof PyObject) setProperty(target, dictKey(key), value);
    else throw new UnpicklingError(`${what}: cannot set an item on ${describeValue(target)}`);
  }

  private build(inst: PickleValue, state: PickleValue): void {
    if (typeof inst !== 'object' || inst === null || inst instanceof PyGlobal || ArrayBuffer.isView(inst)) {
      throw new UnpicklingError(`BUILD on ${describeValue(inst)}`);
    }
    if (state === null) return;
    // (dict state, slot state) as written for objects with __slots__
    let slots: PickleValue = null;
    if (Array.isArray(state) && state.length === 2 && (state[0] === null || isPyDict(state[0])) && (state[1] === null || isPyDict(state[1]))) {
      [state, slots] = state as [PickleValue, PickleValue];
    }
    // An object's dict state is its attributes. Dicts (OrderedDict._metadata), lists and tensors
    // keep their attributes beside their items; so does an object whose state is not a dict.
    let attrs: PyDict | undefined;
    for (const s of [state, slots]) {
      if (s === null) continue;
      if (inst instanceof PyObject && isPyDict(s)) {
        const keys = Object.keys(s);
        this.charge(keys.length);
        for (const k of keys) setProperty(inst, k, s[k]!);
        continue;
      }
      attrs ??= pyAttributes(inst) ?? newPyDict();
      if (isPyDict(s)) {
        const keys = Object.keys(s);
        this.charge(keys.length);
        for (const k of keys) setProperty(attrs, k, s[k]!);
      } else {
        setProperty(attrs, '__state__', s);
      }
    }
    if (attrs) Object.defineProperty(inst, ATTRS, { value: attrs, configurable: true });
  }

  private persistent(pid: PickleValue): PickleValue {
    if (!this.opts.persistentLoad) throw new UnpicklingError('persistent id in a pickle that allows none');
    return this.opts.persistentLoad(pid);
  }

  run(): UnpickleResult {
    const r = this.r;
    for (;;) {
      const at = r.pos;
      const op = r.u8('opcode');
      switch (op) {
        // --- structure
        case 0x80: { // PROTO
          const v = r.u8('PROTO');
          if (v > 5) throw new UnpicklingError(`unsupported pickle protocol ${v}`);
          break;
        }
        case 0x95: r.u64('FRAME'); break; // FRAME: a length hint only; opcodes continue inline
        case 0x2e: { // STOP
          const value = this.pop('STOP');
          return { value, end: r.pos };
        }
        case 0x28: this.metastack.push(this.stack); this.stack = []; break; // MARK
        case 0x30: this.pop('POP'); break;
        case 0x31: this.popMark('POP_MARK'); break;
        case 0x32: this.stack.push(this.top('DUP')); break;

        // --- constants
        case 0x4e: this.stack.push(null); break; // NONE
        case 0x88: this.stack.push(true); break; // NEWTRUE
        case 0x89: this.stack.push(false); break; // NEWFALSE
        case 0x4a: this.stack.push(r.i32('BININT')); break;
        case 0x4b: this.stack.push(r.u8('BININT1')); break;
        case 0x4d: this.stack.push(r.u16('BININT2')); break;
        case 0x8a: { // LONG1
          const n = r.u8('LONG1');
          this.stack.push(normInt(bytesToBigInt(r.take(n, 'LONG1'))));
          break;
        }
        case 0x8b: { // LONG4
          const n = r.i32('LONG4');
          if (n < 0) throw new UnpicklingError(`LONG4 at byte ${at}: negative length`);
          if (n > MAX_LONG_BYTES) throw new UnpicklingError(`LONG4 at byte ${at}: integer of ${n} bytes is too large`);
          this.stack.push(normInt(bytesToBigInt(r.take(n, 'LONG4'))));
          break;
        }
        case 0x49: { // INT (text); "I01"/"I00" are protocol 0's True/False
          const s = r.line('INT');
          if (s === '01') this.stack.push(true);
          else if (s === '00') this.stack.push(false);
          else this.stack.push(parseTextInt(s, 'INT'));
          break;
        }
        case 0x4c: this.stack.push(parseTextInt(r.line('LONG'), 'LONG')); break;
        case 0x46: { // FLOAT (text)
          const s = r.line('FLOAT').trim();
          const v = Number(s === 'inf' ? 'Infinity' : s === '-inf' ? '-Infinity' : s === 'nan' ? 'NaN' : s);
          if (s === '' || (Number.isNaN(v) && s !== 'nan')) throw new UnpicklingError(`FLOAT at byte ${at}: bad value`);
          this.stack.push(v);
          break;
        }
        case 0x47: { // BINFLOAT: big-endian double
          r.need(8, 'BINFLOAT');
          this.stack.push(r.view.getFloat64(r.pos, false));
          r.pos += 8;
          break;
        }

        // --- strings and bytes
        case 0x58: this.stack.push(UTF8.decode(r.take(r.u32('BINUNICODE'), 'BINUNICODE'))); break;
        case 0x8c: this.stack.push(UTF8.decode(r.take(r.u8('SHORT_BINUNICODE'), 'SHORT_BINUNICODE'))); break;
        case 0x8d: this.stack.push(UTF8.decode(r.take(r.u64('BINUNICODE8'), 'BINUNICODE8'))); break;
        case 0x56: this.stack.push(decodeRawUnicodeEscape(r.lineBytes('UNICODE'))); break;
        // Python 2 str: torch.load decodes it as UTF-8 text
        case 0x54: {
          const n = r.i32('BINSTRING');
          if (n < 0) throw new UnpicklingError(`BINSTRING at byte ${at}: negative length`);
          this.stack.push(UTF8.decode(r.take(n, 'BINSTRING')));
          break;
        }
        case 0x55: this.stack.push(UTF8.decode(r.take(r.u8('SHORT_BINSTRING'), 'SHORT_BINSTRING'))); break;
        case 0x53: this.stack.push(decodeStringLiteral(r.lineBytes('STRING'), `STRING at byte ${at}`)); break;
        case 0x42: this.stack.push(r.take(r.u32('BINBYTES'), 'BINBYTES').slice()); break;
        case 0x43: this.stack.push(r.take(r.u8('SHORT_BINBYTES'), 'SHORT_BINBYTES').slice()); break;
        case 0x8e: this.stack.push(r.take(r.u64('BINBYTES8'), 'BINBYTES8').slice()); break;
        case 0x96: this.stack.push(r.take(r.u64('BYTEARRAY8'), 'BYTEARRAY8').slice()); break;
        case 0x97: throw new UnpicklingError(`NEXT_BUFFER at byte ${at}: out-of-band buffers are not supported`);
        case 0x98: this.top('READONLY_BUFFER'); break;

        // --- containers
        case 0x29: this.stack.push([]); break; // EMPTY_TUPLE
        case 0x5d: this.stack.push([]); break; // EMPTY_LIST
        case 0x7d: this.stack.push(newPyDict()); break; // EMPTY_DICT
        case 0x8f: this.stack.push([]); break; // EMPTY_SET (sets are arrays)
        // (popMark replaces this.stack: take the items before naming the stack to push onto)
        case 0x74: { const items = this.popMark('TUPLE'); this.stack.push(items); break; }
        case 0x6c: { const items = this.popMark('LIST'); this.stack.push(items); break; }
        case 0x91: { const items = this.popMark('FROZENSET'); this.stack.push(items); break; }
        case 0x85: { const a = this.pop('TUPLE1'); this.stack.push([a]); break; }
        case 0x86: { const b = this.pop('TUPLE2'); const a = this.pop('TUPLE2'); this.stack.push([a, b]); break; }
        case 0x87: {
          const c = this.pop('TUPLE3'); const b = this.pop('TUPLE3'); const a = this.pop('TUPLE3');
          this.stack.push([a, b, c]);
          break;
        }
        case 0x64: { // DICT
          const items = this.popMark('DICT');
          if (items.length % 2) throw new UnpicklingError(`DICT at byte ${at}: odd number of items`);
          const d = newPyDict();
          for (let i = 0; i < items.length; i += 2) setProperty(d, dictKey(items[i]!), items[i + 1]!);
          this.stack.push(d);
          break;
        }
        case 0x61: { // APPEND
          const v = this.pop('APPEND');
          const list = this.top('APPEND');
          if (!Array.isArray(list)) throw new UnpicklingError(`APPEND at byte ${at}: target is ${describeValue(list)}`);
          list.push(v);
          break;
        }
        case 0x65: case 0x90: { // APPENDS, ADDITEMS
          const what = op === 0x65 ? 'APPENDS' : 'ADDITEMS';
          const items = this.popMark(what);
          const list = this.top(what);
          if (!Array.isArray(list)) throw new UnpicklingError(`${what} at byte ${at}: target is ${describeValue(list)}`);
          for (const v of items) list.push(v);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop('SETITEM');
          const k = this.pop('SETITEM');
          this.setItem(this.top('SETITEM'), k, v, `SETITEM at byte ${at}`);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark('SETITEMS');
          if (items.length % 2) throw new UnpicklingError(`SETITEMS at byte ${at}: odd number of items`);
          const target = this.top('SETITEMS');
          for (let i = 0; i < items.length; i += 2) this.setItem(target, items[i]!, items[i + 1]!, `SETITEMS at byte ${at}`);
          break;
        }

        // --- memo
        case 0x71: this.memo.set(r.u8('BINPUT'), this.top('BINPUT')); break;
        case 0x72: this.memo.set(r.u32('LONG_BINPUT'), this.top('LONG_BINPUT')); break;
        case 0x70: this.memo.set(Number(parseTextInt(r.line('PUT'), 'PUT')), this.top('PUT')); break;
        case 0x94: this.memo.set(this.memo.size, this.top('MEMOIZE')); break;
        case 0x68: case 0x6a: case 0x67: { // BINGET, LONG_BINGET, GET
          const key = op === 0x68 ? r.u8('BINGET') : op === 0x6a ? r.u32('LONG_BINGET') : Number(parseTextInt(r.line('GET'), 'GET'));
          if (!this.memo.has(key)) throw new UnpicklingError(`memo key ${key} at byte ${at} was never stored`);
          this.stack.push(this.memo.get(key)!);
          break;
        }

        // --- globals, calls, objects
        case 0x63: { // GLOBAL "module\nname\n"
          const module = r.line('GLOBAL');
          const name = r.line('GLOBAL');
          this.stack.push(this.resolveGlobal(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop('STACK_GLOBAL');
          const module = this.pop('STACK_GLOBAL');
          if (typeof module !== 'string' || typeof name !== 'string') throw new UnpicklingError(`STACK_GLOBAL at byte ${at}: module and name must be strings`);
          this.stack.push(this.resolveGlobal(module, name));
          break;
        }
        case 0x69: { // INST "module\nname\n" + MARK args
          const module = r.line('INST');
          const name = r.line('INST');
          const args = this.popMark('INST');
          this.stack.push(this.callGlobal(this.resolveGlobal(module, name), args, `INST at byte ${at}`));
          break;
        }
        case 0x6f: { // OBJ: MARK cls args...
          const items = this.popMark('OBJ');
          if (items.length === 0) throw new UnpicklingError(`OBJ at byte ${at}: no class`);
          this.stack.push(this.callGlobal(items[0]!, items.slice(1), `OBJ at byte ${at}`));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop('REDUCE');
          const fn = this.pop('REDUCE');
          this.stack.push(this.callGlobal(fn, args, `REDUCE at byte ${at}`));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args), rebuilt without running code
          const args = this.pop('NEWOBJ');
          const cls = this.pop('NEWOBJ');
          this.stack.push(this.callGlobal(cls, args, `NEWOBJ at byte ${at}`));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.pop('NEWOBJ_EX');
          const args = this.pop('NEWOBJ_EX');
          const cls = this.pop('NEWOBJ_EX');
          this.stack.push(this.callGlobal(cls, args, `NEWOBJ_EX at byte ${at}`, kwargs));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop('BUILD');
          this.build(this.top('BUILD'), state);
          break;
        }
        case 0x82: case 0x83: case 0x84: // EXT1/2/4 name globals through the copyreg registry
          throw new UnpicklingError(`extension-registry opcode at byte ${at} is not supported (it names globals indirectly)`);

        // --- persistent ids (torch storages)
        case 0x50: this.stack.push(this.persistent(r.line('PERSID'))); break;
        case 0x51: this.stack.push(this.persistent(this.pop('BINPERSID'))); break;

        default:
          throw new UnpicklingError(`unknown opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
      }
    }
  }
}
