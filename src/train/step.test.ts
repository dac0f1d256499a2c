// The fused step graph (step.ts): its parameter gradient against central differences of its own
// total loss for each method (on the smooth terms: parser masks are piecewise constant, so the
// mask-based terms are switched off here — their value paths are tested in src/losses), the
// parameters it does not reach (FFCLIP's unused fc; HairCLIP's cut gamma/beta) getting exact zeros,
// one session per HairCLIP cut-flag combination, and gradient clipping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from './rng.ts';
import { latentSource } from './data.ts';
import { StyleClipTrainer } from './styleclip.ts';
import { HairClipTrainer, type HairClipSample } from './hairclip.ts';
import { FfclipTrainer } from './ffclip.ts';
import { clipGradNorm, stepGraphHooks } from './step.ts';
import type { Tensor } from '../graph/graph.ts';
import { tinyNets } from './testing.ts';
import type { StepResult } from './trainer.ts';
import type { ParamTensor } from './optim.ts';

/** Directional derivative of the total loss along a random direction: analytic vs central differences (best of `hs`). */
async function fdCheck(params: ParamTensor[], step: () => Promise<StepResult>, hs: number[], seed = 9): Promise<{ rel: number; analytic: number; numeric: number }> {
  const r0 = await step();
  const rng = new Rng(seed);
  const dirs = params.map((p) => rng.normals(p.data.length));
  let analytic = 0;
  params.forEach((p, k) => { const g = r0.grads.get(p.name)!; for (let i = 0; i < g.length; i++) analytic += g[i] * dirs[k][i]; });
  const saved = params.map((p) => Float32Array.from(p.data));
  const at = async (t: number) => {
    params.forEach((p, k) => { for (let i = 0; i < p.data.length; i++) p.data[i] = saved[k][i] + t * dirs[k][i]; });
    return (await step()).losses.loss;
  };
  let best = { rel: Infinity, analytic, numeric: NaN };
  for (const h of hs) {
    const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
    const rel = Math.abs(numeric - analytic) / Math.max(Math.abs(numeric), Math.abs(analytic));
    if (rel < best.rel) best = { rel, analytic, numeric };
  }
  params.forEach((p, k) => p.data.set(saved[k]));
  return best;
}

test('StyleCLIP step gradient = finite differences of its loss (CLIP + L2 + identity)', async (t) => {
  const nets = tinyNets(32);
  const m = new StyleClipTrainer(nets, await latentSource(nets.generator), { prompt: 'purple hair', batch: 2, mapper: { type: 'SingleMapper' } });
  const s = m.sample(new Rng(3));
  const r = await fdCheck(m.params, () => m.step(s), [3e-2, 1e-2]);
  t.diagnostic(`analytic ${r.analytic.toExponential(4)}, numeric ${r.numeric.toExponential(4)}, rel ${r.rel.toExponential(2)}`);
  assert.ok(r.rel < 2e-2, `rel ${r.rel}`);
});

test('HairCLIP step gradient = finite differences (text, identity, L2); cut paths get zero gamma/beta gradients; <= 4 sessions', async (t) => {
  const nets = tinyNets(64);
  const m = new HairClipTrainer(nets, await latentSource(nets.generator), { lambdas: { background: 0, maintainColor: 0, imageColor: 0, imageHairstyle: 0 }, warn: () => {} });
  const lat = (await latentSource(nets.generator)).first(1);
  const both: HairClipSample = { latents: lat, hairstyle: { kind: 'text', name: 'afro' }, color: { kind: 'text', name: 'purple' } };
  const r = await fdCheck(m.params, () => m.step(both), [3e-2, 1e-2]);
  t.diagnostic(`analytic ${r.analytic.toExponential(4)}, numeric ${r.numeric.toExponential(4)}, rel ${r.rel.toExponential(2)}`);
  assert.ok(r.rel < 2e-2, `rel ${r.rel}`);
  // hairstyle only: the fine (colour) sub-mapper runs its cut path, its gamma/beta get exact zeros
  const hairOnly = await m.step({ latents: lat, hairstyle: { kind: 'text', name: 'afro' }, color: null });
  for (const [k, g] of hairOnly.grads) {
    const cut = k.startsWith('mapper.fine_mapping.') && /gamma_function|beta_function/.test(k);
    if (cut) assert.ok(g.every((v) => v === 0), `${k} should get no gradient on the cut path`);
  }
  assert.ok(hairOnly.grads.get('mapper.fine_mapping.modulation_module_list.0.fc.weight')!.some((v) => v !== 0), 'the cut path still trains fc');
  assert.equal(Object.keys(hairOnly.losses).includes('loss_text_color'), false);
  await m.step({ latents: lat, hairstyle: null, color: null });
  await m.step({ latents: lat, hairstyle: null, color: { kind: 'text', name: 'red' } });
  await m.step({ latents: lat, hairstyle: { kind: 'text', name: 'mohawk' }, color: { kind: 'text', name: 'red' } });
  assert.equal((m as unknown as { steps: { size: number } }).steps.size, 4);
});

test('FFCLIP step gradient = finite differences (CLIP, identity, latent L1, embedding); fc gets zeros', async (t) => {
  const nets = tinyNets(64);
  const m = new FfclipTrainer(nets, await latentSource(nets.generator), { batch: 2, gradClip: 0, lambdas: { background: 0 } });
  const s = m.sample(new Rng(3));
  // the DynamicMapper is sharply curved (softmaxes over rows and channels, LayerNorm of nearly
  // equal rows): only small steps stay in the linear regime
  const r = await fdCheck(m.params, () => m.step(s), [1e-4, 3e-5]);
  t.diagnostic(`analytic ${r.analytic.toExponential(4)}, numeric ${r.numeric.toExponential(4)}, rel ${r.rel.toExponential(2)}`);
  assert.ok(r.rel < 2e-2, `rel ${r.rel}`);
  const g = (await m.step(s)).grads;
  for (const [k, v] of g) if (/\.fc\.(weight|bias)$/.test(k)) assert.ok(v.every((x) => x === 0), `${k}: unused, zero gradient`);
});

test('clipGradNorm rescales to the max norm as torch.nn.utils.clip_grad_norm_ (shared buffers untouched)', () => {
  const shared = Float32Array.from([3, 4]);
  const grads = new Map([['a', shared], ['b', Float32Array.from([0, 12])]]);
  const n = clipGradNorm(grads, 6.5);
  assert.equal(n, 13);
  assert.deepEqual([...shared], [3, 4]);
  const c = 6.5 / (13 + 1e-6);
  assert.ok(Math.abs(grads.get('a')![0] - 3 * c) < 1e-6 && Math.abs(grads.get('b')![1] - 12 * c) < 1e-5);
  const g2 = new Map([['a', Float32Array.from([0.1])]]);
  clipGradNorm(g2, 5);
  assert.ok(Math.abs(g2.get('a')![0] - 0.1) < 1e-8);
});

test('one initializer per frozen weight: both G passes (and the CLIP passes) share their constants', async () => {
  const nets = tinyNets(64);
  const seen: { dup: number; consts: number; gWeights: number } = { dup: 0, consts: 0, gWeights: 0 };
  stepGraphHooks.onBuild = (_n, _loss, _params, outputs) => {
    const byData = new Map<unknown, number>();
    const visit = new Set<number>(); const stack: Tensor[] = Object.values(outputs);
    while (stack.length) {
      const t = stack.pop()!;
      if (visit.has(t.id)) continue;
      visit.add(t.id);
      if (t.kind === 'const' && t.data!.length > 64) byData.set(t.data, (byData.get(t.data) ?? 0) + 1);
      if (t.node) stack.push(...t.node.inputs);
    }
    seen.consts = byData.size;
    seen.dup = [...byData.values()].filter((c) => c > 1).length;
    seen.gWeights = [...byData.keys()].filter((d) => d === nets.generator.P.data('convs.0.conv.weight')).length;
  };
  try {
    const m = new FfclipTrainer(nets, await latentSource(nets.generator), { batch: 1 });
    await m.step(m.sample(new Rng(1)));
  } finally { stepGraphHooks.onBuild = undefined; }
  assert.ok(seen.consts > 50);
  assert.equal(seen.dup, 0, 'a weight array became two constants');
  assert.equal(seen.gWeights, 1);
});
