// `clipmapper verify <dir>` for a folder laid out like shared/fixtures/ffclip/: the FFCLIP
// DynamicMapper in the official checkpoint layout, at any width / layer count / block count.
//
// The mapper is ill-conditioned in float32 (rounding errors grow by up to ~100x per block, see
// the fixture README), so every stored tensor is checked twice:
//  - end to end: the whole mapper from `ffclip.w`, `ffclip.e`, with the fixture's end-to-end
//    tolerance `__metadata__.suggested_atol` (10x the reference's own float32-vs-float64 error).
//    Two float32 evaluations of this chain that differ only in rounding order can differ by far
//    more than that (measured: a reordered PyTorch float32 evaluation lands up to ~60x the
//    reference's float32 error away from it on the gradients, because the next block's PixelNorm
//    re-expands channels the LeakyReLU crushed). So the end-to-end reference comparison runs our
//    graph in float64 (`[e2e f64]`: the same builders, weights and inputs upcast), which is the
//    function being checked, free of our own float32 noise. The float32 public API
//    (FfclipMapper.edit / .vjp, `[e2e f32 api]`) is then checked against the same reference
//    with that tolerance plus its own measured float32 error (|f32 api - f64 graph|).
//  - block-local (teacher forcing): block i alone on the STORED float32 block input, and for
//    gradients the VJP of block i with the STORED upstream gradient `ffclip.grad.block<i>.out`;
//    tolerance `__metadata__.suggested_atol_block_local`. Run in float64 (`[block-local f64]`,
//    strict: the function) and in float32 as the port runs (`[block-local]`): each float32
//    element may also differ by its own float32 error |f32 - f64| (a cancelling reduction summed
//    in another order lands up to ~10x the reference's one sample of its error away: measured on
//    a parameter gradient, 16 ulps vs PyTorch's 1), provided that own error stays within 10x the
//    atol, so a float32 formulation much worse than PyTorch's still fails.
// The scalar loss sum((w + Δw) * R) is summed here from our w_hat, so its line checks the loss
// definition: its tolerance is what the w_hat tolerance allows (sum |R| * atol(w_hat)), plus the
// reference's own summation rounding. A stored output that no check covers is reported as a FAIL.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import { Graph, type Tensor } from '../graph/index.ts';
import { compile } from '../runtime/session.ts';
import { readSafetensors } from '../io/safetensors.ts';
import type { TensorData } from '../io/tensor.ts';
import { compare, type CompareLine } from '../verify/compare.ts';
import { FixtureChecker } from '../verify/fixture_checker.ts';
import { compareWithin } from '../verify/kinks.ts';
import { readCheckpoint } from './checkpoint.ts';
import { FfclipMapper, FFCLIP_PREFIX, semanticModulationBlock, type Taps } from './ffclip.ts';
import type { ParamRefs, ParamSet } from './params.ts';

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

type Mode = 'e2e' | 'api' | 'local' | 'local64';
/** Up to 2 significant digits, rounded up (widened tolerances are printed). */
const roundUp = (v: number) => { if (!(v > 0)) return v; const q = 10 ** (Math.floor(Math.log10(v)) - 1); return Number((Math.ceil(v / q - 1e-9) * q).toPrecision(2)); };
const LABEL: Record<Mode, string> = { e2e: 'e2e f64', api: 'e2e f32 api', local: 'block-local', local64: 'block-local f64' };
/** How far our own float32 block-local error may exceed the reference's tolerance (see checkLocal). */
const OWN_F32_GUARD = 10;

interface Fixture { tensors: Map<string, TensorData>; e2e: Record<string, number>; local: Record<string, number> }

function readFixture(path: string): Fixture | null {
  if (!existsSync(path)) return null;
  const f = readSafetensors(path);
  const parse = (s?: string) => (s ? (JSON.parse(s) as Record<string, number>) : {});
  return { tensors: f.tensors, e2e: parse(f.metadata.suggested_atol), local: parse(f.metadata.suggested_atol_block_local) };
}

class Checker extends FixtureChecker {
  constructor(private readonly fx: Fixture, file: string) { super(fx.tensors, file, INPUTS); }

  atol(key: string, mode: Mode): number | undefined { return (mode === 'local' || mode === 'local64' ? this.fx.local : this.fx.e2e)[key]; }

  /** `extra` widens the fixture's atol (a measured own float32 error, see the header). */
  check(key: string, got: ArrayLike<number>, mode: Mode, extra = 0): void {
    if (!this.has(key)) return;
    this.covered.add(key);
    const a = this.atol(key, mode);
    const tol = a !== undefined ? { atol: roundUp(a + extra), rtol: 0 } : { atol: roundUp(1e-4 + extra), rtol: 1e-4 };
    this.lines.push(compare(`${this.file}:${key} [${LABEL[mode]}]`, got, this.get(key), tol));
  }

  /**
   * A block-local value in both precisions: the float64 one strictly (the function), the float32
   * one with each element's atol widened by its own float32 error |f32 - f64| (two float32
   * summation orders of one cancelling reduction differ by up to ~10x the reference's single
   * sample of its error), as long as that own error stays within OWN_F32_GUARD x atol (a float32
   * formulation much worse than PyTorch's still fails).
   */
  checkLocal(key: string, got32: ArrayLike<number>, got64: ArrayLike<number>): void {
    if (!this.has(key)) return;
    this.check(key, got64, 'local64');
    const a = this.atol(key, 'local') ?? 1e-4;
    const ref = this.get(key);
    let own = 0;
    const spread = new Float64Array(ref.length);
    for (let i = 0; i < ref.length; i++) { spread[i] = Math.abs(got32[i] - got64[i]); own = Math.max(own, spread[i]); }
    const line = compareWithin(`${this.file}:${key} [${LABEL.local}]`, got32, ref, a, spread, 'own f32 error');
    if (own > OWN_F32_GUARD * a) { line.pass = false; line.rule += `; own float32 error ${own.toExponential(2)} > ${OWN_F32_GUARD} x atol`; }
    this.lines.push(line);
  }

  /** The f32 API value `got` against the reference, widened by its distance to our float64 value. */
  checkApi(key: string, got: ArrayLike<number>, f64: ArrayLike<number>): void {
    let own = 0;
    for (let i = 0; i < got.length; i++) own = Math.max(own, Math.abs(got[i] - f64[i]));
    this.check(key, got, 'api', own);
  }

  /**
   * The loss sum(w_hat * R), summed here from our w_hat, so the line checks the loss definition.
   * atol: its suggested atol plus the reference's own summation rounding (stored loss vs the exact
   * sum of the stored w_hat * R); for a float32 w_hat (block-local, API), at least what the w_hat
   * tolerance allows (sum |R| * atol(w_hat)): the float32 errors of w_hat, not the reference's
   * one sample of them, set how far a float32 loss can move.
   */
  checkLoss(key: string, got: number, wHatKey: string, R: Float32Array, mode: Mode, extra = 0): void {
    if (!this.has(key)) return;
    const stored = this.get(key)[0];
    const aw = this.atol(wHatKey, mode);
    let implied = 0; let exact = 0;
    const ref = this.has(wHatKey) ? this.get(wHatKey) : null;
    for (let i = 0; i < R.length; i++) {
      if (aw !== undefined) implied += Math.abs(R[i]) * aw;
      if (ref) exact += ref[i] * R[i];
    }
    const a = this.atol(key, mode) ?? 1e-4 * Math.max(1, Math.abs(stored));
    const base = (mode === 'e2e' ? a : Math.max(a, implied)) + (ref ? Math.abs(exact - stored) : 0);
    this.covered.add(key);
    this.lines.push(compare(`${this.file}:${key} [${LABEL[mode]}]`, [got], [stored], { atol: roundUp(base + extra), rtol: 0 }));
  }
}

/** Compile and run, feeding only the parameters the graph kept (unused ones, like fc, are pruned). */
async function run(outputs: Record<string, Tensor>, feeds: Record<string, Float32Array | Float64Array>): Promise<Record<string, Float32Array | Float64Array>> {
  const c = await compile(outputs);
  const used = Object.fromEntries(Object.entries(feeds).filter(([k]) => c.inputs.has(k)));
  const r = await c.run(used);
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data as Float32Array | Float64Array]));
}

function blockParams(params: ParamSet, i: number): string[] {
  return params.names.filter((k) => k.startsWith(`${FFCLIP_PREFIX}${i}.`));
}

/** The parameters as float64 graph inputs (the float32 values upcast exactly) and their feeds. */
function declare64(params: ParamSet, g: Graph): { p: ParamRefs; feeds: Record<string, Float64Array> } {
  const refs = new Map<string, Tensor>();
  const feeds: Record<string, Float64Array> = {};
  const values = params.feeds();
  for (const s of params.specs) {
    refs.set(s.name, g.input(s.name, s.shape, 'float64'));
    feeds[s.name] = Float64Array.from(values[s.name]);
  }
  return { p: (n) => { const t = refs.get(n); if (!t) throw new Error(`FFCLIP verify: no parameter '${n}'`); return t; }, feeds };
}

const f64 = (a: Float32Array) => Float64Array.from(a);
const seed64 = (t: Tensor) => t.graph.constant(Float64Array.of(1), t.shape);

export async function verify(dir: string): Promise<CompareLine[]> {
  const ioFx = readFixture(join(dir, 'io.safetensors'));
  const grFx = readFixture(join(dir, 'grad.safetensors'));
  if (!ioFx && !grFx) throw new Error(`${dir}: neither io.safetensors nor grad.safetensors`);
  const { mapper } = FfclipMapper.load(findCheckpoint(dir));
  const { blocks, embedWidth: E } = mapper.config;
  const params = mapper.params;
  const io = ioFx ? new Checker(ioFx, 'io') : null;
  const gr = grFx ? new Checker(grFx, 'grad') : null;

  // ---- forward: end to end in float64 (every tap) and through the float32 API, then block by
  // block in float32 on the stored inputs
  if (io?.has('ffclip.w')) {
    const wShape = io.shape('ffclip.w');
    const B = wShape[0];
    const w = { data: io.get('ffclip.w'), shape: wShape };
    const e = io.get('ffclip.e');

    const g = new Graph('ffclip_taps_f64');
    const taps: Taps = {};
    const { p, feeds } = declare64(params, g);
    const d = mapper.delta(g.input('w', wShape, 'float64'), g.input('e', [B, E], 'float64'), p, taps);
    const t = await run({ ...Object.fromEntries(Object.entries(taps).map(([k, v]) => [`ffclip.${k}`, v])), 'ffclip.delta_w': d }, { w: f64(w.data), e: f64(e), ...feeds });
    for (const [k, v] of Object.entries(t)) io.check(k, v, 'e2e');
    const wHat64d = Float64Array.from(w.data, (x, j) => x + t['ffclip.delta_w'][j]);
    io.check('ffclip.w_hat', wHat64d, 'e2e');

    const r = await mapper.edit(w, e);
    io.checkApi('ffclip.delta_w', r.delta.data as Float32Array, t['ffclip.delta_w']);
    io.checkApi('ffclip.w_hat', r.wHat.data as Float32Array, wHat64d);

    // block-local: block i alone on the stored float32 input, in float32 (as the port runs) and
    // float64 (the function)
    const blockTaps = async (i: number, x: Float32Array, dt: 'float32' | 'float64') => {
      const gl = new Graph(`ffclip_block${i}_${dt}`);
      const lt: Taps = {};
      const p64 = dt === 'float64' ? declare64(params, gl) : null;
      const pl = p64 ? p64.p : params.declare(gl);
      semanticModulationBlock(gl.input('x', wShape, dt), G.unsqueeze(gl.input('e', [B, E], dt), 1), pl, `${FFCLIP_PREFIX}${i}`, lt, `ffclip.block${i}.`);
      return run(lt, dt === 'float64' ? { x: f64(x), e: f64(e), ...p64!.feeds } : { x, e, ...params.feeds() });
    };
    for (let i = 0; i < blocks; i++) {
      const inKey = i === 0 ? 'ffclip.w' : `ffclip.block${i - 1}.out`;
      if (!io.has(inKey)) continue;
      const o32 = await blockTaps(i, io.get(inKey), 'float32');
      const o64 = await blockTaps(i, io.get(inKey), 'float64');
      for (const k of Object.keys(o32)) io.checkLocal(k, o32[k], o64[k]);
      if (i === blocks - 1) {
        const out = `ffclip.block${i}.out`;
        io.checkLocal('ffclip.delta_w', o32[out], o64[out]);
        io.checkLocal('ffclip.w_hat', w.data.map((x, j) => x + o32[out][j]), Float64Array.from(w.data, (x, j) => x + o64[out][j]));
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
    const sum = (a: ArrayLike<number>) => { let s = 0; for (let j = 0; j < a.length; j++) s += a[j] * R[j]; return s; };

    // end to end in float64: one graph gives the plain gradients (w, e, every parameter) and the
    // per-block ones (each block gets its own copy of e, so its e-gradient is "through block i
    // only"; the gradient w.r.t. each block's output is read off the same graph)
    const g = new Graph('ffclip_grads_f64');
    const wt = g.input('w', wShape, 'float64');
    const { p, feeds } = declare64(params, g);
    const es: Tensor[] = [];
    const outs: Tensor[] = [];
    let x = wt;
    for (let i = 0; i < blocks; i++) {
      es.push(g.input(`e${i}`, [B, E], 'float64'));
      x = semanticModulationBlock(x, G.unsqueeze(es[i], 1), p, `${FFCLIP_PREFIX}${i}`);
      outs.push(x);
    }
    const Rt = g.constant(f64(R), wShape);
    const loss = G.reduceSum(G.mul(G.add(wt, x), Rt));
    const used = params.specs.filter((s) => s.used !== false).map((s) => s.name);
    const grads = G.vjp([loss], [seed64(loss)], [wt, ...es, ...outs, ...used.map(p)]);
    const named: Record<string, Tensor> = { 'ffclip.delta_w': x, 'ffclip.grad.w': grads[0], 'ffclip.grad.block0.x_in': G.sub(grads[0], Rt) };
    for (let i = 0; i < blocks; i++) {
      named[`ffclip.grad.block${i}.e`] = grads[1 + i];
      named[`ffclip.grad.block${i}.out`] = grads[1 + blocks + i];
      if (i > 0) named[`ffclip.grad.block${i}.x_in`] = grads[1 + blocks + i - 1];
    }
    used.forEach((n, j) => { named[`ffclip.grad.${n}`] = grads[1 + 2 * blocks + j]; });
    const e64 = f64(e);
    const ef: Record<string, Float64Array> = {};
    for (let i = 0; i < blocks; i++) ef[`e${i}`] = e64;
    const o64 = await run(named, { w: f64(w.data), ...ef, ...feeds });
    const ge = new Float64Array(B * E);
    for (let i = 0; i < blocks; i++) { const gi = o64[`ffclip.grad.block${i}.e`]; for (let j = 0; j < ge.length; j++) ge[j] += gi[j]; }
    o64['ffclip.grad.e'] = ge;
    const wHat64 = Float64Array.from(w.data, (v, j) => v + o64['ffclip.delta_w'][j]);
    o64['ffclip.w_hat'] = wHat64;
    for (const [k, v] of Object.entries(o64)) gr.check(k, v, 'e2e');
    const loss64 = sum(wHat64);
    gr.checkLoss('ffclip.loss', loss64, 'ffclip.w_hat', R, 'e2e');
    // parameters that never reach the output (fc): exact zeros
    const zeros = (n: string) => new Float64Array(params.specs.find((s) => s.name === n)!.shape.reduce((a, b) => a * b, 1));
    for (const s of params.specs) if (s.used === false) gr.check(`ffclip.grad.${s.name}`, zeros(s.name), 'e2e');

    // the float32 public API against the same reference, widened by its distance to float64
    const r = await mapper.edit(w, e);
    const wHat = r.wHat.data as Float32Array;
    gr.checkApi('ffclip.delta_w', r.delta.data as Float32Array, o64['ffclip.delta_w']);
    gr.checkApi('ffclip.w_hat', wHat, wHat64);
    gr.checkLoss('ffclip.loss', sum(wHat), 'ffclip.w_hat', R, 'api', Math.abs(sum(wHat) - loss64));
    const v = await mapper.vjp(w, e, R);
    gr.checkApi('ffclip.grad.w', v.w.map((xv, j) => xv + R[j]), o64['ffclip.grad.w']);
    gr.checkApi('ffclip.grad.e', v.e, o64['ffclip.grad.e']);
    for (const [k, xv] of v.params) gr.checkApi(`ffclip.grad.${k}`, xv, o64[`ffclip.grad.${k}`] ?? zeros(k));

    // block-local: VJP of block i at the stored input (block outputs from io.safetensors) with the
    // stored upstream gradient, in float32 and float64
    const ioT = io;
    const blockIn = (i: number): Float32Array | null => (i === 0 ? w.data : ioT?.has(`ffclip.block${i - 1}.out`) ? ioT.get(`ffclip.block${i - 1}.out`) : null);
    const blockVjp = async (i: number, xin: Float32Array, up: Float32Array, dt: 'float32' | 'float64') => {
      const gl = new Graph(`ffclip_block${i}_vjp_${dt}`);
      const xt = gl.input('x', wShape, dt);
      const et = gl.input('e', [B, E], dt);
      const p64 = dt === 'float64' ? declare64(params, gl) : null;
      const pl = p64 ? p64.p : params.declare(gl);
      const y = semanticModulationBlock(xt, G.unsqueeze(et, 1), pl, `${FFCLIP_PREFIX}${i}`);
      const names = blockParams(params, i);
      const seed = gl.constant(dt === 'float64' ? f64(up) : up, wShape);
      const gs = G.vjp([y], [seed], [xt, et, ...names.map((n) => pl(n))]);
      const nm: Record<string, Tensor> = { 'grad:x': gs[0], 'grad:e': gs[1], 'out:y': y };
      names.forEach((n, j) => { nm[`p:${n}`] = gs[2 + j]; });
      return { names, o: await run(nm, dt === 'float64' ? { x: f64(xin), e: f64(e), ...p64!.feeds } : { x: xin, e, ...params.feeds() }) };
    };
    const gradE = [new Float64Array(B * E), new Float64Array(B * E)];
    let gradW: [Float32Array, Float64Array] | null = null;
    let allBlocks = true;
    for (let i = 0; i < blocks; i++) {
      const xin = blockIn(i);
      const upKey = `ffclip.grad.block${i}.out`;
      if (!xin || !gr.has(upKey)) { allBlocks = false; continue; }
      const { names, o: o32 } = await blockVjp(i, xin, gr.get(upKey), 'float32');
      const { o: o64 } = await blockVjp(i, xin, gr.get(upKey), 'float64');
      gr.checkLocal(`ffclip.grad.block${i}.x_in`, o32['grad:x'], o64['grad:x']);
      gr.checkLocal(`ffclip.grad.block${i}.e`, o32['grad:e'], o64['grad:e']);
      for (const n of names) gr.checkLocal(`ffclip.grad.${n}`, o32[`p:${n}`], o64[`p:${n}`]);
      for (let j = 0; j < B * E; j++) { gradE[0][j] += o32['grad:e'][j]; gradE[1][j] += o64['grad:e'][j]; }
      if (i === 0) gradW = [(o32['grad:x'] as Float32Array).map((xv, j) => xv + R[j]), Float64Array.from(o64['grad:x'], (xv, j) => xv + R[j])];
      if (i === blocks - 1) {
        gr.checkLocal('ffclip.delta_w', o32['out:y'], o64['out:y']);
        const wl = w.data.map((xv, j) => xv + o32['out:y'][j]);
        const wl64 = Float64Array.from(w.data, (xv, j) => xv + o64['out:y'][j]);
        gr.checkLocal('ffclip.w_hat', wl, wl64);
        gr.checkLoss('ffclip.loss', sum(wl), 'ffclip.w_hat', R, 'local');
      }
    }
    if (allBlocks) {
      gr.checkLocal('ffclip.grad.w', gradW![0], gradW![1]);
      gr.checkLocal('ffclip.grad.e', gradE[0], gradE[1]);
    }
  }
  io?.uncovered();
  gr?.uncovered();
  return [...(io?.lines ?? []), ...(gr?.lines ?? [])];
}
