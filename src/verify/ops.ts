// `clipmapper verify` for an ops/ fixture folder (shared/fixtures/ops, see its README): the StyleGAN2
// building blocks and the small ops around them against PyTorch —
//   upfirdn2d (+ grad_):   Upsample, Downsample, Blur, a generic up/down with negative pads
//   modconv (+ grad_):     ModulatedConv2d / StyledConv / ToRGB, gradients w.r.t. the inputs, the
//                          style, the noise, the skip image and every parameter (also the conv
//                          weight the generator keeps constant)
//   activations (+ grad_): fused leaky ReLU, EqualLinear, PixelNorm, QuickGELU, LayerNorm, LeakyReLU
//   clip_norm (+ grad_):   CLIP's Normalize and HairCLIP's renorm
//   resize (+ grad_):      adaptive average pools, bicubic (PyTorch's float32 source coordinates),
//                          CLIPLoss's nearest x7 + AvgPool, IDLoss's crop + pool
// Sizes come from the files (the op names say which op, the stored shapes say how big), so other
// seeds and sizes of the same recipe verify the same way.
//
// Tolerances: forward values within the gradient file's per-tensor suggested_atol (10x the spread
// PyTorch itself shows between float32 and float64 and between thread counts); the scalar loss
// sum(out * R) within that atol plus 1e-6 |loss| (a float32 sum over the whole output, so summation
// order alone moves it); gradients of the module cases within GRAD_REL x max|ref| (the README:
// compare gradients relative to their largest entry), CLIP's normalisation's also within their atol
// and its loss, summed exactly from our terms, within the atol alone; the resize gradients within
// their atol.
// Every stored output no case compared is a FAIL line ("not checked"), so a fixture cannot pass by
// holding something this verifier does not know.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import type { Graph, Tensor } from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { readSafetensors } from '../io/safetensors.ts';
import type { TensorData } from '../io/tensor.ts';
import { InputWeights, Weights, sumAll, type ParamSource } from '../nets/common.ts';
import { clipNormalize, hairclipRenorm } from '../nets/clip/preprocess.ts';
import { Blur, EqualLinear, ModulatedConv2d, StyledConv, ToRGB, Upsample, fusedLeakyRelu, pixelNorm } from '../nets/stylegan2/stylegan2.ts';
import { adaptiveAvgPool2d, resize, upsamplePool } from '../graph/ops/resample.ts';
import { compare, type CompareLine } from './compare.ts';

/** Gradients: max|g - ref| <= GRAD_REL * max|ref| (PyTorch's own float32-vs-float64 floor is <= 1.7e-6). */
export const GRAD_REL = 1e-5;

type Build = (g: Graph, P: ParamSource) => Tensor;

/** A ModulatedConv2d / StyledConv's sizes from its stored weights, as the constructor call had them. */
function modSizes(P: ParamSource, prefix: string) {
  const [, out, inC, k] = P.shape(`${prefix}.weight`);
  const styleDim = P.shape(`${prefix}.modulation.weight`)[1];
  return { out, inC, k, styleDim };
}
const blurSize = (P: ParamSource, key: string) => P.shape(key)[0];

const UPFIRDN: Record<string, Build> = {
  upsample: (g, P) => new Upsample(P, 'upsample').forward(P.tensor(g, 'upsample.in')),
  downsample: (g, P) => G.upfirdn2d(P.tensor(g, 'upsample.in'), P.data('downsample.kernel'), 4, 4, { down: 2, pad: [1, 1] }),
  blur_up: (g, P) => new Blur(P, 'blur_up', [1, 1]).forward(P.tensor(g, 'blur_up.in')),
  blur_down: (g, P) => G.upfirdn2d(P.tensor(g, 'upsample.in'), P.data('blur_down.kernel'), 4, 4, { pad: [2, 2] }),
  generic_up2_down1_pad_m1_3: (g, P) => G.upfirdn2d(P.tensor(g, 'upsample.in'), P.data('upsample.kernel'), 4, 4, { up: 2, padXY: [-1, 3, -1, 3] }),
};

const MODCONV: Record<string, Build> = {
  modconv_up: (g, P) => {
    const s = modSizes(P, 'modconv_up');
    return new ModulatedConv2d(P, 'modconv_up', s.inC, s.out, s.k, s.styleDim, true, true, blurSize(P, 'modconv_up.blur.kernel'))
      .forward(P.tensor(g, 'x'), P.tensor(g, 'style'));
  },
  modconv: (g, P) => {
    const s = modSizes(P, 'modconv');
    return new ModulatedConv2d(P, 'modconv', s.inC, s.out, s.k, s.styleDim, true, false).forward(P.tensor(g, 'x'), P.tensor(g, 'style'));
  },
  modconv_rgb: (g, P) => {
    const s = modSizes(P, 'modconv_rgb');
    return new ModulatedConv2d(P, 'modconv_rgb', s.inC, s.out, s.k, s.styleDim, false, false).forward(P.tensor(g, 'x_rgb'), P.tensor(g, 'style'));
  },
  styledconv_up: (g, P) => {
    const s = modSizes(P, 'styledconv_up.conv');
    return new StyledConv(P, 'styledconv_up', s.inC, s.out, s.k, s.styleDim, true, blurSize(P, 'styledconv_up.conv.blur.kernel'))
      .forward(P.tensor(g, 'x'), P.tensor(g, 'style'), P.tensor(g, 'noise'));
  },
  torgb_skip: (g, P) => {
    const s = modSizes(P, 'torgb.conv');
    return new ToRGB(P, 'torgb', s.inC, s.styleDim).forward(P.tensor(g, 'x_rgb'), P.tensor(g, 'style'), P.tensor(g, 'skip'));
  },
  torgb_noskip: (g, P) => {
    const s = modSizes(P, 'torgb.conv');
    return new ToRGB(P, 'torgb', s.inC, s.styleDim).forward(P.tensor(g, 'x_rgb'), P.tensor(g, 'style'));
  },
};

function equalLinear(P: ParamSource, prefix: string, lrMul: number, activation: boolean): EqualLinear {
  const [out, inDim] = P.shape(`${prefix}.weight`);
  return new EqualLinear(P, prefix, inDim, out, lrMul, activation);
}
const ACTIVATIONS: Record<string, Build> = {
  fused_lrelu_4d: (g, P) => fusedLeakyRelu(P.tensor(g, 'fused_lrelu_4d.in'), P.tensor(g, 'fused_lrelu_4d.bias')),
  fused_lrelu_2d: (g, P) => fusedLeakyRelu(P.tensor(g, 'fused_lrelu_2d.in'), P.tensor(g, 'fused_lrelu_2d.bias')),
  fused_lrelu_nobias: (g, P) => fusedLeakyRelu(P.tensor(g, 'fused_lrelu_4d.in'), null),
  // the fixture's calls: EqualLinear(in, out, lr_mul=0.01, activation='fused_lrelu') and EqualLinear(in, out, bias_init=1)
  equal_linear_mapping: (g, P) => equalLinear(P, 'equal_linear_mapping', 0.01, true).forward(P.tensor(g, 'fused_lrelu_2d.in')),
  equal_linear_modulation: (g, P) => equalLinear(P, 'equal_linear_modulation', 1, false).forward(P.tensor(g, 'fused_lrelu_2d.in')),
  pixelnorm: (g, P) => pixelNorm(P.tensor(g, 'fused_lrelu_2d.in')),
  pixelnorm_3d: (g, P) => pixelNorm(P.tensor(g, 'pixelnorm_3d.in')),
  quickgelu: (g, P) => G.quickGelu(P.tensor(g, 'quickgelu.in')),
  layernorm_2dims: (g, P) => {
    const x = P.tensor(g, 'fused_lrelu_2d.in');
    return G.reshape(G.layerNorm(G.unsqueeze(x, 0), null, null, 1e-5, 2), x.shape);
  },
  'leakyrelu_0.01': (g, P) => G.leakyRelu(P.tensor(g, 'fused_lrelu_2d.in'), 0.01),
};

const CLIP_NORM: Record<string, Build> = {
  hairclip_renorm: (g, P) => hairclipRenorm(P.tensor(g, 'hairclip_renorm.in')),
  clip_normalize_01: (g, P) => clipNormalize(P.tensor(g, 'clip_normalize_01.in')),
};

/**
 * The module groups: forward file, gradient file, cases, and whether the gradients and the loss
 * must also meet the file's per-tensor atol. CLIP's normalisation is affine, so its gradients are
 * exact up to one rounding and were held to that atol (5e-6 for a gradient of max 7.3), far
 * tighter than GRAD_REL x max|ref|; the module cases' gradients sum over many products and keep
 * the relative rule.
 */
const GROUPS: [string, Record<string, Build>, boolean][] = [
  ['upfirdn2d', UPFIRDN, false], ['modconv', MODCONV, false], ['activations', ACTIVATIONS, false], ['clip_norm', CLIP_NORM, true],
];

// ---------------------------------------------------------------- bookkeeping

interface Fixture { file: string; tensors: Map<string, TensorData>; atol: Record<string, number>; covered: Set<string> }

function open(dir: string, file: string): Fixture | null {
  const path = join(dir, file);
  if (!existsSync(path)) return null;
  const f = readSafetensors(path);
  return { file, tensors: f.tensors, atol: f.metadata.suggested_atol ? JSON.parse(f.metadata.suggested_atol) as Record<string, number> : {}, covered: new Set() };
}

const fail = (name: string, rule: string): CompareLine => ({ name, maxAbs: NaN, maxRel: NaN, pass: false, rule });

/** One line for a tensor held to two rules: passes when both do. */
function both(a: CompareLine, b: CompareLine): CompareLine {
  return { name: a.name, maxAbs: Math.max(a.maxAbs, b.maxAbs), maxRel: Math.max(a.maxRel, b.maxRel), pass: a.pass && b.pass, rule: `${a.rule}; ${b.rule}` };
}

/** Compares got with the stored `key` of `f` (and marks it covered); a missing or mis-shaped tensor is a FAIL. */
function check(f: Fixture, key: string, got: { data: ArrayLike<number | bigint>; shape?: readonly number[] }, tol: Parameters<typeof compare>[3]): CompareLine {
  const ref = f.tensors.get(key);
  const name = `${f.file}:${key}`;
  if (!ref) return fail(name, 'not in the fixture');
  f.covered.add(key);
  if (got.shape && ref.shape.length && got.shape.join() !== ref.shape.join()) return fail(name, `shape [${got.shape}] != [${ref.shape}]`);
  return compare(name, got.data, ref.data as ArrayLike<number>, tol);
}

/** Stored results (not inputs) no case compared. */
function uncovered(f: Fixture, isOutput: (key: string) => boolean): CompareLine[] {
  return [...f.tensors.keys()].filter((k) => isOutput(k) && !f.covered.has(k)).map((k) => fail(`${f.file}:${k}`, 'not checked by this verifier'));
}
const RESULT = /\.(out|loss)$|\.grad\./;

/** Every tensor of the file is a leaf; only kernels (FIR taps, host data) stay constants. */
function leaves(tensors: Map<string, TensorData>): InputWeights {
  return new InputWeights(new Weights('ops fixture', tensors), (key) => !key.endsWith('.kernel'));
}

// ---------------------------------------------------------------- module cases

/** Forward file: `<op>.out` of every case the file holds. */
async function forwardLines(f: Fixture, atol: Record<string, number>, cases: Record<string, Build>): Promise<CompareLine[]> {
  const ops = Object.keys(cases).filter((op) => f.tensors.has(`${op}.out`));
  if (!ops.length) return [];
  const P = leaves(f.tensors);
  const g = new G.Graph(f.file);
  const outs: Record<string, Tensor> = {};
  for (const op of ops) outs[op] = cases[op](g, P);
  const r = await evaluate(outs, P.feeds(g));
  return ops.map((op) => check(f, `${op}.out`, r[op], { atol: atol[`${op}.out`] ?? 1e-5, rtol: 0 }));
}

/** Gradient file: out, loss and every `<op>.grad.<leaf>` of every case the file holds. */
async function gradLines(f: Fixture, cases: Record<string, Build>, alsoAtol: boolean): Promise<CompareLine[]> {
  const lines: CompareLine[] = [];
  for (const [op, build] of Object.entries(cases)) {
    if (!f.tensors.has(`${op}.R`)) continue;
    f.covered.add(`${op}.R`);
    const P = leaves(f.tensors);
    const g = new G.Graph(`${f.file}:${op}`);
    const out = build(g, P);
    const Rt = f.tensors.get(`${op}.R`)!;
    const R = g.input(`${op}.R`, Rt.shape);
    // axis by axis (sumAll), not one ReduceSum over everything: a single float32 accumulation drifts
    // ~1e-4 from PyTorch's pairwise sum on a 2x4x48x48 upsample output, past the loss atol
    const loss = G.reshape(sumAll(G.mul(out, R)), [1]);
    const gradKeys = [...f.tensors.keys()].filter((k) => k.startsWith(`${op}.grad.`));
    if (!gradKeys.length) { lines.push(fail(`${f.file}:${op}.grad.*`, 'the fixture has no gradients for this op')); continue; }
    const inputs = P.inputs(g);
    const wrt: Tensor[] = [];
    const known: string[] = [];
    for (const k of gradKeys) {
      const t = inputs.get(k.slice(`${op}.grad.`.length));
      if (t) { wrt.push(t); known.push(k); } else lines.push(fail(`${f.file}:${k}`, 'the op does not use this leaf'));
    }
    const grads = G.grad(loss, wrt);
    const outs: Record<string, Tensor> = { out, loss };
    known.forEach((k, i) => { outs[k] = grads[i]; });
    const r = await evaluate(outs, { ...P.feeds(g), [`${op}.R`]: Rt.data as Float32Array });
    lines.push(check(f, `${op}.out`, r.out, { atol: f.atol[`${op}.out`] ?? 1e-5, rtol: 0 }));
    const lossAtol = f.atol[`${op}.loss`] ?? 1e-5;
    if (alsoAtol) {
      // the loss as the exact sum of our own float32 terms, within the atol alone (no summation-order allowance)
      const ov = r.out.data as Float32Array; const rv = Rt.data as Float32Array;
      let exact = 0;
      for (let i = 0; i < ov.length; i++) exact += ov[i] * rv[i];
      lines.push(check(f, `${op}.loss`, { data: [exact] }, { atol: lossAtol, rtol: 0 }));
    } else {
      lines.push(check(f, `${op}.loss`, r.loss, { atol: lossAtol, rtol: 1e-6 }));
    }
    for (const k of known) {
      const rel = check(f, k, r[k], { relMax: GRAD_REL });
      lines.push(alsoAtol ? both(rel, check(f, k, r[k], { atol: f.atol[k] ?? 1e-5, rtol: 0 })) : rel);
    }
  }
  return lines;
}

// ---------------------------------------------------------------- resize / pools

/** x = (u8 - 128) / 128, exact in float32, as the fixtures define it. */
function u8ToImage(t: TensorData): Float32Array {
  if (t.dtype !== 'uint8') throw new Error(`expected a uint8 image, got ${t.dtype}`);
  return Float32Array.from(t.data as Uint8Array, (v) => (v - 128) / 128);
}

/**
 * The op a resize-fixture name stands for, sized from the stored output: `<kind>_<A>_to_<B>`
 * (adaptive_avg_pool, bicubic, clip_loss_resize = nn.Upsample(7) + AvgPool(A * 7 / B)).
 */
function resizeOp(name: string, outShape: readonly number[]): ((x: Tensor) => Tensor) | null {
  const [Ho, Wo] = outShape.slice(-2);
  if (name.startsWith('adaptive_avg_pool_')) return (x) => adaptiveAvgPool2d(x, [Ho, Wo]);
  if (name.startsWith('bicubic_')) return (x) => resize(x, [Ho, Wo], 'bicubic');
  if (name.startsWith('clip_loss_resize_')) {
    return (x) => {
      const k = (x.shape[2] * 7) / Ho;
      if (!Number.isInteger(k) || (x.shape[3] * 7) / k !== Wo) throw new Error(`${name}: [${x.shape}] x7 does not pool to [${Ho}, ${Wo}] with an integer kernel`);
      return upsamplePool(x, 7, k);
    };
  }
  return null;
}

/** resize.safetensors: every output from input_u8 (a `_<A>_to_` name whose A is not the input size starts from the pool to A). */
async function resizeLines(f: Fixture): Promise<CompareLine[]> {
  const src = f.tensors.get('input_u8');
  if (!src) return [fail(`${f.file}:input_u8`, 'missing')];
  const size = src.shape[2];
  const g = new G.Graph('resize');
  const x = g.input('x', src.shape);
  const pooled = new Map<number, Tensor>([[size, x]]);
  const from = (a: number) => {
    let t = pooled.get(a);
    if (!t) { t = adaptiveAvgPool2d(x, [a, a]); pooled.set(a, t); }
    return t;
  };
  const outs: Record<string, Tensor> = {};
  const lines: CompareLine[] = [];
  for (const [name, ref] of f.tensors) {
    if (name === 'input_u8') continue;
    const m = /_(\d+)_to_(\d+)$/.exec(name);
    if (!m) continue;
    const a = Number(m[1]);
    if (name.startsWith('idloss_crop_pool_')) {
      // IDLoss.extract_feats on the 256 image: [:, :, 35:223, 32:220], then AdaptiveAvgPool2d(112)
      outs[name] = adaptiveAvgPool2d(G.slice(from(a), [35, 32], [223, 220], [2, 3]), ref.shape.slice(-2) as [number, number]);
      continue;
    }
    const op = resizeOp(name, ref.shape);
    if (op) outs[name] = op(from(a));
  }
  const r = await evaluate(outs, { x: u8ToImage(src) });
  f.covered.add('input_u8');
  // README: the pools are exact up to float32 summation order (suggested atol 1e-6). Bicubic:
  // PyTorch rounds its source coordinates in float32 with a fused multiply-add, which resizeMatrix
  // emulates, so it is held to 1e-5 — well below the 7.5e-5 of a float64-coordinate bicubic.
  for (const k of Object.keys(outs)) lines.push(check(f, k, r[k], { atol: k.startsWith('bicubic') ? 1e-5 : 1e-6, rtol: 0 }));
  return lines;
}

/** grad_resize.safetensors: out, loss = sum(out * R) and d loss / d input of every `<op>.R`. */
async function resizeGradLines(f: Fixture): Promise<CompareLine[]> {
  const lines: CompareLine[] = [];
  for (const key of f.tensors.keys()) {
    if (!key.endsWith('.R')) continue;
    const name = key.slice(0, -2);
    const gradKey = [...f.tensors.keys()].find((k) => k.startsWith(`${name}.grad.`));
    const outRef = f.tensors.get(`${name}.out`);
    if (!gradKey || !outRef) { lines.push(fail(`${f.file}:${name}`, 'needs <op>.out and <op>.grad.<input>')); continue; }
    const input = gradKey.slice(`${name}.grad.`.length);
    const src = f.tensors.get(`${input}_u8`);
    const op = resizeOp(name, outRef.shape);
    if (!src || !op) { lines.push(fail(`${f.file}:${name}`, src ? 'unknown op' : `no ${input}_u8`)); continue; }
    f.covered.add(key); f.covered.add(`${input}_u8`);
    const R = f.tensors.get(key)!;
    const g = new G.Graph(name);
    const x = g.input('x', src.shape);
    const cot = g.input('R', R.shape);
    const y = op(x);
    const [gx] = G.vjp([y], [cot], [x]);
    const r = await evaluate({ y, gx }, { x: u8ToImage(src), R: R.data as Float32Array });
    const yv = r.y.data as Float32Array; const rv = R.data as Float32Array;
    let loss = 0;
    for (let i = 0; i < yv.length; i++) loss += yv[i] * rv[i];
    const tol = (k: string) => ({ atol: f.atol[k] ?? 1e-6, rtol: 0 });
    lines.push(check(f, `${name}.out`, r.y, tol(`${name}.out`)));
    lines.push(check(f, `${name}.loss`, { data: [loss] }, tol(`${name}.loss`)));
    lines.push(check(f, gradKey, r.gx, tol(gradKey)));
  }
  return lines;
}

// ---------------------------------------------------------------- entry points

const FILES = ['upfirdn2d', 'modconv', 'activations', 'clip_norm', 'resize'];

export function detect(dir: string): boolean {
  return FILES.some((f) => existsSync(join(dir, `${f}.safetensors`)) || existsSync(join(dir, `grad_${f}.safetensors`)));
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const lines: CompareLine[] = [];
  const opened: Fixture[] = [];
  for (const [name, cases, alsoAtol] of GROUPS) {
    const fwd = open(dir, `${name}.safetensors`), grd = open(dir, `grad_${name}.safetensors`);
    // the forward file carries no tolerances; the gradient file stores the same outputs with theirs
    if (fwd) lines.push(...await forwardLines(fwd, grd?.atol ?? {}, cases));
    if (grd) lines.push(...await gradLines(grd, cases, alsoAtol));
    for (const f of [fwd, grd]) if (f) { opened.push(f); lines.push(...uncovered(f, (k) => RESULT.test(k))); }
  }
  const rs = open(dir, 'resize.safetensors'), rg = open(dir, 'grad_resize.safetensors');
  if (rs) { lines.push(...await resizeLines(rs)); lines.push(...uncovered(rs, (k) => k !== 'input_u8')); opened.push(rs); }
  if (rg) { lines.push(...await resizeGradLines(rg)); lines.push(...uncovered(rg, (k) => RESULT.test(k))); opened.push(rg); }
  if (!opened.length) throw new Error(`verify ops: none of ${FILES.map((f) => `${f}.safetensors / grad_${f}.safetensors`).join(', ')} in ${dir}`);
  return lines;
}
