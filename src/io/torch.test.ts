import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CheckpointError, IoError, UnpicklingError, ZipError } from './errors.ts';
import { PyObject, isPyDict, pyAttributes, pyClassName, type PyDict } from './pickle.ts';
import { readSafetensors } from './safetensors.ts';
import { TensorData, dtypeCode, toFloat32Array, type DType } from './tensor.ts';
import {
  PickleBuilder, ScriptModule, StridedTensor, legacyHeader, pickleTorch, randomTensor, saveTorchLegacy, saveTorchScript, saveTorchZip, writeZip,
} from './testing.ts';
import { checkpointFormat, flattenStateDict, loadCheckpoint, selectPrefix } from './torch.ts';
import { loadStateDict } from './weights.ts';

const FIX = new URL('../../test/fixtures/', import.meta.url).pathname;
const json = (p: string): any => JSON.parse(readFileSync(FIX + p, 'utf8'));
const sd = (p: string): Map<string, TensorData> => flattenStateDict(loadCheckpoint(FIX + p));
const shapeOf = (t: TensorData | undefined): number[] => [...(t?.shape ?? [])];

/** Same dtype, shape and bytes. */
function assertSameTensor(a: TensorData, b: TensorData, what: string): void {
  assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.deepEqual(a.bytes(), b.bytes(), `${what}: bytes`);
}

// --- the fixture checkpoints ----------------------------------------------------------------------

test('every fixture checkpoint opens with the expected number of tensors', () => {
  const expected: Record<string, [string, number]> = {
    'stylegan2/tiny_g.pt': ['zip', 70],
    'stylegan2/tiny_g_legacy.pt': ['legacy', 70],
    'clip/tiny_clip_jit.pt': ['torchscript', 65],
    'clip/tiny_clip_state.pt': ['zip', 62],
    'arcface/tiny_irse.pt': ['zip', 112],
    'faceparse/tiny_bisenet.pt': ['zip', 191],
    'e4e/tiny_e4e.pt': ['zip', 180],
    'mapper/tiny_styleclip_levels_mapper.pt': ['zip', 24],
    'mapper/tiny_styleclip_single_mapper.pt': ['zip', 8],
    'mapper/tiny_hairclip_mapper.pt': ['zip', 210],
    'ffclip/tiny_ffclip_mapper.pt': ['zip', 80],
    'parsenet/tiny_parsenet.pt': ['zip', 136],
  };
  for (const [file, [format, n]] of Object.entries(expected)) {
    assert.equal(checkpointFormat(readFileSync(FIX + file)), format, file);
    assert.equal(sd(file).size, n, file);
  }
});

test('stylegan2: zip and legacy files hold the same tensors; keys follow the official layout', () => {
  const zip = sd('stylegan2/tiny_g.pt');
  const legacy = sd('stylegan2/tiny_g_legacy.pt');
  assert.deepEqual([...legacy.keys()], [...zip.keys()]);
  for (const [k, t] of zip) assertSameTensor(legacy.get(k)!, t, k);

  const official = new Map<string, any>(json('stylegan2/official_1024_keys.json').tensors.map((t: any) => [t.key, t]));
  const g = selectPrefix(zip, 'g_ema.');
  assert.equal(g.size, 69);
  for (const [k, t] of g) {
    assert.ok(official.has(k), `g_ema.${k} is an official key`);
    assert.equal(dtypeCode(t.dtype), official.get(k).dtype, k);
    assert.equal(t.shape.length, official.get(k).shape.length, k);
  }
  assert.deepEqual(shapeOf(g.get('style.1.weight')), [64, 64]);
  assert.deepEqual(shapeOf(g.get('input.input')), [1, 32, 4, 4]);
  // latent_avg is io.safetensors' mean_latent[0]
  const latentAvg = zip.get('latent_avg')!;
  assert.deepEqual(latentAvg.shape, [64]);
  assert.deepEqual(latentAvg.data, readSafetensors(FIX + 'stylegan2/io.safetensors').tensors.get('mean_latent')!.data);
  // g_ema is a state_dict OrderedDict: its _metadata is kept aside, not among the items
  const root = loadCheckpoint(FIX + 'stylegan2/tiny_g.pt') as PyDict;
  assert.deepEqual(Object.keys(root), ['g_ema', 'latent_avg']);
  const meta = pyAttributes(root.g_ema)?._metadata as PyDict;
  assert.ok(isPyDict(meta) && isPyDict(meta['']), 'g_ema._metadata');
  assert.ok(!('_metadata' in (root.g_ema as PyDict)));
});

test('clip: the TorchScript archive matches its anatomy (keys in order, shapes, storage dtypes, module classes)', () => {
  const anatomy = json('clip/tiny_clip_jit_anatomy.json');
  const jit = sd('clip/tiny_clip_jit.pt');
  const storageDType: Record<string, DType> = { 'torch.FloatStorage': 'float32', 'torch.HalfStorage': 'float16', 'torch.LongStorage': 'int64' };
  const tensors = anatomy.tensors_in_attribute_tree_order as any[];
  assert.deepEqual([...jit.keys()], tensors.map((t) => t.name));
  for (const t of tensors) {
    const mine = jit.get(t.name)!;
    assert.deepEqual(mine.shape, t.shape, t.name);
    assert.equal(mine.dtype, storageDType[t.storage_type], t.name);
  }
  assert.equal(jit.get('input_resolution')!.data[0], 224n);
  assert.equal(jit.get('context_length')!.data[0], 77n);
  assert.equal(jit.get('vocab_size')!.data[0], 49408n);

  // the module objects: classes (mangled names included) and plain attributes
  const root = loadCheckpoint(FIX + 'clip/tiny_clip_jit.pt');
  const walk = (mine: unknown, ref: any, path: string): void => {
    assert.ok(mine instanceof PyObject, path);
    assert.equal(pyClassName(mine), ref.__class__, path);
    for (const [k, v] of Object.entries(ref)) {
      if (k === '__class__') continue;
      const m: unknown = (mine as any)[k];
      if (v && typeof v === 'object' && '__class__' in v) walk(m, v, `${path}.${k}`);
      else if (v && typeof v === 'object' && 'tensor' in v) assert.ok(m instanceof TensorData, `${path}.${k}`);
      else assert.deepEqual(m, v, `${path}.${k}`);
    }
  };
  walk(root, anatomy.module_tree, 'CLIP');
});

test('clip: TorchScript (mixed f16/f32), state_dict (f16) and safetensors (f16) hold the same values', () => {
  const jit = sd('clip/tiny_clip_jit.pt');
  const state = sd('clip/tiny_clip_state.pt');
  const st = readSafetensors(FIX + 'clip/tiny_clip.safetensors').tensors;
  const extra = ['input_resolution', 'context_length', 'vocab_size'];
  assert.deepEqual([...state.keys()], [...jit.keys()].filter((k) => !extra.includes(k)));
  assert.deepEqual([...st.keys()].sort(), [...state.keys()].sort());
  for (const [k, t] of state) {
    assert.equal(t.dtype, 'float16', k);
    assertSameTensor(st.get(k)!, t, k);
    assert.deepEqual(toFloat32Array(jit.get(k)!), toFloat32Array(t), k);
  }
  // the archive's storage dtypes are exactly what convert_weights() leaves in the official file
  const official = new Map<string, any>(json('clip/official_vitb32_keys.json').tensors.map((t: any) => [t.key, t]));
  let half = 0;
  for (const [k, t] of jit) {
    if (extra.includes(k)) continue;
    assert.equal(dtypeCode(t.dtype), official.get(k).dtype_after_convert_weights, k);
    if (t.dtype === 'float16') half++;
  }
  assert.equal(half, 35);
});

test('bisenet and parsenet: same keys, order and dtypes as the official files', () => {
  for (const [file, keys] of [['faceparse/tiny_bisenet.pt', 'faceparse/official_bisenet_keys.json'], ['parsenet/tiny_parsenet.pt', 'parsenet/official_parsenet_keys.json']]) {
    const mine = [...sd(file!)].map(([key, t]) => ({ key, dtype: dtypeCode(t.dtype) }));
    assert.deepEqual(mine, json(keys!).tensors.map((t: any) => ({ key: t.key, dtype: t.dtype })), file);
  }
});

test('arcface: a bare state_dict with int64 num_batches_tracked', () => {
  const s = sd('arcface/tiny_irse.pt');
  assert.deepEqual(shapeOf(s.get('input_layer.0.weight')), [16, 3, 3, 3]);
  const nbt = [...s].filter(([k]) => k.endsWith('num_batches_tracked'));
  assert.ok(nbt.length > 0);
  for (const [k, t] of nbt) assert.ok(t.dtype === 'int64' && t.shape.length === 0, k);
});

test('e4e: {state_dict, opts, latent_avg}', () => {
  const root = loadCheckpoint(FIX + 'e4e/tiny_e4e.pt') as PyDict;
  assert.deepEqual(Object.keys(root), ['state_dict', 'opts', 'latent_avg']);
  const opts = root.opts as PyDict;
  assert.equal(opts.stylegan_size, 32);
  assert.equal(opts.encoder_type, 'Encoder4Editing');
  assert.equal(opts.start_from_latent_avg, true);
  assert.equal(opts.checkpoint_path, null);
  assert.equal(opts.learning_rate, 0.0001);
  const s = flattenStateDict(root);
  assert.ok([...selectPrefix(s, 'state_dict.').keys()].every((k) => k.startsWith('encoder.')));
  assert.deepEqual(s.get('latent_avg')!.data, readSafetensors(FIX + 'e4e/io.safetensors').tensors.get('latent_avg')!.data);
});

test('mapper checkpoints: mapper.* keys whose shapes match the gradient fixtures', () => {
  const hair = selectPrefix(sd('mapper/tiny_hairclip_mapper.pt'), 'state_dict.');
  const grads = readSafetensors(FIX + 'mapper/grad.safetensors').tensors;
  const official = new Set(json('mapper/official_hairclip_mapper_keys.json').tensors.map((t: any) => t.key));
  assert.equal(hair.size, 210);
  for (const [k, t] of hair) {
    assert.ok(official.has(k), k);
    assert.deepEqual(shapeOf(grads.get(`hairclip.grad.${k}`)), [...t.shape], k);
  }
  const levels = selectPrefix(sd('mapper/tiny_styleclip_levels_mapper.pt'), 'state_dict.');
  assert.ok([...levels.keys()].every((k) => /^mapper\.(course|medium|fine)_mapping\.mapping\.\d+\.(weight|bias)$/.test(k)));
  const root = loadCheckpoint(FIX + 'mapper/tiny_styleclip_single_mapper.pt') as PyDict;
  assert.ok(isPyDict(root.opts));
});

test('ffclip: module.att_mapper.* keys of the official checkpoint', () => {
  const s = selectPrefix(sd('ffclip/tiny_ffclip_mapper.pt'), 'state_dict.');
  const official = new Set(json('ffclip/official_ffclip_mapper_keys.json').tensors.map((t: any) => t.key));
  assert.equal(s.size, 80);
  for (const k of s.keys()) assert.ok(k.startsWith('module.att_mapper.att_mapper.') && official.has(k), k);
  assert.deepEqual(shapeOf(s.get('module.att_mapper.att_mapper.0.attention_layer.k_matrix.weight')), [18, 1]);
});

test('loadStateDict reads any format; errors name the file', () => {
  assert.equal(loadStateDict(FIX + 'clip/tiny_clip.safetensors').format, 'safetensors');
  assert.equal(loadStateDict(FIX + 'clip/tiny_clip_jit.pt').format, 'torchscript');
  assert.throws(() => loadStateDict(FIX + 'clip/tiny_clip_jit_anatomy.json'), (e: Error) => e instanceof IoError && e.message.includes('tiny_clip_jit_anatomy.json'));
});

// --- written checkpoints: every dtype, views, formats ---------------------------------------------------

const ALL_DTYPES: DType[] = ['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

test('every storage dtype round-trips through the zip, legacy and TorchScript formats', () => {
  const tensors: Record<string, TensorData> = {};
  ALL_DTYPES.forEach((d, i) => { tensors[d] = randomTensor(d, [3, 5], i + 1); });
  tensors.scalar = randomTensor('float32', [], 99);
  tensors.empty = randomTensor('float32', [0, 4], 98);
  for (const bytes of [saveTorchZip(tensors), saveTorchLegacy(tensors), saveTorchScript(new ScriptModule('__torch__.M', tensors))]) {
    const s = flattenStateDict(loadCheckpoint(bytes));
    assert.deepEqual([...s.keys()], Object.keys(tensors));
    for (const [k, t] of Object.entries(tensors)) assertSameTensor(s.get(k)!, t, k);
  }
});

test('strided, offset, expanded and shared-storage views are materialised contiguous', () => {
  const storage = new TensorData('float32', [24], Float32Array.from({ length: 24 }, (_, i) => i));
  const value = {
    transposed: new StridedTensor(storage, 0, [4, 6], [1, 4]), // storage viewed as [6,4], transposed
    sliced: new StridedTensor(storage, 5, [2, 3], [6, 2]),
    expanded: new StridedTensor(storage, 7, [3, 2], [0, 1]),
    whole: new StridedTensor(storage, 0, [2, 12], [12, 1]),
  };
  const want = {
    transposed: [0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23],
    sliced: [5, 7, 9, 11, 13, 15],
    expanded: [7, 8, 7, 8, 7, 8],
    whole: Array.from({ length: 24 }, (_, i) => i),
  };
  for (const bytes of [saveTorchZip(value), saveTorchLegacy(value)]) {
    const s = flattenStateDict(loadCheckpoint(bytes));
    for (const [k, v] of Object.entries(want)) assert.deepEqual([...s.get(k)!.data as Float32Array], v, k);
  }
});

test('zip storages are views of the file (no copy)', () => {
  const bytes = saveTorchZip({ w: randomTensor('float32', [64, 64]) });
  const w = flattenStateDict(loadCheckpoint(bytes)).get('w')!;
  assert.equal(w.data.buffer, bytes.buffer);
});

test('legacy storage views (6-field persistent ids) and big-endian zips', () => {
  // legacy: one root storage of 10 floats, a view of it at element 4 holding 6, a tensor [2,3] in the view
  const root = new Float32Array(10).map((_, i) => i * 1.5);
  const b = new PickleBuilder().proto(2).emptyDict().mark().str('t');
  b.global('torch._utils', '_rebuild_tensor_v2').mark();
  b.mark().str('storage').global('torch', 'FloatStorage').str('111').str('cpu').int(10);
  b.str('222').int(4).int(6).raw(0x87).tuple().binpersid();
  b.int(0).int(2).int(3).raw(0x86).int(3).int(1).raw(0x86).bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  b.setitems().stop();
  // the header pickles, our object pickle, then the key list and the storage
  const head = legacyHeader();
  const keys = new PickleBuilder().proto(2).emptyList().mark().str('111').appends().stop().toBytes();
  const count = new Uint8Array(8);
  new DataView(count.buffer).setBigInt64(0, 10n, true);
  const file = concat(head, b.toBytes(), keys, count, new Uint8Array(root.buffer));
  const t = flattenStateDict(loadCheckpoint(file)).get('t')!;
  assert.deepEqual([...t.data as Float32Array], [6, 7.5, 9, 10.5, 12, 13.5]);

  // big-endian zip: data stored byte-swapped, declared by <root>/byteorder
  const { pickle } = pickleTorch({ x: new TensorData('int32', [2], Int32Array.of(1, -2)) });
  const be = writeZip([['a/data.pkl', pickle], ['a/byteorder', new TextEncoder().encode('big')], ['a/data/0', Uint8Array.of(0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe)]]);
  assert.deepEqual([...flattenStateDict(loadCheckpoint(be)).get('x')!.data as Int32Array], [1, -2]);
});

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

test('a bare tensor, lists and nested dicts flatten with dots; cycles, shared sub-trees, collisions', () => {
  const t = randomTensor('float32', [2]);
  assert.deepEqual([...flattenStateDict(loadCheckpoint(saveTorchZip(t))).keys()], ['']);
  const nested = flattenStateDict(loadCheckpoint(saveTorchZip({ a: { b: [t, { c: t }] }, opts: { lr: 0.1 } })));
  assert.deepEqual([...nested.keys()], ['a.b.0', 'a.b.1.c']);
  assert.equal(nested.get('a.b.0')!.data.buffer, nested.get('a.b.1.c')!.data.buffer, 'one storage, two views');
  // a back-reference (omegaconf nodes point at their parent) is not followed
  const parent: any = { w: t, child: { b: t } };
  parent.child._parent = parent;
  assert.deepEqual([...flattenStateDict(parent).keys()], ['w', 'child.b']);
  // shared sub-trees whose paths multiply: refused instead of walked for ever
  let dag: any = { t };
  for (let i = 0; i < 40; i++) dag = { a: dag, b: dag };
  assert.throws(() => flattenStateDict(dag), /too large to flatten/);
  const clash = loadCheckpoint(saveTorchZip({ 'a.b': t, a: { b: t } }));
  assert.throws(() => flattenStateDict(clash), (e: Error) => e instanceof CheckpointError && e.message.includes("'a.b'"));
});

// --- malformed checkpoints: clear, typed errors ------------------------------------------------------

function zipWith(pickle: Uint8Array, storages: [string, Uint8Array][] = []): Uint8Array {
  return writeZip([['r/data.pkl', pickle], ...storages.map(([k, b]) => [`r/data/${k}`, b] as [string, Uint8Array])]);
}

function tensorPickle(opts: { storage?: string; key?: string; numel?: number; offset?: number; size?: number[]; stride?: number[] } = {}): Uint8Array {
  const b = new PickleBuilder().proto(2).global('torch._utils', '_rebuild_tensor_v2').mark();
  b.mark().str('storage').global('torch', opts.storage ?? 'FloatStorage').str(opts.key ?? '0').str('cpu').int(opts.numel ?? 4).tuple().binpersid();
  b.int(opts.offset ?? 0).mark();
  for (const d of opts.size ?? [4]) b.int(d);
  b.tuple().mark();
  for (const s of opts.stride ?? [1]) b.int(s);
  b.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce().stop();
  return b.toBytes();
}

test('checkpoint errors name what is wrong', () => {
  const four = new Uint8Array(16);
  const cases: [Uint8Array, RegExp, Function][] = [
    [zipWith(tensorPickle()), /storage '0' is missing/, CheckpointError],
    [zipWith(tensorPickle({ numel: 5 }), [['0', four]]), /storage '0' should hold 5 float32 elements \(20 bytes\) but has 16 bytes/, CheckpointError],
    [zipWith(tensorPickle({ size: [3], offset: 2 }), [['0', four]]), /reaches past the storage's 4 elements/, CheckpointError],
    [zipWith(tensorPickle({ size: [2 ** 40], stride: [1] }), [['0', four]]), /reaches past/, CheckpointError],
    [zipWith(tensorPickle({ size: [2, 2], stride: [1] }), [['0', four]]), /bad stride/, CheckpointError],
    [zipWith(tensorPickle({ storage: 'UntypedStorage' }), [['0', four]]), /refusing global 'torch.UntypedStorage'/, UnpicklingError],
    [zipWith(tensorPickle({ key: '../../etc/passwd' }), [['0', four]]), /bad storage key/, CheckpointError],
    [writeZip([['r/version', four]]), /without a data.pkl/, CheckpointError],
    [saveTorchZip({}).subarray(0, 100), /no end-of-central-directory/, ZipError],
    [new PickleBuilder().proto(2).int(5).stop().toBytes(), /without the legacy magic number/, CheckpointError],
    [new TextEncoder().encode('hello'), /not a PyTorch checkpoint/, CheckpointError],
  ];
  for (const [bytes, msg, cls] of cases) {
    assert.throws(() => loadCheckpoint(bytes), (e: Error) => e instanceof cls && msg.test(e.message), String(msg));
  }
  // legacy: a storage claiming more elements than the bytes left
  const legacy = saveTorchLegacy({ w: randomTensor('float32', [4]) });
  const countAt = legacy.length - 16 - 8;
  new DataView(legacy.buffer).setBigInt64(countAt, 1n << 40n, true);
  assert.throws(() => loadCheckpoint(legacy), /claims 1099511627776 elements/);
  // a tensor pickle asking for torch.storage._load_from_bytes (which would run torch.load) is refused
  const evil = new PickleBuilder().proto(2).global('torch.storage', '_load_from_bytes').bytes(new Uint8Array(4)).raw(0x85).reduce().stop().toBytes();
  assert.throws(() => loadCheckpoint(zipWith(evil)), /refusing global 'torch.storage._load_from_bytes'/);
  // the path is named when loading from a file
  assert.throws(() => loadCheckpoint(FIX + 'clip/tiny_clip_jit_anatomy.json'), /tiny_clip_jit_anatomy\.json: not a PyTorch checkpoint/);
});

test('__torch__ classes are only data inside TorchScript archives', () => {
  const m = new ScriptModule('__torch__.M', { w: randomTensor('float32', [2]) });
  assert.ok(loadCheckpoint(saveTorchScript(m)) instanceof PyObject);
  // the same pickle in a plain torch.save zip (no code/, no constants.pkl) is refused
  const { pickle, storages } = pickleTorch(m);
  const plain = writeZip([['r/data.pkl', pickle], ...storages.map((s) => [`r/data/${s.key}`, s.storage.bytes()] as [string, Uint8Array])]);
  assert.throws(() => loadCheckpoint(plain), /refusing global '__torch__.M'/);
});
