import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Adam, Ranger, type ParamTensor } from './optim.ts';
import { Rng } from './rng.ts';

function quad(): { p: ParamTensor[]; grads: () => Map<string, Float32Array> } {
  // f = 0.5 * sum((W - T)^2) + 0.5 * sum((b - 1)^2)
  const W: ParamTensor = { name: 'w', shape: [2, 3], data: Float32Array.from([1, -2, 3, 0.5, 0, -1]) };
  const b: ParamTensor = { name: 'b', shape: [2], data: Float32Array.from([0, 0]) };
  const T = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
  return {
    p: [W, b],
    grads: () => new Map([
      ['w', W.data.map((x, i) => x - T[i])],
      ['b', b.data.map((x) => x - 1)],
    ]),
  };
}

test('Adam converges on a quadratic and matches the closed form of its first step', () => {
  const { p, grads } = quad();
  const opt = new Adam({ lr: 0.1 });
  const x0 = Float32Array.from(p[1].data);
  opt.step(p, grads());
  // first Adam step moves every coordinate by lr * sign(g) (m/sqrt(v) = g/|g| after bias correction)
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(p[1].data[i] - (x0[i] + 0.1)) < 1e-6);
  for (let s = 0; s < 500; s++) opt.step(p, grads());
  for (const v of p[1].data) assert.ok(Math.abs(v - 1) < 1e-2, `b -> 1, got ${v}`);
});

test('Ranger: first steps are SGD-with-momentum on centralised gradients; lookahead every k steps', () => {
  const { p, grads } = quad();
  const opt = new Ranger({ lr: 0.01 });
  const W0 = Float32Array.from(p[0].data);
  const g = grads().get('w')!;
  opt.step(p, grads());
  // N_sma(1) = 1 <= 5: x -= lr * m / (1 - b1) = lr * g_c, with g_c the row-centred gradient
  for (let r = 0; r < 2; r++) {
    const row = [0, 1, 2].map((c) => g[r * 3 + c]);
    const mean = row.reduce((a, c) => a + c, 0) / 3;
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(p[0].data[r * 3 + c] - (W0[r * 3 + c] - 0.01 * (row[c] - mean))) < 1e-6);
    }
  }
  // biases (1-D) are not centralised
  assert.ok(Math.abs(p[1].data[0] - 0.01) < 1e-7);
  // lookahead: after step 6 the fast weights are pulled halfway back to the slow ones (the initial values)
  const snap: Float32Array[] = [];
  for (let s = 2; s <= 6; s++) {
    if (s === 6) {
      // compute what the fast weights would be without lookahead by running a clone for one step
      const clone = new Ranger({ lr: 0.01, k: 1000 });
      clone.load(structuredClone(opt.state()));
      const pc = p.map((q) => ({ ...q, data: Float32Array.from(q.data) }));
      const gc = new Map([...grads()].map(([k, v]) => [k, Float32Array.from(v)]));
      clone.step(pc, gc);
      snap.push(pc[1].data);
    }
    opt.step(p, grads());
  }
  const fast = snap[0];
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(p[1].data[i] - (0 + 0.5 * (fast[i] - 0))) < 1e-6);
});

test('optimiser state round-trips: a restored optimiser continues bit-identically', () => {
  const a = quad(); const b = quad();
  const o1 = new Ranger({ lr: 0.05 });
  for (let s = 0; s < 9; s++) o1.step(a.p, a.grads());
  const o2 = new Ranger({ lr: 0.05 });
  const o3 = new Ranger({ lr: 0.05 });
  for (let s = 0; s < 9; s++) o3.step(b.p, b.grads());
  o2.load(structuredClone(o3.state()));
  for (let s = 0; s < 7; s++) { o1.step(a.p, a.grads()); o2.step(b.p, b.grads()); }
  assert.deepEqual([...a.p[0].data], [...b.p[0].data]);
});

test('missing or mis-sized gradients are refused by name', () => {
  const { p } = quad();
  assert.throws(() => new Adam({ lr: 1 }).step(p, new Map()), /no gradient for parameter 'w'/);
  assert.throws(() => new Adam({ lr: 1 }).step(p, new Map([['w', new Float32Array(2)], ['b', new Float32Array(2)]])), /'w' has 2 values/);
});

test('Rng: state round-trip reproduces the stream; seeds differ', () => {
  const r = new Rng(7);
  for (let i = 0; i < 10; i++) r.random();
  const s = r.state;
  const a = [r.random(), r.normal(), r.int(10)];
  const r2 = new Rng(s);
  assert.deepEqual([r2.random(), r2.normal(), r2.int(10)], a);
  assert.notEqual(new Rng(1).random(), new Rng(2).random());
  const xs = new Rng(3).normals(20000);
  const mean = xs.reduce((p, q) => p + q, 0) / xs.length;
  const v = xs.reduce((p, q) => p + (q - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(v - 1) < 0.05, `normal mean ${mean} var ${v}`);
});
