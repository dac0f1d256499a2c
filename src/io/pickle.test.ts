import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { UnpicklingError } from './errors.ts';
import {
  PyGlobal, PyObject, isPyDict, pyArgs, pyAttributes, pyClassName, unpickle, unpickleAt, type PyDict,
} from './pickle.ts';
import { PickleBuilder } from './testing.ts';

const FIX = new URL('../../test/fixtures/', import.meta.url).pathname;
const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

const refused = (name: string) => (e: unknown): boolean =>
  e instanceof UnpicklingError && e.message === `refusing global '${name}' (not in the allow-list)`;

// --- hostile pickles: nothing runs, the global is named -------------------------------------------

test('the classic exploits are refused when the global is named, before anything is called', () => {
  // what `pickle.dumps` of an object whose __reduce__ returns (os.system, ('echo pwned',)) looks like
  const protocol0 = (module: string, name: string): Uint8Array => ascii(`c${module}\n${name}\n(S'echo pwned'\ntR.`);
  for (const [module, name] of [['posix', 'system'], ['os', 'system'], ['nt', 'system'], ['builtins', 'eval'], ['builtins', 'exec'], ['subprocess', 'Popen'], ['builtins', 'getattr'], ['builtins', '__import__']]) {
    assert.throws(() => unpickle(protocol0(module!, name!)), refused(`${module}.${name}`), `${module}.${name} protocol 0`);
    // protocol 2: GLOBAL + TUPLE1 + REDUCE
    const p2 = new PickleBuilder().proto(2).global(module!, name!).str('echo pwned').raw(0x85).reduce().stop().toBytes();
    assert.throws(() => unpickle(p2), refused(`${module}.${name}`), `${module}.${name} protocol 2`);
    // protocol 4: STACK_GLOBAL
    const p4 = new PickleBuilder().proto(4).stackGlobal(module!, name!).str('echo pwned').raw(0x85).reduce().stop().toBytes();
    assert.throws(() => unpickle(p4), refused(`${module}.${name}`), `${module}.${name} protocol 4`);
  }
  // Python 2 name of builtins, INST and OBJ forms, subprocess through NEWOBJ
  assert.throws(() => unpickle(ascii("c__builtin__\neval\n(S'1+1'\ntR.")), refused('builtins.eval'));
  assert.throws(() => unpickle(ascii("(S'ls'\nisubprocess\nPopen\n.")), refused('subprocess.Popen'));
  assert.throws(() => unpickle(new PickleBuilder().proto(2).mark().global('os', 'system').str('ls').raw(0x6f).stop().toBytes()), refused('os.system'));
  assert.throws(() => unpickle(new PickleBuilder().proto(2).global('subprocess', 'Popen').emptyTuple().newobj().stop().toBytes()), refused('subprocess.Popen'));
  // an allowed class cannot smuggle a refused one through copyreg
  const smuggle = new PickleBuilder().proto(2).global('copyreg', '_reconstructor').global('os', 'system').raw(0x85).reduce().stop().toBytes();
  assert.throws(() => unpickle(smuggle), refused('os.system'));
  // names that are also JS object keys resolve to nothing special
  for (const [module, name] of [['__proto__', 'x'], ['constructor', 'constructor'], ['toString', 'call'], ['builtins', '__proto__']]) {
    assert.throws(() => unpickle(new PickleBuilder().proto(2).global(module!, name!).stop().toBytes()), refused(`${module}.${name}`));
  }
  // names are escaped in messages
  assert.throws(() => unpickle(ascii('cos\x1b[31m\nsystem\n.')), refused('os\\x1b[31m.system'));
});

test('a type marker is not callable, and extension-registry opcodes are refused', () => {
  assert.throws(() => unpickle(new PickleBuilder().proto(2).global('builtins', 'int').str('5').raw(0x85).reduce().stop().toBytes()),
    (e: Error) => e instanceof UnpicklingError && /global 'builtins.int' is not callable/.test(e.message));
  assert.throws(() => unpickle(Uint8Array.of(0x80, 2, 0x82, 1, 0x2e)), /extension-registry/);
  assert.throws(() => unpickle(Uint8Array.of(0x80, 2, 0x29, 0x97, 0x2e)), /out-of-band/);
  assert.throws(() => unpickle(ascii('P1\n.')), /persistent id in a pickle that allows none/);
});

// --- what Python writes, protocols 0-5 ---------------------------------------------------------------

test('pickles written by Python (protocols 0-5) come out as the same data', () => {
  const fixture = JSON.parse(readFileSync(FIX + 'io/python_pickles.json', 'utf8'));
  for (const [protocol, b64] of Object.entries(fixture.pickles as Record<string, string>)) {
    const v = unpickle(Buffer.from(b64, 'base64')) as PyDict;
    const at = `protocol ${protocol}`;
    assert.ok(isPyDict(v), at);
    assert.equal(v.int, 1, at);
    assert.equal(v.neg, -5, at);
    assert.equal(v.i32, -70000, at);
    assert.equal(v.big, 2n ** 70n, at);
    assert.equal(v.neg_big, -(2n ** 63n), at);
    assert.equal(v.float, 1.5, at);
    assert.equal(v.inf, -Infinity, at);
    assert.equal(v.str, 'h\u00e9llo \u4e16\n"\'\\', at);
    assert.deepEqual(v.bytes, Uint8Array.of(0, 255, 10), at);
    assert.deepEqual(v.bytearray, Uint8Array.of(97, 98), at);
    assert.deepEqual(v.list, [1, [2, 3]], at);
    assert.deepEqual(v.tuple, [1, 'a'], at);
    assert.deepEqual(v.empty_tuple, [], at);
    assert.deepEqual(v.set, [7], at);
    assert.deepEqual(v.frozenset, [8], at);
    assert.equal(v.none, null, at);
    assert.equal(v.true, true, at);
    assert.equal(v.false, false, at);
    assert.deepEqual(Object.entries(v.od as PyDict), [['b', 1], ['a', 2]], at);
    assert.equal(v.shared, v.shared2, `${at}: memo gives the same object`);
    assert.equal(v.long_str, 'x'.repeat(300), at);
    assert.equal(v['3'], 'int key', at);
    const ns = v.ns as PyObject;
    assert.equal(pyClassName(ns), 'argparse.Namespace', at);
    assert.deepEqual({ ...ns }, { lr: 0.1, name: 'x' }, at);
  }
});

test('text opcodes of protocol 0', () => {
  const v = unpickle(ascii("(lp0\nI1\naI01\naF2.5\naL12345678901234567890L\naS'a\\'b\\x41'\naVcaf\\u00e9\nag0\na."));
  assert.ok(Array.isArray(v));
  assert.deepEqual(v.slice(0, 6), [1, true, 2.5, 12345678901234567890n, "a'bA", 'caf\u00e9']);
  assert.equal(v[6], v, 'GET of the memoised list itself');
});

test('memo, DUP, POP, POP_MARK, DICT, frames and the end offset', () => {
  const b = new PickleBuilder().proto(4).raw(0x95, 0, 0, 0, 0, 0, 0, 0, 0)
    .str('k').raw(0x94).emptyList().raw(0x94).raw(0x32).raw(0x30) // DUP then POP
    .mark().int(9).raw(0x31) // POP_MARK discards 9
    .raw(0x28).get(0).get(1).raw(0x64) // DICT {'k': [...]}
    .stop();
  const bytes = b.toBytes();
  const { value, end } = unpickleAt(new Uint8Array([...bytes, 0xde, 0xad]), 0);
  assert.equal(end, bytes.length);
  const d = value as PyDict;
  assert.deepEqual(Object.keys(d), ['k']);
  assert.ok(Array.isArray(d.k));
});

test('BUILD: object attributes become properties; a dict keeps its attributes aside', () => {
  const obj = unpickle(new PickleBuilder().proto(2).global('argparse', 'Namespace').emptyTuple().newobj()
    .emptyDict().str('__proto__').int(1).setitem().str('constructor').int(2).setitem().build().stop().toBytes()) as PyObject;
  assert.equal(Object.getPrototypeOf(obj), PyObject.prototype, '__proto__ is a plain key, never the prototype');
  assert.deepEqual(Object.keys(obj), ['__proto__', 'constructor']);
  assert.deepEqual(pyArgs(obj), []);
  const od = unpickle(new PickleBuilder().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce()
    .str('w').int(1).setitem().emptyDict().str('_metadata').str('m').setitem().build().stop().toBytes()) as PyDict;
  assert.deepEqual(Object.keys(od), ['w']);
  assert.equal(pyAttributes(od)?._metadata, 'm');
});

test('omegaconf-style pickles rebuild as attribute bags with type markers', () => {
  const b = new PickleBuilder().proto(2).global('omegaconf.dictconfig', 'DictConfig').emptyTuple().newobj()
    .emptyDict().mark()
    .str('_metadata').global('omegaconf.base', 'ContainerMetadata').emptyTuple().newobj()
    .emptyDict().mark().str('ref_type').global('typing', 'Any').str('object_type').global('builtins', 'dict').str('optional').bool(true).setitems().build()
    .str('_content').emptyDict().mark().str('lr').global('omegaconf.nodes', 'AnyNode').emptyTuple().newobj()
    .emptyDict().str('_val').float(0.5).setitem().build().setitems()
    .setitems().build().stop();
  const cfg = unpickle(b.toBytes()) as any;
  assert.equal(pyClassName(cfg), 'omegaconf.dictconfig.DictConfig');
  assert.ok(cfg._metadata.ref_type instanceof PyGlobal && cfg._metadata.ref_type.qualifiedName === 'typing.Any');
  assert.equal(cfg._content.lr._val, 0.5);
});

test('malformed streams give UnpicklingError with the byte offset', () => {
  const cases: [Uint8Array, RegExp][] = [
    [Uint8Array.of(), /opcode at byte 0 needs 1 bytes/],
    [Uint8Array.of(0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f), /BINUNICODE at byte 7 needs 2147483647 bytes, only 0 left/],
    [Uint8Array.of(0x80, 2, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40), /BINBYTES8 at byte 11 needs \d+ bytes, only 0 left/],
    [Uint8Array.of(0x80, 2, 0x2e), /STOP at byte 2: stack underflow/],
    [Uint8Array.of(0x80, 2, 0x74), /TUPLE at byte 2: no MARK/],
    [Uint8Array.of(0x80, 2, 0x68, 5), /memo key 5 at byte 2 was never stored/],
    [Uint8Array.of(0x80, 9), /unsupported pickle protocol 9/],
    [Uint8Array.of(0x80, 2, 0xff), /unknown opcode 0xff at byte 2/],
    [Uint8Array.of(0x80, 2, 0x4b, 1, 0x4b, 2, 0x61), /APPEND at byte 6: target is number/],
    [Uint8Array.of(0x80, 2, 0x8b, 0xff, 0xff, 0, 0), /LONG4 .* too large/],
    [ascii('I12x\n.'), /INT: bad integer/],
    [ascii('I' + '9'.repeat(5000) + '\n.'), /more than 4300 digits/],
    [ascii('cos\nsystem'), /missing newline/],
  ];
  for (const [bytes, msg] of cases) assert.throws(() => unpickle(bytes), (e: Error) => e instanceof UnpicklingError && msg.test(e.message), String(msg));
});

test('repeating an expensive BUILD or constructor call exhausts the work budget instead of hanging', () => {
  // a dict of 10k items, then 10k BUILDs of it onto one object: 1e8 property copies without the budget
  const b = new PickleBuilder().proto(2).emptyDict().put(0).mark();
  for (let i = 0; i < 10000; i++) b.int(i).none();
  b.setitems().global('argparse', 'Namespace').emptyTuple().newobj();
  for (let i = 0; i < 10000; i++) b.get(0).build();
  const t0 = performance.now();
  assert.throws(() => unpickle(b.stop().toBytes()), /too much copying work/);
  assert.ok(performance.now() - t0 < 2000);
});
