import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
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

// Through the graph's own PReLU and autograd (what the arcface / e4e verifiers run):
// loss = sum(R * prelu(w * x + b)), x [1, 2, 3, 3]; element K of channel 1 sits within rounding of
// its kink (pre-activation w (1 + 2^-22) - w ~ 4e-7), every other element is well away from it.
test('kinkSpread + compareWithin through G.prelu: a flipped kink passes, a wrong gradient fails', async () => {
  const N = 18; const shape = [1, 2, 3, 3];
  const K = 9 + 4;
  const w = Float32Array.from({ length: N }, (_, i) => 0.5 + 0.1 * i);
  const x = Float32Array.from({ length: N }, (_, i) => (i === K ? 1 + 2 ** -22 : Math.sin(i + 1)));
  const b = Float32Array.from({ length: N }, (_, i) => (i === K ? -w[K] : 0.01 * i));
  x[3] = 0; // a zero input: moved by the floor, no kink behind it
  const R = Float32Array.from({ length: N }, (_, i) => Math.cos(3 * i));
  const slope = Float32Array.of(0.25, 0.1);
  const g = new G.Graph('kinks-prelu');
  const xi = g.input('x', shape);
  const pre = G.add(G.mul(xi, g.constant(w, shape)), g.constant(b, shape));
  const loss = G.reduceSum(G.mul(G.prelu(pre, g.constant(slope, [2])), g.constant(R, shape)));
  const [gx] = G.grad(loss, [xi]);
  const gradAt = async (v: Float32Array) => [(await evaluate({ gx }, { x: { data: v, shape } })).gx.data as Float32Array];
  const [got] = await gradAt(x);
  const [spread] = await kinkSpread(gradAt, x, [got]);
  // the jump at K is (1 - slope) w R in full; elsewhere nothing beyond rounding
  assert.ok(Math.abs(spread[K] - Math.abs((1 - slope[1]) * w[K] * R[K])) < 1e-6, `spread at K ${spread[K]}`);
  for (let i = 0; i < N; i++) if (i !== K) assert.ok(spread[i] < 1e-6, `spread at ${i}: ${spread[i]}`);
  // a reference that took the other side of the kink at K
  const ours = got[K];
  const otherSide = Math.abs(ours - w[K] * R[K]) < 1e-6 ? w[K] * slope[1] * R[K] : w[K] * R[K];
  const ref = Float32Array.from(got); ref[K] = otherSide;
  assert.equal(compareWithin('g', got, ref, 1e-7, new Float32Array(N)).pass, false);
  const line = compareWithin('g', got, ref, 1e-7, spread);
  assert.ok(line.pass, line.rule);
  assert.match(line.rule, /kink spread at 1 of 18/);
  // genuinely wrong gradients fail: an error away from the kink, or a wrong size at the kink
  const wrong = Float32Array.from(ref); wrong[2] += 1e-3;
  assert.equal(compareWithin('g', got, wrong, 1e-7, spread).pass, false);
  const wrongSize = Float32Array.from(got); wrongSize[K] = ours + 2 * (otherSide - ours);
  assert.equal(compareWithin('g', got, wrongSize, 1e-7, spread).pass, false);
});

test('kinkSpread moves zero inputs too (floor at 1e-3 of max |x|)', async () => {
  // d/dx relu(x1 + x2) with x = (1, 0, 0): the unit sits on its kink and only the zeros can move it
  const gradF = (v: ArrayLike<number>) => { const on = v[1] + v[2] > 0 ? 1 : 0; return Float32Array.of(0, on, on); };
  const x = Float32Array.of(1, 0, 0);
  const s = signPattern(3);
  assert.notEqual(s[1] + s[2], 0); // the pattern moves x1 + x2 (it is fixed: [1, -1, -1])
  const [sp] = await kinkSpread(async (v) => [gradF(v)], x, [gradF(x)]);
  assert.deepEqual(Array.from(sp), [0, 1, 1]);
});
