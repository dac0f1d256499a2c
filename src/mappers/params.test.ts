import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import { compile } from '../runtime/session.ts';
import { TensorData } from '../io/tensor.ts';
import { Adam } from '../train/optim.ts';
import { ParamSet, torchLayerNorm, torchLinear, type ParamSpec } from './params.ts';
import { readCheckpoint, serializeCheckpoint, writeCheckpoint } from './checkpoint.ts';
import { StyleClipMapper } from './styleclip.ts';

const specs: ParamSpec[] = [
  ...torchLinear('m.fc', 64, 32),
  ...torchLayerNorm('m.norm', 32),
  { name: 'm.eq.weight', shape: [32, 32], init: { kind: 'normal', std: 100 } },
];

test('ParamSet.init follows the official rules and is reproducible from its seed', () => {
  const p = ParamSet.init(specs, 7);
  assert.deepEqual(p.names, ['m.fc.weight', 'm.fc.bias', 'm.norm.weight', 'm.norm.bias', 'm.eq.weight']);
  const bound = 1 / Math.sqrt(64);
  const w = p.get('m.fc.weight').data;
  assert.ok(w.every((x) => Math.abs(x) <= bound), 'nn.Linear weight in U(-1/sqrt(fan_in), 1/sqrt(fan_in))');
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const varU = w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length;
  assert.ok(Math.abs(varU - bound ** 2 / 3) < 0.1 * bound ** 2 / 3, `uniform variance ${varU}`);
  assert.ok(p.get('m.fc.bias').data.every((x) => Math.abs(x) <= bound));
  assert.ok(p.get('m.norm.weight').data.every((x) => x === 1));
  assert.ok(p.get('m.norm.bias').data.every((x) => x === 0));
  const e = p.get('m.eq.weight').data;
  const std = Math.sqrt(e.reduce((a, b) => a + b * b, 0) / e.length);
  assert.ok(Math.abs(std - 100) < 8, `EqualLinear randn / lr_mul: std ${std}`);
  assert.deepEqual(ParamSet.init(specs, 7).get('m.eq.weight').data, e);
  assert.notDeepEqual(ParamSet.init(specs, 8).get('m.eq.weight').data, e);
  assert.equal(p.numel, 64 * 32 + 32 * 3 + 32 * 32);
});

test('ParamSet.fromStateDict names the missing, unexpected or mis-shaped key', () => {
  const full = ParamSet.init(specs, 1).toStateDict();
  const drop = new Map(full); drop.delete('m.norm.bias');
  assert.throws(() => ParamSet.fromStateDict(specs, drop, { what: 'tiny' }), /tiny: missing key 'm\.norm\.bias'/);
  const extra = new Map(full); extra.set('m.other', new TensorData('float32', [1], new Float32Array(1)));
  assert.throws(() => ParamSet.fromStateDict(specs, extra), /unexpected key 'm\.other'/);
  assert.doesNotThrow(() => ParamSet.fromStateDict(specs, extra, { strict: false }));
  const bad = new Map(full); bad.set('m.fc.bias', new TensorData('float32', [31], new Float32Array(31)));
  assert.throws(() => ParamSet.fromStateDict(specs, bad), /'m\.fc\.bias' has shape \[31\], expected \[32\]/);
});

test('ParamSet values go through a torch.save checkpoint unchanged, keys in order', () => {
  const p = ParamSet.init(specs, 3);
  const bytes = serializeCheckpoint({ state_dict: p.toStateDict(), opts: { lr: 0.5, name: 'x', flag: true, none: null } });
  const back = readCheckpoint(bytes);
  assert.deepEqual([...back.stateDict.keys()], p.names);
  assert.deepEqual(back.opts, { lr: 0.5, name: 'x', flag: true, none: null });
  const q = ParamSet.fromStateDict(specs, back.stateDict);
  for (const n of p.names) assert.deepEqual(q.get(n).data, p.get(n).data);
  // clone is deep, copyFrom copies values
  const c = q.clone();
  c.get('m.fc.bias').data[0] += 1;
  assert.notEqual(c.get('m.fc.bias').data[0], q.get('m.fc.bias').data[0]);
  q.copyFrom(c);
  assert.equal(q.get('m.fc.bias').data[0], c.get('m.fc.bias').data[0]);
});

test('declare() makes parameters graph inputs: one session serves updated values', async () => {
  const p = ParamSet.init(torchLinear('lin', 3, 2), 5);
  const g = new G.Graph();
  const x = g.input('x', [1, 3]);
  const ref = p.declare(g);
  const y = G.linear(x, ref('lin.weight'), ref('lin.bias'));
  const c = await compile({ y });
  const xs = Float32Array.of(1, 2, 3);
  const expect = () => {
    const W = p.get('lin.weight').data; const b = p.get('lin.bias').data;
    return [0, 1].map((o) => Math.fround(W[o * 3] * 1 + W[o * 3 + 1] * 2 + W[o * 3 + 2] * 3 + b[o]));
  };
  const y1 = (await c.run({ x: xs, ...p.feeds() })).y.data as Float32Array;
  y1.forEach((v, i) => assert.ok(Math.abs(v - expect()[i]) < 1e-6));
  p.get('lin.bias').data[1] += 10;
  const y2 = (await c.run({ x: xs, ...p.feeds() })).y.data as Float32Array;
  y2.forEach((v, i) => assert.ok(Math.abs(v - expect()[i]) < 1e-6));
  assert.throws(() => ref('nope'), /no parameter 'nope'/);
});

test('a mapper trains with the project optimiser through its VJP session; the checkpoint round-trips', async () => {
  // minimise |M(w) - T|^2 for a small StyleCLIP LevelsMapper (width 8)
  const m = StyleClipMapper.create({ width: 8 }, 11);
  const B = 2; const L = 18; const D = 8;
  const w = { data: Float32Array.from({ length: B * L * D }, (_, i) => Math.sin(i * 0.7)), shape: [B, L, D] };
  const T = Float32Array.from({ length: B * L * D }, (_, i) => 0.5 * Math.cos(i * 0.3));
  const opt = new Adam({ lr: 0.5 }); // StyleCLIP's learning rate (EqualLinear's lr_mul makes it 0.005 effective)
  const session = m.session(B, L);
  const losses: number[] = [];
  for (let step = 0; step < 30; step++) {
    const { delta } = await m.edit(w);
    const d = delta.data as Float32Array;
    let loss = 0;
    const gD = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) { const r = d[i] - T[i]; loss += r * r; gD[i] = 2 * r; }
    losses.push(loss);
    const v = await m.vjp(w, gD);
    assert.equal(v.params.size, m.params.size);
    opt.step(m.params.list, v.params);
  }
  assert.equal(m.session(B, L), session, 'the same session serves every step');
  assert.ok(losses[29] < 0.5 * losses[0], `loss ${losses[0]} -> ${losses[29]}`);

  const dir = mkdtempSync(join(tmpdir(), 'mapper-'));
  try {
    const path = join(dir, 'latest.pt');
    writeCheckpoint(path, m.checkpoint());
    const { mapper } = StyleClipMapper.load(path);
    assert.deepEqual(mapper.config, m.config);
    assert.deepEqual((await mapper.edit(w)).delta.data, (await m.edit(w)).delta.data);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
