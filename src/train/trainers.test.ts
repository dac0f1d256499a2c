// The three trainers end to end on the tiny official-format networks of test/fixtures (CPU):
// each runs 200 optimiser steps of its fused step graph through the generic Trainer and must
// lower its CLIP text loss on a fixed evaluation batch by a clear margin while the identity loss
// stays small.
//
// Why the test weights differ from the papers' defaults. On these tiny random networks the
// text term is much weaker than at real size, relative to the preservation terms:
//  - the tiny CLIP's logit scale is exp(2.66) = 14.3, not 100, so the official loss
//    1 - logits / 100 = 1 - 0.143 cos moves 7x less than 1 - cos (we keep the official formula);
//  - a random CLIP's image features share a large common component: over every image the tiny
//    generators make, cos(image, text) spans about +-0.1 (the loss about 0.02), while the identity,
//    embedding and parser terms of a random tiny IR-SE / CLIP / U-Net react to any change;
//  - the random parser's hair masks of x and x_hat disagree, so HairCLIP's maintain-colour term
//    starts at ~40 Lab units (a few on real faces) and dominates unless scaled down.
// So each test raises the text weight (StyleCLIP x7, HairCLIP x25, FFCLIP x300), HairCLIP lowers
// maintain-colour 10x, and the learning rates are raised for a 200-step run (StyleCLIP's mapper
// has EqualLinear lr_mul 0.01 and Ranger's rectified warm-up; the official runs take 50k-500k
// steps). Every loss term of each method stays in the graph and is exercised. The margins were
// chosen from runs over several seeds (the worst seen decrease is 2-3x the asserted one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Trainer, readLog, type TrainOptions } from './trainer.ts';
import { latentSource, type LatentRef } from './data.ts';
import { StyleClipTrainer, type StyleClipSample } from './styleclip.ts';
import { HairClipTrainer, HAIRCLIP_TERMS, type HairClipSample } from './hairclip.ts';
import { FfclipTrainer, type FfclipSample } from './ffclip.ts';
import { meanLosses, tinyNets, TINY } from './testing.ts';

const STEPS = 200;

function opts(outDir: string, o: Partial<TrainOptions>): TrainOptions {
  return { outDir, steps: STEPS, optimizer: 'adam', lr: 1e-3, seed: 1, saveInterval: 100, logInterval: 1, imageInterval: 100, resume: false, progress: false, ...o };
}
/** Batch b of `size` latents out of a fixed stream of mapping-network latents. */
function zBatch(first: LatentRef, D: number, size: number, b: number): LatentRef {
  if (!('z' in first)) throw new Error('expected mapping latents');
  return { z: first.z.slice(b * size * D, (b + 1) * size * D) };
}
const finite = (log: Record<string, unknown>[]) => log.every((e) => Object.values(e).every((v) => typeof v !== 'number' || Number.isFinite(v)));

test('StyleCLIP trainer: 200 steps lower the CLIP loss, identity stays close', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'train-styleclip-'));
  try {
    const nets = tinyNets(32);
    const latents = await latentSource(nets.generator);
    const m = new StyleClipTrainer(nets, latents, { prompt: 'purple hair', batch: 2, mapper: { type: 'SingleMapper' }, lambdas: { clip: 7 } });
    const D = nets.generator.config.styleDim;
    const first = latents.first(16);
    const evalSet: StyleClipSample[] = Array.from({ length: 8 }, (_, b) => ({ latents: zBatch(first, D, 2, b) }));
    const before = await meanLosses((s) => m.step(s), evalSet);
    const grids: string[] = [];
    const t0 = Date.now();
    const trainer = new Trainer(m, opts(dir, { optimizer: 'ranger', lr: 30, writeGrid: async (p) => { grids.push(p); } }));
    const log = await trainer.run();
    const after = await meanLosses((s) => m.step(s), evalSet);
    t.diagnostic(`${STEPS} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s; clip ${before.loss_clip.toFixed(5)} -> ${after.loss_clip.toFixed(5)}, id ${before.loss_id.toFixed(4)} -> ${after.loss_id.toFixed(4)}, l2 ${before.loss_l2_latent.toFixed(4)} -> ${after.loss_l2_latent.toFixed(4)}`);
    assert.equal(log.length, STEPS);
    assert.deepEqual(readLog(join(dir, 'log.jsonl')).map((e) => e.step), log.map((e) => e.step));
    assert.ok(finite(log));
    assert.ok(after.loss_clip < before.loss_clip - 0.005, `CLIP loss ${before.loss_clip} -> ${after.loss_clip}`);
    assert.ok(after.loss_id < 0.2, `identity loss ${after.loss_id}`);
    assert.equal(grids.length, 2);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('HairCLIP trainer: 200 steps with text and reference conditions lower the text losses', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'train-hairclip-'));
  try {
    const nets = tinyNets(64);
    const latents = await latentSource(nets.generator);
    const hairstyles = ['afro', 'bob cut', 'mohawk']; const colors = ['purple', 'blond'];
    const warnings: string[] = [];
    const m = new HairClipTrainer(nets, latents, {
      hairstyles, colors, references: { hairstyle: TINY.images, color: TINY.images }, lambdas: { text: 50, maintainColor: 0.002 }, warn: (w) => warnings.push(w),
    });
    assert.equal(warnings.length, 1, 'the in-domain colour branch is folded away with a warning');
    assert.match(warnings[0], /in-domain/);
    const D = nets.generator.config.styleDim;
    const first = latents.first(8);
    const evalSet: HairClipSample[] = Array.from({ length: 8 }, (_, i) => ({
      latents: zBatch(first, D, 1, i),
      hairstyle: { kind: 'text', name: hairstyles[i % 3] },
      color: i % 2 ? { kind: 'text', name: colors[i % 2] } : null,
    }));
    const before = await meanLosses((s) => m.step(s), evalSet);
    const t0 = Date.now();
    const log = await new Trainer(m, opts(dir, { lr: 0.01 })).run();
    const after = await meanLosses((s) => m.step(s), evalSet);
    const text = (l: Record<string, number>) => (l.loss_text_hairstyle + l.loss_text_color) / 2;
    t.diagnostic(`${STEPS} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s; text (hairstyle, colour) ${before.loss_text_hairstyle.toFixed(5)}, ${before.loss_text_color.toFixed(5)} -> ${after.loss_text_hairstyle.toFixed(5)}, ${after.loss_text_color.toFixed(5)}; id ${before.loss_id.toFixed(4)} -> ${after.loss_id.toFixed(4)}`);
    assert.equal(log.length, STEPS);
    assert.ok(finite(log));
    assert.ok(text(after) < text(before) - 0.002, `text loss ${text(before)} -> ${text(after)}`);
    assert.ok(after.loss_id < 0.2, `identity loss ${after.loss_id}`);
    // every term was used by some sample; reference samples were drawn
    const seen = new Set(log.flatMap((e) => Object.keys(e)));
    for (const term of HAIRCLIP_TERMS) assert.ok(seen.has(term), `no sample used ${term}`);
    assert.ok(log.some((e) => String(e.desc).includes('hairstyle_out_domain_ref')));
    assert.ok(log.some((e) => String(e.desc).includes('color_out_domain_ref')));
    assert.ok(log.some((e) => e.desc === 'no_edit'));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('FFCLIP trainer: 200 steps lower the CLIP loss; MultiStepLR and gradient clipping apply', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'train-ffclip-'));
  try {
    const nets = tinyNets(64);
    const latents = await latentSource(nets.generator);
    const prompts = ['Purple hair', 'Sad', 'Bald', 'Taylor Swift'];
    const m = new FfclipTrainer(nets, latents, { prompts, batch: 2, lambdas: { clip: 300 } });
    const D = nets.generator.config.styleDim;
    const first = latents.first(16);
    const evalSet: FfclipSample[] = Array.from({ length: 4 }, (_, j) => ({ latents: zBatch(first, D, 2, j), prompts: [prompts[(2 * j) % 4], prompts[(2 * j + 1) % 4]] }));
    const before = await meanLosses((s) => m.step(s), evalSet);
    const t0 = Date.now();
    const trainer = new Trainer(m, opts(dir, { lr: 2e-3 }));
    const log = await trainer.run();
    const after = await meanLosses((s) => m.step(s), evalSet);
    t.diagnostic(`${STEPS} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s; clip (sum over 2) ${before.loss_clip.toFixed(5)} -> ${after.loss_clip.toFixed(5)}; id ${before.loss_id.toFixed(4)} -> ${after.loss_id.toFixed(4)}; latent ${before.loss_latent.toFixed(4)} -> ${after.loss_latent.toFixed(4)}`);
    assert.equal(log.length, STEPS);
    assert.ok(finite(log));
    assert.ok(after.loss_clip < before.loss_clip - 0.004, `CLIP loss ${before.loss_clip} -> ${after.loss_clip}`);
    assert.ok(after.loss_id < 0.3, `identity loss ${after.loss_id}`);
    assert.ok(Math.abs(trainer.optimizer.lr - 2e-3 * 0.5 ** 4) < 1e-12, `lr after the last milestone: ${trainer.optimizer.lr}`);
    assert.equal(m.lrScale(99, 200), 1); assert.equal(m.lrScale(100, 200), 0.5); assert.equal(m.lrScale(190, 200), 0.0625);
    assert.ok(m.lastGradNorm > 0);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
