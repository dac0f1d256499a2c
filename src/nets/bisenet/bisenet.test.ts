import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { f32 } from '../../io/tensor.ts';
import { bareStateDict, readCheckpoint, validateStateDict } from '../common.ts';
import { saveTorchZip } from '../../io/testing.ts';
import { editStateDict, fixturePath, officialKeys, randomStateDict, shapeOnlyStateDict, specAsKeys } from '../testing.ts';
import { formatLine } from '../../verify/compare.ts';
import {
  BISENET_FACE, BISENET_HAIR, BISENET_LABELS, IMAGENET_MEAN, IMAGENET_STD, bisenetForward, bisenetInput, bisenetLabels, bisenetStateSpec,
  inferBisenetConfig, loadBisenet, type BisenetTaps,
} from './bisenet.ts';
import { detect, verify } from './verify.ts';

const DIR = fixturePath('faceparse');
const CKPT = fixturePath('faceparse', 'tiny_bisenet.pt');

test('bisenet: logits, labels, features and the input gradient match every fixture tensor', async () => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  assert.equal(lines.length, 11);
  for (const l of lines) assert.ok(l.pass, formatLine(l));
});

test('bisenet: the reduced config (every width / 16) is inferred from the keys', () => {
  const c = inferBisenetConfig(bareStateDict(readCheckpoint(CKPT), 'tiny'));
  assert.deepEqual(c, {
    stem: 4, layers: [{ width: 4, blocks: 2 }, { width: 8, blocks: 2 }, { width: 16, blocks: 2 }, { width: 32, blocks: 2 }],
    arm: 8, ffm: 16, ffmMid: 4, outMid: 16, out16Mid: 4, out32Mid: 4, nClasses: 19,
  });
});

test('bisenet: the real-size builder gives exactly the official keys, shapes and order; labels', () => {
  const official = officialKeys('faceparse', 'official_bisenet_keys.json');
  assert.deepEqual(specAsKeys(bisenetStateSpec(BISENET_FACE)), official);
  assert.deepEqual(inferBisenetConfig(shapeOnlyStateDict(official)), BISENET_FACE);
  validateStateDict('BiSeNet', shapeOnlyStateDict(official.filter((k) => !k.key.endsWith('num_batches_tracked'))), bisenetStateSpec(BISENET_FACE));
  assert.equal(BISENET_LABELS[BISENET_HAIR], 'hair');
  assert.equal(BISENET_LABELS.length, 19);
});

test('bisenet: state-dict validation names missing, unexpected and mis-shaped keys', () => {
  const sd = bareStateDict(readCheckpoint(CKPT), 'tiny');
  assert.throws(() => loadBisenet(editStateDict(sd, { drop: ['cp.arm16.bn_atten.running_var'] })), /missing 'cp\.arm16\.bn_atten\.running_var'/);
  assert.throws(() => loadBisenet(editStateDict(sd, { set: { 'sp.conv1.conv.weight': f32([1]) } })), /unexpected key 'sp\.conv1\.conv\.weight'/);
  assert.throws(() => loadBisenet(editStateDict(sd, { set: { 'ffm.conv2.weight': f32([16, 3, 1, 1]) } })), /'ffm\.conv2\.weight' has shape \[16, 3, 1, 1\]/);
});

test('bisenet: input preprocessing = pool to the parser size, then ImageNet normalisation', async () => {
  const g = new G.Graph();
  const img = g.input('img', [1, 3, 64, 64]);
  const x = bisenetInput(img, { range: 'signed', size: 32 });
  assert.deepEqual(x.shape, [1, 3, 32, 32]);
  const data = new Float32Array(3 * 64 * 64);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 37) % 101) / 50 - 1;
  const r = await evaluate({ x }, { img: data });
  const out = r.x.data as Float32Array;
  for (const [c, y, xx] of [[0, 0, 0], [1, 5, 7], [2, 31, 31]]) {
    let m = 0;
    for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) m += data[(c * 64 + 2 * y + dy) * 64 + 2 * xx + dx] / 4;
    const want = ((m + 1) / 2 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    assert.ok(Math.abs(out[(c * 32 + y) * 32 + xx] - want) < 1e-5);
  }
});

test('bisenet generality: another width divisor and a non-square input that is not a multiple of 32', async () => {
  // every channel count of BiSeNet(19) divided by 8 (the fixture's patch with another divisor)
  const div = (n: number) => n / 8;
  const cfg = {
    ...BISENET_FACE, stem: div(64), layers: BISENET_FACE.layers.map((l) => ({ width: div(l.width), blocks: l.blocks })),
    arm: div(128), ffm: div(256), ffmMid: div(64), outMid: div(256), out16Mid: div(64), out32Mid: div(64),
  };
  const net = loadBisenet(saveTorchZip(Object.fromEntries(randomStateDict(bisenetStateSpec(cfg), 6)), { root: 'alt_bisenet' }));
  assert.deepEqual(net.config, cfg);
  // 112 x 80: 1/8, 1/16, 1/32 maps are 14x10, 7x5, 4x3, joined by non-integer nearest resizes
  const [H, W] = [112, 80];
  const g = new G.Graph();
  const x = g.input('x', [2, 3, H, W]);
  const taps: BisenetTaps = {};
  const { out, out16, out32 } = bisenetForward(net, x, taps);
  for (const o of [out, out16, out32]) assert.deepEqual(o.shape, [2, 19, H, W]);
  assert.deepEqual(taps.feat8!.shape, [2, 16, 14, 10]);
  assert.deepEqual(taps.feat16!.shape, [2, 32, 7, 5]);
  assert.deepEqual(taps.feat32!.shape, [2, 64, 4, 3]);
  assert.deepEqual(taps.cpFeat16!.shape, [2, 16, 7, 5]);
  assert.deepEqual(taps.ffm!.shape, [2, 32, 14, 10]);
  const r = await evaluate({ out, labels: bisenetLabels(out) }, { x: Float32Array.from({ length: 2 * 3 * H * W }, (_, i) => Math.sin(i * 0.017)) });
  assert.ok((r.out.data as Float32Array).every(Number.isFinite));
  assert.deepEqual(r.labels.shape, [2, H, W]);
});
