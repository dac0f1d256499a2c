// The trainers' loss builders (clip.ts, identity.ts, latent.ts, masks.ts): values against
// host-side formulas, the official resize generalised to other sizes, and detached targets
// (no gradient reaches x through f(x) / E_I(x) / masks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { upsamplePoolMatrix } from '../graph/ops/resample.ts';
import { ClipModel } from '../nets/clip/clip.ts';
import { loadIrse, idFeatures } from '../nets/arcface/irse.ts';
import { loadParsenet } from '../nets/parsenet/unet.ts';
import { clipLossFeatures, clipLossResize, clipTextLoss, embeddingFeatures, ffclipEmbeddingInput, ffclipEmbeddingLoss, imageEmbeddingLoss } from './clip.ts';
import { identityLoss, identitySimilarity } from './identity.ts';
import { latentL1, latentL2 } from './latent.ts';
import { defaultParserSize, parseMasks } from './masks.ts';
import { TINY } from '../train/testing.ts';

function wave(n: number, a: number, b: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * a + b) * 0.8);
}
const clip = ClipModel.load(TINY.clip);

test('CLIP-loss resize: Upsample(7) + AvgPool(S/32) for 224, generalised by gcd(S, R)', async () => {
  // the official operator for every multiple of 32, as the existing 1024 fixture tests it
  for (const S of [32, 64, 256, 1024]) {
    const g = new G.Graph();
    const x = g.input('x', [1, 3, S, S]);
    const y = clipLossResize(x, 224);
    assert.deepEqual(y.shape, [1, 3, 224, 224]);
    const Ah = (y.node!.inputs[0].kind === 'const' ? y.node!.inputs[0] : y.node!.inputs[1]).data as Float32Array;
    const want = upsamplePoolMatrix(S, 7, S / 32);
    assert.equal(Ah.length, want.length, `S = ${S}`);
    Ah.forEach((v, i) => assert.equal(v, want[i]));
  }
  // 32 px: a pure 7x nearest upsample
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 32, 32]);
  const v = wave(3 * 32 * 32, 0.37, 0.1);
  const r = await evaluate({ y: clipLossResize(x, 224) }, { x: v });
  const y = r.y.data as Float32Array;
  for (const [c, i, j] of [[0, 0, 0], [1, 100, 223], [2, 223, 57]]) assert.equal(y[c * 224 * 224 + i * 224 + j], v[c * 1024 + Math.floor(i / 7) * 32 + Math.floor(j / 7)]);
  // another CLIP resolution: 64 -> 336 (gcd 16: Upsample(21), AvgPool(4))
  assert.deepEqual(clipLossResize(g.input('z', [1, 3, 64, 64]), 336).shape, [1, 3, 336, 336]);
});

test('CLIP text loss = 1 - exp(logit_scale) cos / 100 per sample, mean or sum over the batch', async () => {
  const g = new G.Graph();
  const x = g.input('x', [2, 3, 32, 32]);
  const t = g.input('t', [2, clip.config.embedDim]);
  const p = clip.params(g);
  const f = clipLossFeatures(clip, p, x);
  const r = await evaluate({ f, mean: clipTextLoss(clip, p, x, t, 'mean'), sum: clipTextLoss(clip, p, x, t, 'sum') }, { x: wave(2 * 3 * 1024, 0.11, 0.3), t: wave(2 * clip.config.embedDim, 0.7, 1) });
  const fv = r.f.data as Float32Array; const tv = wave(2 * clip.config.embedDim, 0.7, 1);
  const E = clip.config.embedDim;
  const scale = Math.exp(clip.weights.get('logit_scale')!.data[0]) / 100;
  let want = 0;
  for (let b = 0; b < 2; b++) {
    let d = 0, na = 0, nb = 0;
    for (let i = 0; i < E; i++) { const a = fv[b * E + i]; const c = tv[b * E + i]; d += a * c; na += a * a; nb += c * c; }
    want += 1 - (scale * d) / Math.sqrt(na * nb);
  }
  assert.ok(Math.abs((r.sum.data as Float32Array)[0] - want) < 1e-5);
  assert.ok(Math.abs((r.mean.data as Float32Array)[0] - want / 2) < 1e-5);
});

test('latent losses: MSE(w_hat, w) and mean |w_hat - w|', async () => {
  const g = new G.Graph();
  const a = g.input('a', [2, 3, 4]); const b = g.input('b', [2, 3, 4]);
  const av = wave(24, 0.3, 0); const bv = wave(24, 0.5, 1);
  const r = await evaluate({ l2: latentL2(a, b), l1: latentL1(a, b) }, { a: av, b: bv });
  let s2 = 0, s1 = 0;
  for (let i = 0; i < 24; i++) { s2 += (av[i] - bv[i]) ** 2; s1 += Math.abs(av[i] - bv[i]); }
  assert.ok(Math.abs((r.l2.data as Float32Array)[0] - s2 / 24) < 1e-6);
  assert.ok(Math.abs((r.l1.data as Float32Array)[0] - s1 / 24) < 1e-6);
});

test('targets are detached: identity, FFCLIP embedding and image-embedding losses give x no gradient', async () => {
  const arc = loadIrse(TINY.arcface);
  const g = new G.Graph();
  const xHat = g.input('xHat', [1, 3, 32, 32]); const x = g.input('x', [1, 3, 32, 32]);
  const target = g.input('target', [1, clip.config.embedDim]);
  const p = clip.params(g);
  const lid = identityLoss(arc, xHat, x);
  const lemb = ffclipEmbeddingLoss(clip, p, xHat, x);
  const limg = imageEmbeddingLoss(clip, p, xHat, target);
  const [gxHat, gx, gt] = G.grad(G.add(G.add(lid, lemb), limg), [xHat, x, target]);
  const ids = identitySimilarity(arc, xHat, x);
  const fx = idFeatures(arc, x); const fxh = idFeatures(arc, xHat);
  const r = await evaluate({ gxHat, gx, gt, lid, ids, fx, fxh }, { xHat: wave(3072, 0.21, 0), x: wave(3072, 0.23, 0.5), target: wave(clip.config.embedDim, 0.9, 0) });
  assert.ok((r.gx.data as Float32Array).every((v) => v === 0), 'x gets no gradient');
  assert.ok((r.gt.data as Float32Array).every((v) => v === 0), 'the image-embedding target gets no gradient');
  assert.ok((r.gxHat.data as Float32Array).some((v) => v !== 0));
  // L_id = 1 - <f(x_hat), f(x)> and IDS = <f(x_hat), f(x)>
  const a = r.fx.data as Float32Array; const b = r.fxh.data as Float32Array;
  const dot = a.reduce((s, v, i) => s + v * b[i], 0);
  assert.ok(Math.abs((r.lid.data as Float32Array)[0] - (1 - dot)) < 1e-5);
  assert.ok(Math.abs((r.ids.data as Float32Array)[0] - dot) < 1e-5);
});

test('FFCLIP embedding input: bicubic align_corners resize, no normalisation; HairCLIP embedding path pools', () => {
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 64, 64]);
  assert.deepEqual(ffclipEmbeddingInput(x, 224).shape, [1, 3, 224, 224]);
  assert.deepEqual(embeddingFeatures(clip, clip.params(g), x).shape, [1, clip.config.embedDim]);
});

test('parser masks: one pass gives hair and non-hair, complementary 0/1, detached; official 512 at 1024', async () => {
  assert.equal(defaultParserSize(1024), 512);
  assert.equal(defaultParserSize(64), 32);
  assert.equal(defaultParserSize(32), 16);
  const net = loadParsenet(TINY.parser);
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 64, 64]);
  const m = parseMasks(net, x);
  assert.equal(m.hair.node!.op.name, 'StopGradient');
  const [gx] = G.grad(G.reduceSum(G.mul(G.add(m.hair, m.bg), x)), [x]);
  const r = await evaluate({ hair: m.hair, bg: m.bg, gx }, { x: wave(3 * 64 * 64, 0.05, 0.2) });
  const h = r.hair.data as Float32Array; const b = r.bg.data as Float32Array;
  h.forEach((v, i) => { assert.ok(v === 0 || v === 1); assert.equal(v + b[i], 1); });
  assert.ok((r.gx.data as Float32Array).every((v) => v === 1), 'only the explicit x term carries gradient');
});
