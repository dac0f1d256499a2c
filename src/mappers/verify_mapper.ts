// `clipmapper verify <dir>` for a folder laid out like shared/fixtures/mapper/: the StyleCLIP
// latent mappers and HairCLIP's HairMapper, official checkpoint layout at any width.
//
// Every tensor of io.safetensors and grad.safetensors that is not an input gets one line; a
// stored output that no check covers is reported as a FAIL, so a fixture with more cases than
// this verifier knows cannot pass silently. Checkpoints are recognised by their keys, not their
// file names. Tolerances: a tensor's `__metadata__.suggested_atol` when the file has one
// (|d| <= atol), the project's forward contract (atol 1e-4, rtol 1e-4) otherwise.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import { Graph, type Tensor } from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { readSafetensors } from '../io/safetensors.ts';
import type { TensorData } from '../io/tensor.ts';
import { compare, type CompareLine } from '../verify/compare.ts';
import { FixtureChecker } from '../verify/fixture_checker.ts';
import { sumLossAtol } from '../nets/common.ts';
import { readCheckpoint } from './checkpoint.ts';
import { StyleClipMapper, STYLECLIP_ALPHA } from './styleclip.ts';
import { HairClipMapper, HAIRCLIP_ALPHA, modulationModule, subHairMapper } from './hairclip.ts';
import { pixelNorm } from './layers.ts';

const INPUTS = new Set(['styleclip.w', 'styleclip.R', 'hairclip.w', 'hairclip.e_hair', 'hairclip.e_color', 'hairclip.R']);

interface Fixture { tensors: Map<string, TensorData>; atol: Record<string, number> }

function readFixture(path: string): Fixture | null {
  if (!existsSync(path)) return null;
  const f = readSafetensors(path);
  let atol: Record<string, number> = {};
  if (f.metadata.suggested_atol) atol = JSON.parse(f.metadata.suggested_atol) as Record<string, number>;
  return { tensors: f.tensors, atol };
}

type Kind = 'levels' | 'single' | 'hairclip';

/** The mapper checkpoints of a folder, recognised by their keys. */
function findCheckpoints(dir: string): Partial<Record<Kind, string>> {
  const out: Partial<Record<Kind, string>> = {};
  for (const f of readdirSync(dir).filter((n) => /\.(pt|pth)$/.test(n)).sort()) {
    const path = join(dir, f);
    let keys: string[];
    try { keys = [...readCheckpoint(path).stateDict.keys()]; } catch { continue; }
    const kind: Kind | null = keys.some((k) => k.includes('.modulation_module_list.')) ? 'hairclip'
      : keys.some((k) => k.startsWith('mapper.mapping.mapping.')) ? 'single'
        : keys.some((k) => /^mapper\.(course|medium|fine)_mapping\.mapping\./.test(k)) ? 'levels' : null;
    if (kind && !out[kind]) out[kind] = path;
  }
  return out;
}

export function detect(dir: string): boolean {
  const io = join(dir, 'io.safetensors');
  if (!existsSync(io)) return false;
  try {
    const keys = [...readSafetensors(io).tensors.keys()];
    return keys.some((k) => k.startsWith('styleclip.') || k.startsWith('hairclip.'));
  } catch { return false; }
}

class Checker extends FixtureChecker {
  constructor(private readonly fx: Fixture, file: string) { super(fx.tensors, file, INPUTS); }

  check(key: string, got: ArrayLike<number>): void {
    if (!this.has(key)) return;
    this.covered.add(key);
    const a = this.fx.atol[key];
    const tol = a !== undefined ? { atol: a, rtol: 0 } : { atol: 1e-4, rtol: 1e-4 };
    this.lines.push(compare(`${this.file}:${key}`, got, this.get(key), tol));
  }

  /**
   * A stored float32 loss sum(a * b): its atol is widened by how far the stored value lies from
   * the exact sum of its own stored terms (the reference's summation rounding, up to an ulp of a
   * loss of order 10, which alone can exceed a suggested atol measured as 10x |f32 - f64|).
   */
  checkLoss(key: string, got: number, aKey: string, b: Float32Array): void {
    if (!this.has(key)) return;
    this.covered.add(key);
    const a = this.fx.atol[key];
    const stored = this.get(key)[0];
    const tol = a !== undefined && this.has(aKey) ? { atol: sumLossAtol(a, this.get(aKey), b, stored), rtol: 0 } : { atol: 1e-4, rtol: 1e-4 };
    this.lines.push(compare(`${this.file}:${key}`, [got], [stored], tol));
  }
}

function sumProduct(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
const scaled = (x: Float32Array, s: number) => x.map((v) => Math.fround(s) * v);
const plus = (a: Float32Array, b: Float32Array) => a.map((v, i) => v + b[i]);

async function verifyStyleClip(ck: Partial<Record<Kind, string>>, io: Checker | null, gr: Checker | null): Promise<void> {
  const wKey = 'styleclip.w';
  if (ck.levels) {
    const { mapper } = StyleClipMapper.load(ck.levels);
    if (io?.has(wKey)) {
      const w = { data: io.get(wKey), shape: io.shape(wKey) };
      const r = await mapper.edit(w);
      io.check('styleclip.levels.out', r.delta.data as Float32Array);
      io.check('styleclip.levels.w_hat', r.wHat.data as Float32Array);
      // LevelsMapper(no_fine_mapper=True) with the same coarse/medium weights: drop the fine keys
      const sd = mapper.params.toStateDict();
      for (const k of [...sd.keys()]) if (k.startsWith('mapper.fine_mapping.')) sd.delete(k);
      // (a checkpoint with only the fine level leaves no level: LevelsMapper then outputs zeros)
      const r2 = sd.size
        ? await StyleClipMapper.fromStateDict(sd, { mapper_type: 'LevelsMapper', no_fine_mapper: true }).edit(w)
        : { delta: { data: new Float32Array(w.data.length), shape: w.shape }, wHat: { data: Float32Array.from(w.data), shape: w.shape } };
      io.check('styleclip.levels_nofine.out', r2.delta.data as Float32Array);
      io.check('styleclip.levels_nofine.w_hat', r2.wHat.data as Float32Array);
    }
    if (gr?.has(wKey)) {
      const w = { data: gr.get(wKey), shape: gr.shape(wKey) };
      const R = gr.get('styleclip.R');
      const r = await mapper.edit(w);
      const wHat = r.wHat.data as Float32Array;
      gr.check('styleclip.out', r.delta.data as Float32Array);
      gr.check('styleclip.w_hat', wHat);
      gr.checkLoss('styleclip.loss', sumProduct(wHat, R), 'styleclip.w_hat', R);
      // loss = sum((w + 0.1 M) R): the cotangent of M is 0.1 R; w also gets R directly
      const v = await mapper.vjp(w, scaled(R, STYLECLIP_ALPHA));
      gr.check('styleclip.grad.w', plus(R, v.w));
      for (const [k, g] of v.params) gr.check(`styleclip.grad.${k}`, g);
    }
  }
  if (ck.single && io?.has(wKey)) {
    const { mapper } = StyleClipMapper.load(ck.single);
    const r = await mapper.edit({ data: io.get(wKey), shape: io.shape(wKey) });
    io.check('styleclip.single.out', r.delta.data as Float32Array);
    io.check('styleclip.single.w_hat', r.wHat.data as Float32Array);
  }
}

async function verifyHairClip(path: string, io: Checker | null, gr: Checker | null): Promise<void> {
  const { mapper } = HairClipMapper.load(path);
  const cases: [string, boolean, boolean][] = [['both', true, true], ['hair_only', true, false], ['color_only', false, true], ['none', false, false]];
  if (io?.has('hairclip.w')) {
    const wd = io.get('hairclip.w');
    const w = { data: wd, shape: io.shape('hairclip.w') };
    const eh = io.get('hairclip.e_hair');
    const ec = io.get('hairclip.e_color');
    for (const [c, hair, color] of cases) {
      const r = await mapper.edit(w, { hair: hair ? eh : null, color: color ? ec : null });
      io.check(`hairclip.${c}.out`, r.delta.data as Float32Array);
      io.check(`hairclip.${c}.w_hat`, r.wHat.data as Float32Array);
    }
    // the sub-mappers and the first ModulationModule on their own
    const [B, L, D] = w.shape;
    const E = mapper.config.embedWidth;
    const g = new Graph('hairclip_parts');
    const p = mapper.params.constants(g);
    const wt = g.constant(wd, [B, L, D]);
    const row = (e: Float32Array) => G.unsqueeze(g.constant(e, [B, E]), 1);
    const rows = (a: number, b: number) => G.slice(wt, [a], [b], [1]);
    const M = mapper.config.modules;
    const outs: Record<string, Tensor> = {};
    if (mapper.config.subMappers.coarse) {
      outs['hairclip.sub.course'] = subHairMapper(rows(0, 4), row(eh), p, 'mapper.course_mapping', M);
      outs['hairclip.modmod0.in'] = pixelNorm(rows(0, 4));
      if (io.has('hairclip.modmod0.in')) {
        const x = g.constant(io.get('hairclip.modmod0.in'), io.shape('hairclip.modmod0.in'));
        outs['hairclip.modmod0.out'] = modulationModule(x, row(eh), p, 'mapper.course_mapping.modulation_module_list.0');
        outs['hairclip.modmod0.out_cut'] = modulationModule(x, null, p, 'mapper.course_mapping.modulation_module_list.0');
      }
    }
    if (mapper.config.subMappers.medium) outs['hairclip.sub.medium'] = subHairMapper(rows(4, 8), row(eh), p, 'mapper.medium_mapping', M);
    if (mapper.config.subMappers.fine) {
      outs['hairclip.sub.fine'] = subHairMapper(rows(8, L), row(ec), p, 'mapper.fine_mapping', M);
      outs['hairclip.sub.fine_cut'] = subHairMapper(rows(8, L), null, p, 'mapper.fine_mapping', M);
    }
    const want = Object.fromEntries(Object.entries(outs).filter(([k]) => io.has(k)));
    if (Object.keys(want).length) {
      const r = await evaluate(want);
      for (const [k, v] of Object.entries(r)) io.check(k, v.data as Float32Array);
    }
  }
  if (gr?.has('hairclip.w')) {
    const w = { data: gr.get('hairclip.w'), shape: gr.shape('hairclip.w') };
    const cond = { hair: gr.get('hairclip.e_hair'), color: gr.get('hairclip.e_color') };
    const R = gr.get('hairclip.R');
    const r = await mapper.edit(w, cond);
    const wHat = r.wHat.data as Float32Array;
    gr.check('hairclip.out', r.delta.data as Float32Array);
    gr.check('hairclip.w_hat', wHat);
    gr.checkLoss('hairclip.loss', sumProduct(wHat, R), 'hairclip.w_hat', R);
    const v = await mapper.vjp(w, cond, scaled(R, HAIRCLIP_ALPHA));
    gr.check('hairclip.grad.w', plus(R, v.w));
    gr.check('hairclip.grad.e_hair', v.hair!);
    gr.check('hairclip.grad.e_color', v.color!);
    for (const [k, g] of v.params) gr.check(`hairclip.grad.${k}`, g);
  }
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ioFx = readFixture(join(dir, 'io.safetensors'));
  const grFx = readFixture(join(dir, 'grad.safetensors'));
  if (!ioFx && !grFx) throw new Error(`${dir}: neither io.safetensors nor grad.safetensors`);
  const io = ioFx ? new Checker(ioFx, 'io') : null;
  const gr = grFx ? new Checker(grFx, 'grad') : null;
  const ck = findCheckpoints(dir);
  const needs = (prefix: string) => [ioFx, grFx].some((f) => f && [...f.tensors.keys()].some((k) => k.startsWith(prefix) && !INPUTS.has(k)));
  if (needs('styleclip.') && !ck.levels && !ck.single) throw new Error(`${dir}: StyleCLIP tensors but no StyleCLIP mapper checkpoint (mapper.*_mapping.mapping.* keys)`);
  if (needs('hairclip.') && !ck.hairclip) throw new Error(`${dir}: HairCLIP tensors but no HairCLIP checkpoint (mapper.*.modulation_module_list.* keys)`);
  await verifyStyleClip(ck, io, gr);
  if (ck.hairclip) await verifyHairClip(ck.hairclip, io, gr);
  io?.uncovered(['styleclip.', 'hairclip.']);
  gr?.uncovered(['styleclip.', 'hairclip.']);
  return [...(io?.lines ?? []), ...(gr?.lines ?? [])];
}
