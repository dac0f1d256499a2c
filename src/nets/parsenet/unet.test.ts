import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { f32 } from '../../io/tensor.ts';
import { bareStateDict, readCheckpoint, validateStateDict } from '../common.ts';
import { saveTorchZip } from '../../io/testing.ts';
import { editStateDict, fixturePath, officialKeys, randomStateDict, shapeOnlyStateDict, specAsKeys } from '../testing.ts';
import { formatLine } from '../../verify/compare.ts';
import { PARSENET_HAIRCLIP, PARSENET_LABELS, PARSENET_HAIR, hairMask, inferUnetConfig, loadParsenet, parserInput, unetForward, unetStateSpec } from './unet.ts';
import { detect, verify } from './verify.ts';

const DIR = fixturePath('parsenet');

test('parsenet: forward, labels, masks, VJP and the HairCLIP losses match every fixture tensor', async () => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  assert.equal(lines.length, 22);
  for (const l of lines) assert.ok(l.pass, formatLine(l));
});

test('parsenet: the reduced fixture config (feature_scale 16) is inferred from the keys', () => {
  const sd = bareStateDict(readCheckpoint(fixturePath('parsenet', 'tiny_parsenet.pt')), 'tiny');
  assert.deepEqual(inferUnetConfig(sd), { filters: [4, 8, 16, 32, 64], inChannels: 3, nClasses: 19 });
});

test('parsenet: the real-size builder gives exactly the official keys, shapes and order; labels', () => {
  const official = officialKeys('parsenet', 'official_parsenet_keys.json');
  assert.deepEqual(specAsKeys(unetStateSpec(PARSENET_HAIRCLIP)), official);
  const full = shapeOnlyStateDict(official);
  assert.deepEqual(inferUnetConfig(full), PARSENET_HAIRCLIP);
  const noCounters = shapeOnlyStateDict(official.filter((k) => !k.key.endsWith('num_batches_tracked')));
  assert.equal(noCounters.size, 118);
  validateStateDict('parsenet', noCounters, unetStateSpec(PARSENET_HAIRCLIP));
  assert.equal(PARSENET_LABELS[PARSENET_HAIR], 'hair');
  assert.equal(PARSENET_LABELS.length, 19);
});

test('parsenet: state-dict validation names missing, unexpected and mis-shaped keys', () => {
  const sd = bareStateDict(readCheckpoint(fixturePath('parsenet', 'tiny_parsenet.pt')), 'tiny');
  assert.throws(() => loadParsenet(editStateDict(sd, { drop: ['up_concat2.up.bias'] })), /missing 'up_concat2\.up\.bias'/);
  assert.throws(() => loadParsenet(editStateDict(sd, { set: { 'module.final.weight': f32([1]) } })), /unexpected key 'module\.final\.weight'/);
  assert.throws(() => loadParsenet(editStateDict(sd, { set: { 'conv3.conv2.1.running_var': f32([3]) } })), /'conv3\.conv2\.1\.running_var' has shape \[3\]/);
  assert.throws(() => loadParsenet(editStateDict(sd, { drop: [...sd.keys()].filter((k) => k.includes('.1.running_mean') || k.includes('conv1.1') || k.includes('conv2.1')) })), /BatchNorm/);
});

test('parsenet: a 1024 image goes 1024 -> 512 -> 1024; the mask is 0/1 and carries no gradient', async () => {
  const net = loadParsenet(fixturePath('parsenet', 'tiny_parsenet.pt'));
  const S = 1024;
  const img = new Float32Array(3 * S * S);
  for (let c = 0; c < 3; c++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
    img[(c * S + y) * S + x] = Math.tanh(2 * Math.sin((x + 1) * (c + 1) / 97) * Math.cos(y / 61));
  }
  const g = new G.Graph();
  const xi = g.input('x', [1, 3, S, S]);
  const m = hairMask(net, xi);
  assert.deepEqual(m.shape, [1, 1, S, S]);
  // d/dx sum(x * mask(x)) = mask: the mask acts as a constant (HairCLIP detaches the logits)
  const [gx] = G.grad(G.reduceSum(G.mul(xi, m)), [xi]);
  const r = await evaluate({ m, gx }, { x: img });
  const md = r.m.data as Float32Array; const gd = r.gx.data as Float32Array;
  let ones = 0;
  for (let i = 0; i < md.length; i++) {
    assert.ok(md[i] === 0 || md[i] === 1);
    ones += md[i];
    // nearest replication: each 2x2 block is constant
    const y = Math.floor(i / S); const x = i % S;
    assert.equal(md[i], md[(y & ~1) * S + (x & ~1)]);
  }
  assert.ok(ones > 0 && ones < md.length, 'this image should be partly hair for the tiny parser');
  for (let c = 0; c < 3; c++) for (let i = 0; i < S * S; i += 4099) assert.equal(gd[c * S * S + i], md[i]);
});

test('parsenet generality: another feature_scale and sizes (unet(feature_scale=8), parser 64, image 3x) load and run', async () => {
  // unet(feature_scale=8): filters [8, 16, 32, 64, 128], written as torch.save(state_dict()) would
  const cfg = { filters: [8, 16, 32, 64, 128] as [number, number, number, number, number], inChannels: 3, nClasses: 19 };
  const bytes = saveTorchZip(Object.fromEntries(randomStateDict(unetStateSpec(cfg), 5)), { root: 'alt_parsenet' });
  const net = loadParsenet(bytes);
  assert.deepEqual(net.config, cfg);
  const P = 64; const S = 3 * P;
  const img = Float32Array.from({ length: 3 * S * S }, (_, i) => Math.tanh(Math.sin(i * 0.013) + Math.cos(i * 0.0071)));
  const g = new G.Graph();
  const xi = g.input('x', [1, 3, S, S]);
  const logits = unetForward(net, parserInput(xi, P));
  const mask = hairMask(net, xi, { parserSize: P });
  assert.deepEqual(logits.shape, [1, 19, P, P]);
  assert.deepEqual(mask.shape, [1, 1, S, S]);
  const r = await evaluate({ logits, mask }, { x: img });
  assert.ok((r.logits.data as Float32Array).every(Number.isFinite));
  // magnify 64 -> 192 replicates each parser pixel 3x3: values stay 0/1 and blocks are constant
  const md = r.mask.data as Float32Array;
  for (let i = 0; i < md.length; i++) {
    assert.ok(md[i] === 0 || md[i] === 1);
    const y = Math.floor(i / S); const x = i % S;
    assert.equal(md[i], md[(y - (y % 3)) * S + (x - (x % 3))]);
  }
  // the official unetUp cannot concatenate when the input is not a multiple of 16
  const g2 = new G.Graph();
  assert.throws(() => unetForward(net, g2.input('x', [1, 3, 40, 40])), /use an input size divisible by 16/);
});
