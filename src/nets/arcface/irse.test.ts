import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { f32, TensorData } from '../../io/tensor.ts';
import { bareStateDict, readCheckpoint, validateStateDict } from '../common.ts';
import { saveTorchZip } from '../../io/testing.ts';
import { editStateDict, fixturePath, officialKeys, randomStateDict, shapeOnlyStateDict, specAsKeys } from '../testing.ts';
import { formatLine } from '../../verify/compare.ts';
import { IR_SE50, idFeatures, inferIrseConfig, irseForward, irseStateSpec, loadIrse } from './irse.ts';
import { detect, verify } from './verify.ts';

const DIR = fixturePath('arcface');

test('arcface: every fixture tensor (forward, hooks, cosine and ID-loss gradients) matches', async () => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  assert.equal(lines.length, 10);
  for (const l of lines) assert.ok(l.pass, formatLine(l));
});

test('arcface: the reduced fixture config is inferred from the keys (README patch)', () => {
  const sd = bareStateDict(readCheckpoint(fixturePath('arcface', 'tiny_irse.pt')), 'tiny');
  const c = inferIrseConfig(sd);
  assert.deepEqual(c.stages.map((s) => [s.inChannel, s.depth, s.units]), [[16, 16, 2], [16, 24, 1], [24, 32, 1], [32, 48, 1]]);
  assert.equal(c.stem, 16);
  assert.equal(c.embedding, 32);
  assert.equal(c.inputSize, 112);
  assert.equal(c.mode, 'ir_se');
  assert.equal(c.seReduction, 16);
  assert.ok(c.affine);
});

test('arcface: the IR-SE50 builder gives exactly the official keys, shapes and order', () => {
  const official = officialKeys('arcface', 'official_irse50_keys.json');
  assert.deepEqual(specAsKeys(irseStateSpec(IR_SE50)), official);
  // inference from the real layout gives back the official config, with and without the
  // num_batches_tracked buffers (the released model_ir_se50.pth has none)
  const full = shapeOnlyStateDict(official);
  assert.deepEqual(inferIrseConfig(full), IR_SE50);
  validateStateDict('IR-SE50', full, irseStateSpec(IR_SE50));
  const noCounters = shapeOnlyStateDict(official.filter((k) => !k.key.endsWith('num_batches_tracked')));
  assert.equal(noCounters.size, 343);
  assert.deepEqual(inferIrseConfig(noCounters), IR_SE50);
  validateStateDict('IR-SE50', noCounters, irseStateSpec(IR_SE50));
});

test('arcface: state-dict validation names missing, unexpected and mis-shaped keys', () => {
  const sd = bareStateDict(readCheckpoint(fixturePath('arcface', 'tiny_irse.pt')), 'tiny');
  assert.throws(() => loadIrse(editStateDict(sd, { drop: ['body.1.res_layer.3.weight'] })), /missing 'body\.1\.res_layer\.3\.weight'/);
  assert.throws(() => loadIrse(editStateDict(sd, { set: { 'body.0.extra': f32([2]) } })), /unexpected key 'body\.0\.extra'/);
  assert.throws(() => loadIrse(editStateDict(sd, { set: { 'body.2.res_layer.2.weight': f32([5]) } })), /'body\.2\.res_layer\.2\.weight' has shape \[5\]/);
  const noCounters = editStateDict(sd, { drop: [...sd.keys()].filter((k) => k.endsWith('num_batches_tracked')) });
  assert.ok(noCounters.size < sd.size);
  assert.doesNotThrow(() => loadIrse(noCounters));
  assert.throws(() => loadIrse(editStateDict(sd, { set: { 'input_layer.2.weight': new TensorData('int64', [16], new BigInt64Array(16)) } })), /'input_layer\.2\.weight' is I64/);
});

test('arcface: ID-loss preprocessing of a 1024 image = that of its 256 version (face_pool path)', async () => {
  const net = loadIrse(fixturePath('arcface', 'tiny_irse.pt'));
  // a 256 image and its 4x nearest upscale: AdaptiveAvgPool2d(256) of the latter is the former exactly
  const small = new Float32Array(3 * 256 * 256);
  let s = 7;
  for (let i = 0; i < small.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; small[i] = s / 1073741824 - 1; }
  const big = new Float32Array(3 * 1024 * 1024);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 1024; y++) for (let x = 0; x < 1024; x++) {
    big[(c * 1024 + y) * 1024 + x] = small[(c * 256 + (y >> 2)) * 256 + (x >> 2)];
  }
  const g = new G.Graph();
  const a = g.input('a', [1, 3, 256, 256]); const b = g.input('b', [1, 3, 1024, 1024]);
  const r = await evaluate({ fa: idFeatures(net, a), fb: idFeatures(net, b) }, { a: small, b: big });
  const fa = r.fa.data as Float32Array; const fb = r.fb.data as Float32Array;
  assert.equal(fa.length, 32);
  for (let i = 0; i < fa.length; i++) assert.ok(Math.abs(fa[i] - fb[i]) < 1e-5, `feature ${i}: ${fa[i]} vs ${fb[i]}`);
});

test('arcface generality: other stage layouts, stem, embedding, plain IR, affine=False and 224 input load and run', async () => {
  const run = async (net: ReturnType<typeof loadIrse>, size: number) => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3, size, size]);
    const r = await evaluate({ e: irseForward(net, x) }, { x: Float32Array.from({ length: 2 * 3 * size * size }, (_, i) => Math.sin(i * 0.37)) });
    return r.e;
  };

  // get_blocks patched to [(8, 16, 1), (16, 16, 2), (16, 32, 2), (32, 40, 1)]: the first two stages
  // share depth 16, so the stride-2 unit opening the second one looks like any other unit
  const stages = [{ inChannel: 8, depth: 16, units: 1 }, { inChannel: 16, depth: 16, units: 2 }, { inChannel: 16, depth: 32, units: 2 }, { inChannel: 32, depth: 40, units: 1 }];
  const cfg = { ...IR_SE50, stem: 8, stages, embedding: 24 };
  const bytes = saveTorchZip(Object.fromEntries(randomStateDict(irseStateSpec(cfg), 3)));
  const merged = loadIrse(bytes);
  assert.deepEqual(merged.config.stages.map((s) => [s.inChannel, s.depth, s.units]), [[8, 16, 3], [16, 32, 2], [32, 40, 1]]);
  await assert.rejects(run(merged, 112), /input must be \[N, 3, 56, 56\].*pass the stage list/);
  const net = loadIrse(bytes, 'alt', { stages });
  assert.deepEqual(net.config, cfg);
  const e = await run(net, 112);
  assert.deepEqual(e.shape, [2, 24]);
  for (let b = 0; b < 2; b++) {
    const n = Math.hypot(...(e.data as Float32Array).subarray(b * 24, (b + 1) * 24));
    assert.ok(Math.abs(n - 1) < 1e-5, `row ${b} norm ${n}`);
  }
  // a stage list that does not describe the units is refused
  assert.throws(() => loadIrse(bytes, 'alt', { stages: [{ inChannel: 8, depth: 16, units: 2 }, ...stages.slice(1)] }), /given stages .* do not match the 6 units/);

  // plain IR units, BatchNorm1d(affine=False), 224 input (Linear over C*14*14)
  const cfg2 = { ...IR_SE50, mode: 'ir' as const, affine: false, inputSize: 224, stem: 16, embedding: 20,
    stages: [{ inChannel: 16, depth: 16, units: 1 }, { inChannel: 16, depth: 32, units: 3 }, { inChannel: 32, depth: 48, units: 2 }, { inChannel: 48, depth: 64, units: 1 }] };
  const net2 = loadIrse(saveTorchZip(Object.fromEntries(randomStateDict(irseStateSpec(cfg2), 4))));
  assert.deepEqual(net2.config, cfg2);
  assert.deepEqual((await run(net2, 224)).shape, [2, 20]);
});
