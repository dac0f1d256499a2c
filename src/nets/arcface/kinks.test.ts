import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { explainByKinkFlips } from './kinks.ts';

// loss = sum(R * prelu(w * x + b)), x [1, 2, 3, 3]; element 4 of channel 1 sits ~1e-8 above the kink
const N = 18;
const w = Float32Array.from({ length: N }, (_, i) => 0.5 + 0.1 * i);
const K = 9 + 4;
const x = Float32Array.from({ length: N }, (_, i) => (i === K ? 1e-8 : Math.sin(i + 1)));
const b = Float32Array.from({ length: N }, (_, i) => (i === K ? 0 : 0.01 * i));
const R = Float32Array.from({ length: N }, (_, i) => Math.cos(3 * i));
const slope = Float32Array.of(0.25, 0.1);

function build(g: G.Graph) {
  const xi = g.input('x', [1, 2, 3, 3]);
  const pre = G.add(G.mul(xi, g.constant(w, [1, 2, 3, 3])), g.constant(b, [1, 2, 3, 3]));
  const post = G.prelu(pre, g.constant(slope, [2]));
  const loss = G.reduceSum(G.mul(post, g.constant(R, [1, 2, 3, 3])));
  return { xi, pre, loss, wrt: xi, sites: [{ name: 'act', pre, post, slope }] };
}

test('kinks: a gradient that differs only by the side of a near-zero pre-activation is explained, nothing else is', async () => {
  const { xi, pre, loss } = build(new G.Graph());
  const [gx] = G.grad(loss, [xi]);
  const r = await evaluate({ gx, pre }, { x });
  const got = r.gx.data as Float32Array;
  assert.ok((r.pre.data as Float32Array)[K] > 0 && (r.pre.data as Float32Array)[K] < 1e-6);
  // the reference took the negative side at K: derivative slope[1] instead of 1
  const ref = Float32Array.from(got);
  ref[K] = w[K] * slope[1] * R[K];
  const feeds = { x: { data: x, shape: [1, 2, 3, 3] } };
  const ex = await explainByKinkFlips({ build, feeds, got, ref, atol: 1e-7 });
  assert.ok(ex, 'explained');
  assert.deepEqual(ex.flips.map((f) => [f.site, f.index]), [['act', K]]);
  assert.ok(ex.maxAbs <= 1e-7);
  // a difference anywhere else (or of another size) is not
  const wrong = Float32Array.from(ref); wrong[2] += 1e-3;
  assert.equal(await explainByKinkFlips({ build, feeds, got, ref: wrong, atol: 1e-7 }), null);
  const wrongSize = Float32Array.from(got); wrongSize[K] *= 0.5;
  assert.equal(await explainByKinkFlips({ build, feeds, got, ref: wrongSize, atol: 1e-7 }), null);
});
