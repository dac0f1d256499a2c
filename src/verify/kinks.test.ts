import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareWithin, kinkSpread, signPattern } from './kinks.ts';

// d/dx sum(relu(A x)) = A^T [A x > 0]: piecewise constant, jumping where a row of A x crosses 0
const A = [[1, -2, 0.5], [0.3, 0.3, -1], [2, 1, 1], [-1, 0.5, 0.25]];
const grad = (x: ArrayLike<number>): Float32Array => {
  const g = new Float32Array(3);
  for (const row of A) {
    const pre = row[0] * x[0] + row[1] * x[1] + row[2] * x[2];
    if (pre > 0) row.forEach((a, j) => { g[j] += a; });
  }
  return g;
};

test('kinkSpread: zero away from kinks, the full jump where a unit sits on its kink', async () => {
  const smooth = Float32Array.of(0.7, -0.2, 0.4);
  const [s0] = await kinkSpread(async (x) => [grad(x)], smooth, [grad(smooth)]);
  assert.ok(s0.every((v) => v === 0));
  // row 0 pre-activation = 1e-9: within any rounding of 0
  const onKink = Float32Array.of(1, 0.5, 1e-9 / 0.5);
  const g0 = grad(onKink);
  const [s] = await kinkSpread(async (x) => [grad(x)], onKink, [g0]);
  assert.deepEqual(Array.from(s), [1, 2, 0.5]);
  // a reference that took the other branch at that unit passes only with the spread
  const ref = g0.map((v, j) => v - A[0][j]);
  assert.equal(compareWithin('g', g0, ref, 1e-6, new Float32Array(3)).pass, false);
  assert.equal(compareWithin('g', g0, ref, 1e-6, s).pass, true);
  // a reference that is wrong elsewhere still fails
  assert.equal(compareWithin('g', g0, ref.map((v) => v * 1.01), 1e-6, s).pass, false);
});

test('signPattern is a fixed +-1 pattern', () => {
  const s = signPattern(1000);
  assert.ok(s.every((v) => v === 1 || v === -1));
  assert.deepEqual(Array.from(signPattern(8)), Array.from(signPattern(8)));
  assert.ok(Math.abs(s.reduce((a, b) => a + b, 0)) < 100);
});
