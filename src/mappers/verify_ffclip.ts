// `clipmapper verify <dir>` for a folder laid out like shared/fixtures/ffclip/: the FFCLIP
// DynamicMapper in the official checkpoint layout, at any width / layer count / block count.
//
// The mapper is ill-conditioned in float32 (rounding errors grow by up to ~100x per block, see
// the fixture README), so every stored tensor is checked twice:
//  - end to end: the whole mapper from `ffclip.w`, `ffclip.e` through the public API
//    (FfclipMapper.edit / .vjp) and, for intermediates and per-block gradients, the same block
//    builder with taps; tolerance `__metadata__.suggested_atol`;
//  - block-local (teacher forcing): block i alone on the STORED float32 block input, and for
//    gradients the VJP of block i with the STORED upstream gradient `ffclip.grad.block<i>.out`;
//    tolerance `__metadata__.suggested_atol_block_local`. This is the tight check of each block.
// A stored output that no check covers is reported as a FAIL.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import { Graph, type Tensor } from '../graph/index.ts';
import { compile } from '../runtime/session.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { toFloat32Array, type TensorData } from '../io/tensor.ts';
import { compare, type CompareLine } from '../verify/compare.ts';
import { readCheckpoint } from './checkpoint.ts';
import { FfclipMapper, FFCLIP_PREFIX, semanticModulationBlock, type Taps } from './ffclip.ts';
import type { ParamSet } from './params.ts';

const INPUTS = new Set(['ffclip.w', 'ffclip.e', 'ffclip.e_fwd', 'ffclip.R']);

export function detect(dir: string): boolean {
  const io = join(dir, 'io.safetensors');
  if (!existsSync(io)) return false;
  try { return [...readSafetensors(io).tensors.keys()].some((k) => k.startsWith('ffclip.')); } catch { return false; }
}

/** The folder's FFCLIP checkpoint, recognised by its keys. */
function findCheckpoint(dir: string): string {
  for (const f of readdirSync(dir).filter((n) => /\.(pt|pth)$/.test(n)).sort()) {
    const path = join(dir, f);
    try {
      if ([...readCheckpoint(path).stateDict.keys()].some((k) => /(^|\.)att_mapper\.\d+\.attention_layer\./.test(k))) return path;
    } catch { /* not a checkpoint we can read: skip */ }
  }
  throw new Error(`${dir}: no FFCLIP checkpoint (att_mapper.<i>.attention_layer.* keys)`);
}

interface Fixture { tensors: Map<string, TensorData>; e2e: Record<string, number>; local: Record<string, number> }

function readFixture(path: string): Fixture | null {
  if (!existsSync(path)) return null;
  const f = readSafetensors(path);
  const parse = (s?: string) => (s ? (JSON.parse(s) as Record<string, number>) : {});
  return { tensors: f.tensors, e2e: parse(f.metadata.suggested_atol), local: parse(f.metadata.suggested_atol_block_local) };
}

class Checker {
  readonly lines: CompareLine[] = [];
  private covered = new Set<string>();
  constructor(private readonly fx: Fixture, private readonly file: string) {}
  has(key: string): boolean { return this.fx.tensors.has(key); }
  get(key: string): Float32Array {
    const t = this.fx.tensors.get(key);
    if (!t) throw new Error(`${this.file}: no tensor '${key}'`);
    return toFloat32Array(t);
  }
  shape(key: string): number[] { return [...this.fx.tensors.get(key)!.shape]; }

  check(key: string, got: ArrayLike<number>, mode: 'e2e' | 'local'): void {
    if (!this.has(key)) return;
    this.covered.add(key);
    const a = (mode === 'e2e' ? this.fx.e2e : this.fx.local)[key];
    const tol = a !== undefined ? { atol: a, rtol: 0 } : { atol: 1e-4, rtol: 1e-4 };
    this.lines.push(compare(`${this.file}:${key}${mode === 'local' ? ' [block-local]' : ''}`, got, this.get(key), tol));
  }

  uncovered(): void {
    for (const k of this.fx.tensors.keys()) {
      if (INPUTS.has(k) || this.covered.has(k)) continue;
      this.lines.push({ name: `${this.file}:${k}`, maxAbs: NaN, maxRel: NaN, pass: false, rule: 'not checked by this verifier' });
    }
  }
}

/** Compile and run, feeding only the parameters the graph kept (unused ones, like fc, are pruned). */
async function run(outputs: Record<string, Tensor>, feeds: Record<string, Float32Array>): Promise<Record<string, Float32Array>> {
  const c = await compile(outputs);
  const used = Object.fromEntries(Object.entries(feeds).filter(([k]) => c.inputs.has(k)));
  const r = await c.run(used);
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data as Float32Array]));
}

function blockParams(params: ParamSet, i: number): string[] {
  return params.names.filter((k) => k.startsWith(`${FFCLIP_PREFIX}${i}.`));
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ioFx = readFixture(join(dir, 'io.safetensors'));
  const grFx = readFixture(join(dir, 'grad.safetensors'));
  if (!ioFx && !grFx) throw new Error(`${dir}: neither io.safetensors nor grad.safetensors`);
  const { mapper } = FfclipMapper.load(findCheckpoint(dir));
  const { blocks, width: D, embedWidth: E } = mapper.config;
  const params = mapper.params;
  const io = ioFx ? new Checker(ioFx, 'io') : null;
  const gr = grFx ? new Checker(grFx, 'grad') : null;

  // ---- forward: end to end (public API + taps), then block by block on the stored inputs
  if (io?.has('ffclip.w')) {
    const wShape = io.shape('ffclip.w');
    const w = { data: io.get('ffclip.w'), shape: wShape };
    const e = io.get('ffclip.e');
    const r = await mapper.edit(w, e);
    io.check('ffclip.delta_w', r.delta.data as Float32Array, 'e2e');
    io.check('ffclip.w_hat', r.wHat.data as Float32Array, 'e2e');

    const B = wShape[0];
    const g = new Graph('ffclip_taps');
    const taps: Taps = {};
    mapper.delta(g.input('w', wShape), g.input('e', [B, E]), params.declare(g), taps);
    const t = await run(Object.fromEntries(Object.entries(taps).map(([k, v]) => [`ffclip.${k}`, v])), { w: w.data, e, ...params.feeds() });
    for (const [k, v] of Object.entries(t)) io.check(k, v, 'e2e');

    for (let i = 0; i < blocks; i++) {
      const inKey = i === 0 ? 'ffclip.w' : `ffclip.block${i - 1}.out`;
      if (!io.has(inKey)) continue;
      const gl = new Graph(`ffclip_block${i}`);
      const lt: Taps = {};
      semanticModulationBlock(gl.input('x', io.shape(inKey)), G.unsqueeze(gl.input('e', [B, E]), 1), params.declare(gl), `${FFCLIP_PREFIX}${i}`, lt, `ffclip.block${i}.`);
      const o = await run(lt, { x: io.get(inKey), e, ...params.feeds() });
      for (const [k, v] of Object.entries(o)) io.check(k, v, 'local');
      if (i === blocks - 1) {
        io.check('ffclip.delta_w', o[`ffclip.block${i}.out`], 'local');
        io.check('ffclip.w_hat', io.get('ffclip.w').map((x, j) => x + o[`ffclip.block${i}.out`][j]), 'local');
      }
    }
  }

  // ---- gradients of loss = sum((w + Δw) * R)
  if (gr?.has('ffclip.w')) {
    const wShape = gr.shape('ffclip.w');
    const B = wShape[0];
    const w = { data: gr.get('ffclip.w'), shape: wShape };
    const e = gr.get('ffclip.e');
    const R = gr.get('ffclip.R');
    const sum = (a: Float32Array) => { let s = 0; for (let j = 0; j < a.length; j++) s += a[j] * R[j]; return s; };

    // end to end, through the public API
    const r = await mapper.edit(w, e);
    gr.check('ffclip.delta_w', r.delta.data as Float32Array, 'e2e');
    gr.check('ffclip.w_hat', r.wHat.data as Float32Array, 'e2e');
    gr.check('ffclip.loss', [sum(r.wHat.data as Float32Array)], 'e2e');
    const v = await mapper.vjp(w, e, R);
    gr.check('ffclip.grad.w', v.w.map((x, j) => x + R[j]), 'e2e');
    gr.check('ffclip.grad.e', v.e, 'e2e');
    for (const [k, x] of v.params) gr.check(`ffclip.grad.${k}`, x, 'e2e');

    // end to end, per block: each block gets its own copy of e (so its e-gradient is "through
    // block i only"), and the gradient w.r.t. each block's output is read off the same graph.
    {
      const g = new Graph('ffclip_block_grads');
      const wt = g.input('w', wShape);
      const p = params.declare(g);
      const es: Tensor[] = [];
      const outs: Tensor[] = [];
      let x = wt;
      for (let i = 0; i < blocks; i++) {
        es.push(g.input(`e${i}`, [B, E]));
        x = semanticModulationBlock(x, G.unsqueeze(es[i], 1), p, `${FFCLIP_PREFIX}${i}`);
        outs.push(x);
      }
      const Rt = g.constant(R, wShape);
      const loss = G.reduceSum(G.mul(G.add(wt, x), Rt));
      const grads = G.grad(loss, [wt, ...es, ...outs]);
      const named: Record<string, Tensor> = { 'ffclip.grad.block0.x_in': G.sub(grads[0], Rt) };
      for (let i = 0; i < blocks; i++) {
        named[`ffclip.grad.block${i}.e`] = grads[1 + i];
        named[`ffclip.grad.block${i}.out`] = grads[1 + blocks + i];
        if (i > 0) named[`ffclip.grad.block${i}.x_in`] = grads[1 + blocks + i - 1];
      }
      const feeds: Record<string, Float32Array> = { w: w.data, ...params.feeds() };
      for (let i = 0; i < blocks; i++) feeds[`e${i}`] = e;
      const o = await run(named, feeds);
      for (const [k, val] of Object.entries(o)) gr.check(k, val, 'e2e');
    }

    // block-local: VJP of block i at the stored input (block outputs from io.safetensors) with
    // the stored upstream gradient
    const ioT = io;
    const blockIn = (i: number): Float32Array | null => (i === 0 ? w.data : ioT?.has(`ffclip.block${i - 1}.out`) ? ioT.get(`ffclip.block${i - 1}.out`) : null);
    const gradE = new Float64Array(B * E);
    let gradW: Float32Array | null = null;
    let allBlocks = true;
    for (let i = 0; i < blocks; i++) {
      const xin = blockIn(i);
      const upKey = `ffclip.grad.block${i}.out`;
      if (!xin || !gr.has(upKey)) { allBlocks = false; continue; }
      const g = new Graph(`ffclip_block${i}_vjp`);
      const xt = g.input('x', wShape);
      const et = g.input('e', [B, E]);
      const p = params.declare(g);
      const y = semanticModulationBlock(xt, G.unsqueeze(et, 1), p, `${FFCLIP_PREFIX}${i}`);
      const names = blockParams(params, i);
      const gs = G.vjp([y], [g.constant(gr.get(upKey), wShape)], [xt, et, ...names.map((n) => p(n))]);
      const named: Record<string, Tensor> = { 'grad:x': gs[0], 'grad:e': gs[1], 'out:y': y };
      names.forEach((n, j) => { named[`p:${n}`] = gs[2 + j]; });
      const o = await run(named, { x: xin, e, ...params.feeds() });
      gr.check(`ffclip.grad.block${i}.x_in`, o['grad:x'], 'local');
      gr.check(`ffclip.grad.block${i}.e`, o['grad:e'], 'local');
      for (const n of names) gr.check(`ffclip.grad.${n}`, o[`p:${n}`], 'local');
      for (let j = 0; j < gradE.length; j++) gradE[j] += o['grad:e'][j];
      if (i === 0) gradW = o['grad:x'].map((xv, j) => xv + R[j]);
      if (i === blocks - 1) {
        gr.check('ffclip.delta_w', o['out:y'], 'local');
        const wHat = w.data.map((xv, j) => xv + o['out:y'][j]);
        gr.check('ffclip.w_hat', wHat, 'local');
        gr.check('ffclip.loss', [sum(wHat)], 'local');
      }
    }
    if (allBlocks) {
      gr.check('ffclip.grad.w', gradW!, 'local');
      gr.check('ffclip.grad.e', gradE, 'local');
    }
  }
  io?.uncovered();
  gr?.uncovered();
  return [...(io?.lines ?? []), ...(gr?.lines ?? [])];
}
