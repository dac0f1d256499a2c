import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { makeVjpPair } from './vjp.ts';

// y = x * w + sum(x^2), z = w^2 (per element): simple enough to differentiate by hand
const x = Float32Array.from([0.5, -1, 2, 3]);
const w = Float32Array.from([1.5, 2, -0.25, 1]);

test('vjp: positional pair — forward outputs and input cotangents (recomputed forward), int inputs get null', async () => {
  const pair = makeVjpPair(([xi, wi, k]) => {
    const y = G.add(G.mul(xi, wi), G.reduceSum(G.mul(xi, xi)));
    const z = G.add(G.mul(wi, wi), G.cast(k, 'float32'));
    return [y, z];
  }, [[4], { shape: [4], name: 'w' }, { shape: [4], dtype: 'int32', name: 'k' }], { name: 'toy' });
  assert.deepEqual(pair.inputs.map((i) => [i.name, i.differentiable]), [['x0', true], ['w', true], ['k', false]]);
  assert.deepEqual(pair.outputs.map((o) => o.shape), [[4], [4]]);
  const k = Int32Array.from([1, 2, 3, 4]);
  const [y, z] = await pair.forward([x, w, k]);
  const s = x.reduce((a, v) => a + v * v, 0);
  assert.deepEqual([...(y.data as Float32Array)], [...x].map((v, i) => Math.fround(Math.fround(v * w[i]) + s)));
  assert.deepEqual([...(z.data as Float32Array)], [...w].map((v, i) => Math.fround(v * v) + k[i]));
  const gy = Float32Array.from([1, -2, 0.5, 3]); const gz = Float32Array.from([2, 0, 1, -1]);
  const [gx, gw, gk] = await pair.vjp([x, w, k], [gy, gz]);
  const sumGy = gy.reduce((a, b) => a + b, 0);
  [...(gx!.data as Float32Array)].forEach((v, i) => assert.ok(Math.abs(v - (gy[i] * w[i] + 2 * x[i] * sumGy)) < 1e-5, `gx[${i}]`));
  [...(gw!.data as Float32Array)].forEach((v, i) => assert.ok(Math.abs(v - (gy[i] * x[i] + 2 * w[i] * gz[i])) < 1e-5, `gw[${i}]`));
  assert.equal(gk, null);
  // a null output cotangent counts as zero
  const [gx2] = await pair.vjp([x, w, k], [null, gz]);
  assert.ok([...(gx2!.data as Float32Array)].every((v) => v === 0));
  await assert.rejects(pair.vjp([x, w, k], [gy]), /1 cotangents given, expected 2/);
  await assert.rejects(pair.forward([x, w]), /2 inputs given, expected 3/);
});

test('vjp: named pair — builder declares inputs, wrt and differentiate select what the VJP session computes', async () => {
  const pair = makeVjpPair({
    name: 'named',
    build: (g) => {
      const xi = g.input('x', [4]); const wi = g.input('w', [4]); const alpha = g.input('alpha', []);
      const delta = G.mul(xi, wi);
      return { delta, out: G.add(xi, G.mul(delta, alpha)) };
    },
    wrt: ['x', 'w'],
    differentiate: ['delta'],
  });
  const f = await pair.forward({ x, w, alpha: Float32Array.of(0.1) });
  assert.deepEqual([...(f.delta.data as Float32Array)], [...x].map((v, i) => Math.fround(v * w[i])));
  assert.equal(f.out.data.length, 4);
  // alpha does not reach delta, so the VJP session does not need it
  const gd = Float32Array.from([1, 2, 3, 4]);
  const r = await pair.vjp({ x, w }, { delta: gd });
  assert.deepEqual([...(r.outputs.delta.data as Float32Array)], [...(f.delta.data as Float32Array)]);
  assert.deepEqual([...(r.grads.x.data as Float32Array)], [...w].map((v, i) => Math.fround(v * gd[i])));
  assert.deepEqual([...(r.grads.w.data as Float32Array)], [...x].map((v, i) => Math.fround(v * gd[i])));
  await assert.rejects(pair.vjp({ x, w }, { out: gd }), /not a differentiated output/);
  assert.throws(() => makeVjpPair({ build: (g) => ({ y: g.input('a', [1]) }), wrt: ['b'] }), /wrt 'b' is not an input/);
});
