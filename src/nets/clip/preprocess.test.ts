import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import { toFloat32Array, type TensorData } from '../../io/tensor.ts';
import { compare, formatLine } from '../../verify/compare.ts';
import { finiteDifferenceCheck } from '../../graph/testing.ts';
import { fixturePath } from '../testing.ts';
import {
  CLIP_MEAN, CLIP_STD, centerCropOffset, clipLossResize, clipNormalize, embeddingResize, hairclipRenorm, photoTransformU8,
  pilBicubicCoeffs, pilResizeBicubicRGB, preprocessPhoto, resizedShortSide,
} from './preprocess.ts';

const ops = (f: string) => readSafetensors(fixturePath('ops', f)).tensors;
const get = (m: Map<string, TensorData>, k: string) => { const t = m.get(k); assert.ok(t, k); return toFloat32Array(t); };

test('clip preprocess: Normalize and the HairCLIP renorm match the ops fixture', async () => {
  const t = ops('clip_norm.safetensors');
  assert.deepEqual([...get(t, 'mean')], CLIP_MEAN.map(Math.fround));
  assert.deepEqual([...get(t, 'std')], CLIP_STD.map(Math.fround));
  const g = new G.Graph('norm');
  const a = g.input('a', [2, 3, 24, 24]); const b = g.input('b', [2, 3, 24, 24]);
  const r = await evaluate({ n: clipNormalize(a), h: hairclipRenorm(b) }, { a: get(t, 'clip_normalize_01.in'), b: get(t, 'hairclip_renorm.in') });
  for (const [got, ref] of [[r.n, 'clip_normalize_01.out'], [r.h, 'hairclip_renorm.out']] as const) {
    const l = compare(ref, got.data as Float32Array, get(t, ref), { atol: 5e-6, rtol: 0 });
    assert.ok(l.pass, formatLine(l));
  }
});

test('clip preprocess: CLIPLoss resize (Upsample 7 + AvgPool 32) and the embedding path at 1024 match the ops fixture', async () => {
  const t = ops('resize.safetensors');
  const u8 = t.get('input_u8')!;
  const one = Float32Array.from(u8.data as Uint8Array, (v) => (v - 128) / 128);
  const S = u8.shape[3];
  // three channels: the fixture's single channel, negated, and halved (each resizes independently)
  const x = new Float32Array(3 * S * S);
  x.set(one); x.set(one.map((v) => -v), S * S); x.set(one.map((v) => v / 2), 2 * S * S);
  const g = new G.Graph('clip-resize');
  const xi = g.input('x', [1, 3, S, S]);
  const r = await evaluate({ loss: clipLossResize(xi), norm: clipLossResize(xi, { normalize: true }), emb: embeddingResize(xi) }, { x });
  assert.deepEqual(r.loss.shape, [1, 3, 224, 224]);
  const ref = get(t, 'clip_loss_resize_1024_to_224');
  const pooled = get(t, 'adaptive_avg_pool_1024_to_224');
  const n = 224 * 224;
  const f = Math.fround;
  const chan = [(v: number) => v, (v: number) => -v, (v: number) => f(v / 2)];
  for (let c = 0; c < 3; c++) {
    const got = (r.loss.data as Float32Array).subarray(c * n, (c + 1) * n);
    const l = compare(`clip_loss_resize c${c}`, got, ref.map(chan[c]), { atol: 1e-6, rtol: 0 });
    assert.ok(l.pass, formatLine(l));
    const renorm = (v: number) => f(f(f(f(v * 0.5) + 0.5) - f(CLIP_MEAN[c])) / f(CLIP_STD[c]));
    const ln = compare(`normalized c${c}`, (r.norm.data as Float32Array).subarray(c * n, (c + 1) * n), ref.map(chan[c]).map(renorm), { atol: 1e-5, rtol: 0 });
    assert.ok(ln.pass, formatLine(ln));
    const le = compare(`embedding c${c}`, (r.emb.data as Float32Array).subarray(c * n, (c + 1) * n), pooled.map(chan[c]).map(renorm), { atol: 1e-5, rtol: 0 });
    assert.ok(le.pass, formatLine(le));
  }
  assert.throws(() => clipLossResize(g.input('bad', [1, 3, 300, 300])), /size 300 does not give 224/);
  assert.throws(() => clipLossResize(g.input('rect', [1, 3, 256, 128])), /square/);
});

test('clip preprocess: torchvision Resize/CenterCrop geometry', () => {
  assert.deepEqual(resizedShortSide(640, 480, 224), [Math.floor((224 * 640) / 480), 224]);
  assert.deepEqual(resizedShortSide(480, 640, 224), [224, Math.floor((224 * 640) / 480)]);
  assert.deepEqual(resizedShortSide(300, 300, 224), [224, 224]);
  // int(round((in - out) / 2)) with Python's round-half-to-even
  assert.equal(centerCropOffset(225, 224), 0);
  assert.equal(centerCropOffset(227, 224), 2);
  assert.equal(centerCropOffset(229, 224), 2);
  assert.equal(centerCropOffset(298, 224), 37);
  assert.throws(() => centerCropOffset(200, 224), /larger than the image/);
});

test('clip preprocess: Pillow bicubic coefficients and the 8-bit resampler', () => {
  for (const [i, o] of [[640, 224], [224, 640], [300, 224], [1000, 7]] as const) {
    const { start, weights } = pilBicubicCoeffs(i, o);
    weights.forEach((k, j) => {
      assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 1) < 1e-12, `row ${j} of ${i}->${o} sums to 1`);
      assert.ok(start[j] >= 0 && start[j] + k.length <= i);
    });
  }
  // a constant image stays constant (the fixed-point weights sum to 1 within rounding)
  const flat = new Uint8Array(37 * 23 * 3).fill(201);
  assert.ok(pilResizeBicubicRGB(flat, 37, 23, 16, 11).every((v) => v === 201));
  // a same-size resize is the identity
  const rnd = Uint8Array.from({ length: 20 * 10 * 3 }, (_, i) => (i * 97) % 256);
  assert.deepEqual(pilResizeBicubicRGB(rnd, 20, 10, 20, 10), rnd);
  assert.throws(() => pilResizeBicubicRGB(rnd, 21, 10, 5, 5), /bytes for 21x10/);
});

test('clip preprocess: the graph photo transform agrees with the exact 8-bit PIL path to uint8 rounding', async () => {
  const W = 300; const H = 260;
  // a smooth image with some texture
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) {
    rgb[(y * W + x) * 3 + c] = Math.round(127.5 + 100 * Math.sin(x / (9 + c * 3)) * Math.cos(y / 13) + 20 * Math.sin(x * y / 500));
  }
  const exact = photoTransformU8(rgb, W, H);
  const chw = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) for (let i = 0; i < H * W; i++) chw[c * H * W + i] = rgb[i * 3 + c] / 255;
  const g = new G.Graph('photo');
  const r = await evaluate({ y: preprocessPhoto(g.input('x', [1, 3, H, W])) }, { x: chw });
  assert.deepEqual(r.y.shape, [1, 3, 224, 224]);
  // two uint8 roundings (each <= 0.5/255 plus clamping) separate the two: <= ~1/255 / std
  const l = compare('photo', r.y.data as Float32Array, exact, { atol: 1.5 / 255 / Math.min(...CLIP_STD), rtol: 0 });
  assert.ok(l.pass, formatLine(l));
  // and it is differentiable (resample + crop + normalise are linear)
  const fd = await finiteDifferenceCheck([[1, 3, 40, 30]], ([x]) => preprocessPhoto(x, 24));
  assert.ok(fd.relErr < 1e-3, `FD ${fd.relErr}`);
});
