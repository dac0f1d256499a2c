// Real-size smoke runs: each official configuration, with random weights laid out exactly as the
// official checkpoint (the spec the key-list tests pin down), loads, validates and runs at its
// real input size. e4e (267M parameters, ~1 GB of float32) runs only with CLIPMAPPER_SLOW=1
// (`npm run test:slow`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { randomStateDict } from './testing.ts';
import { IR_SE50, idFeatures, irseStateSpec, loadIrse } from './arcface/irse.ts';
import { PARSENET_HAIRCLIP, hairMask, loadParsenet, unetStateSpec } from './parsenet/unet.ts';
import { BISENET_FACE, bisenetInput, bisenetLogits, bisenetStateSpec, loadBisenet } from './bisenet/bisenet.ts';
import { E4E_FFHQ, e4eEncoderSpec, e4eEncode, inferE4eConfig, e4eInputSize } from './e4e/e4e.ts';
import { Weights, validateStateDict } from './common.ts';

const SLOW = process.env.CLIPMAPPER_SLOW === '1';

function image(n: number, size: number): Float32Array {
  const d = new Float32Array(n * 3 * size * size);
  for (let i = 0; i < d.length; i++) d[i] = Math.sin(i * 0.0137) * Math.cos(i * 0.00071);
  return d;
}
const finite = (a: Float32Array) => a.every((v) => Number.isFinite(v));

test('real size: IR-SE50 ID features of a 1024 image are unit vectors [1, 512]', async () => {
  const net = loadIrse(randomStateDict(irseStateSpec(IR_SE50), 3));
  assert.deepEqual(net.config, IR_SE50);
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 1024, 1024]);
  const f = idFeatures(net, x);
  assert.deepEqual(f.shape, [1, 512]);
  const r = await evaluate({ f }, { x: image(1, 1024) });
  const v = r.f.data as Float32Array;
  assert.ok(finite(v));
  assert.ok(Math.abs(v.reduce((s, t) => s + t * t, 0) - 1) < 1e-4);
});

test('real size: parsenet hair mask of a 1024 image through the 512 parser', async () => {
  const net = loadParsenet(randomStateDict(unetStateSpec(PARSENET_HAIRCLIP), 4));
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 1024, 1024]);
  const m = hairMask(net, x);
  assert.deepEqual(m.shape, [1, 1, 1024, 1024]);
  const r = await evaluate({ m }, { x: image(1, 1024) });
  assert.ok((r.m.data as Float32Array).every((v) => v === 0 || v === 1));
});

test('real size: BiSeNet logits [1, 19, 512, 512] from a 1024 image', async () => {
  const net = loadBisenet(randomStateDict(bisenetStateSpec(BISENET_FACE), 5));
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 1024, 1024]);
  const logits = bisenetLogits(net, bisenetInput(x, { range: 'signed' }));
  assert.deepEqual(logits.shape, [1, 19, 512, 512]);
  const r = await evaluate({ logits }, { x: image(1, 1024) });
  assert.ok(finite(r.logits.data as Float32Array));
});

test('real size: e4e codes [1, 18, 512] from a 256 image', { skip: SLOW ? false : 'set CLIPMAPPER_SLOW=1 (1 GB of weights)' }, async () => {
  const sd = randomStateDict(e4eEncoderSpec(E4E_FFHQ), 6);
  const config = inferE4eConfig(sd, { stylegan_size: 1024 });
  validateStateDict('e4e', sd, e4eEncoderSpec(config));
  const net = { config, weights: new Weights('e4e', sd), latentAvg: null, startFromLatentAvg: false, opts: {}, decoder: new Map() };
  const g = new G.Graph();
  const x = g.input('x', [1, 3, e4eInputSize(config), e4eInputSize(config)]);
  const codes = e4eEncode(net, x);
  assert.deepEqual(codes.shape, [1, 18, 512]);
  const r = await evaluate({ codes }, { x: image(1, 256) });
  assert.ok(finite(r.codes.data as Float32Array));
});
