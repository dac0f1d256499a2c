// The HairCLIP parser losses on their own (masks given), against the formulas of the official
// code; the full pipeline with the parser is checked against the fixtures in src/nets/parsenet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { readFixture } from '../nets/common.ts';
import { fixturePath } from '../nets/testing.ts';
import { compare, formatLine } from '../verify/compare.ts';
import { avgLabLoss, imageToLab, maskedAverage, rgbToXyz, xyzToLab } from './color.ts';
import { backgroundLoss } from './parsing.ts';

test('Lab conversion and its gradient match the fixture (linear branches and negative XYZ included)', async () => {
  const f = readFixture(fixturePath('parsenet'), 'losses.safetensors');
  const rgb = f.tensors.get('lab.rgb')!; const R = f.tensors.get('lab.R')!;
  const g = new G.Graph();
  const ri = g.input('rgb', rgb.shape); const Ri = g.input('R', R.shape);
  const lab = xyzToLab(rgbToXyz(ri));
  const [gr] = G.grad(G.reduceSum(G.mul(lab, Ri)), [ri]);
  const r = await evaluate({ lab, gr }, { rgb: rgb.data as Float32Array, R: R.data as Float32Array });
  for (const l of [
    compare('lab.out', r.lab.data as Float32Array, f.tensors.get('lab.out')!.data as Float32Array, { atol: 5e-4, rtol: 0 }),
    compare('lab.grad.rgb', r.gr.data as Float32Array, f.tensors.get('lab.grad.rgb')!.data as Float32Array, { atol: 2e-2, rtol: 0 }),
  ]) assert.ok(l.pass, formatLine(l));
  assert.ok((r.gr.data as Float32Array).every(Number.isFinite));
});

test('background loss = mean over every element of ((x - x_hat) * m)^2 with m = both masks', async () => {
  const shape = [1, 3, 4, 4];
  const x = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i));
  const xh = Float32Array.from({ length: 48 }, (_, i) => Math.cos(i));
  const mx = Float32Array.from({ length: 16 }, (_, i) => (i % 3 ? 1 : 0));
  const mxh = Float32Array.from({ length: 16 }, (_, i) => (i % 5 ? 1 : 0));
  let want = 0;
  for (let c = 0; c < 3; c++) for (let p = 0; p < 16; p++) {
    const m = mx[p] + mxh[p] === 2 ? 1 : 0;
    want += ((x[c * 16 + p] - xh[c * 16 + p]) * m) ** 2;
  }
  want /= 48;
  const g = new G.Graph();
  const loss = backgroundLoss(g.input('x', shape), g.input('xh', shape), g.input('mx', [1, 1, 4, 4]), g.input('mxh', [1, 1, 4, 4]));
  const r = await evaluate({ loss }, { x, xh, mx, mxh });
  assert.ok(Math.abs((r.loss.data as Float32Array)[0] - want) < 1e-6);
});

test('avgLab: an empty hair mask averages to 0 (no NaN), and the loss is the L1 of the averages', async () => {
  const shape = [2, 3, 2, 2];
  const fake = Float32Array.from({ length: 24 }, (_, i) => 0.9 * Math.sin(i + 1));
  const real = Float32Array.from({ length: 24 }, (_, i) => 0.9 * Math.cos(i + 1));
  const mf = Float32Array.of(1, 0, 1, 1, 0, 0, 0, 0); // image 1: no hair
  const mr = Float32Array.of(0, 1, 1, 0, 1, 1, 1, 1);
  const g = new G.Graph();
  const fi = g.input('fake', shape); const ri = g.input('real', shape);
  const mfi = g.input('mf', [2, 1, 2, 2]); const mri = g.input('mr', [2, 1, 2, 2]);
  const avgF = maskedAverage(imageToLab(fi), mfi);
  const avgR = maskedAverage(imageToLab(ri), mri);
  const loss = avgLabLoss(fi, ri, mfi, mri);
  const [gf] = G.grad(loss, [fi]);
  const r = await evaluate({ avgF, avgR, loss, gf }, { fake, real, mf, mr });
  const aF = r.avgF.data as Float32Array; const aR = r.avgR.data as Float32Array;
  assert.deepEqual([...aF.slice(3)], [0, 0, 0]);
  let l1 = 0;
  for (let i = 0; i < 6; i++) l1 += Math.abs(aF[i] - aR[i]) / 6;
  assert.ok(Math.abs((r.loss.data as Float32Array)[0] - l1) < 1e-4);
  assert.ok((r.gf.data as Float32Array).every(Number.isFinite));
  assert.ok((r.gf.data as Float32Array).slice(12).every((v) => v === 0)); // no hair in fake[1]: no gradient
});
