// The StyleGAN2 building blocks and the small ops around them against PyTorch
// (test/fixtures/ops, see that folder's README): upfirdn2d (Upsample, Downsample, Blur, negative
// pads), ModulatedConv2d / StyledConv / ToRGB (modconv + grad_modconv: gradients w.r.t. the input,
// the style, the noise, the skip image and EVERY parameter, including the conv weight that the
// generator itself keeps constant), the activations (fused leaky ReLU, EqualLinear, PixelNorm,
// QuickGELU, LayerNorm, LeakyReLU) and CLIP's input normalisation (clip_norm + grad_clip_norm).
// The resize / adaptive-pool fixtures are checked in src/graph/ops/resample.test.ts.
//
// Each op case builds `out` from named leaves (inputs and parameters as graph inputs, kernels as
// host constants), then `loss = sum(out * R)` and the gradient w.r.t. every leaf the file has a
// `<op>.grad.<leaf>` for. Tolerances: forward values within the file's suggested atol (10x the
// float32-vs-float64 / thread-count spread PyTorch itself shows); the scalar loss within that atol
// plus 1e-6 x |loss| (a float32 sum over the whole output, so summation order alone moves it);
// gradients within GRAD_REL x max|ref| (README: compare gradients relative to their largest entry).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../../graph/index.ts';
import type { Graph, Tensor } from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import type { TensorData } from '../../io/tensor.ts';
import { compare, formatLine, type CompareLine } from '../../verify/compare.ts';
import { InputWeights, Weights, type ParamSource } from '../common.ts';
import { fixturePath } from '../testing.ts';
import { clipNormalize, hairclipRenorm } from '../clip/preprocess.ts';
import { Blur, EqualLinear, ModulatedConv2d, StyledConv, ToRGB, Upsample, fusedLeakyRelu, pixelNorm } from './stylegan2.ts';

/** Gradients: max|g - ref| <= GRAD_REL * max|ref| (PyTorch's own float32-vs-float64 floor is <= 1.7e-6). */
const GRAD_REL = 1e-5;

type Build = (g: Graph, P: ParamSource) => Tensor;

function load(file: string): { tensors: Map<string, TensorData>; atol: Record<string, number> } {
  const f = readSafetensors(fixturePath('ops', file));
  return { tensors: f.tensors, atol: f.metadata.suggested_atol ? JSON.parse(f.metadata.suggested_atol) : {} };
}

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
  // the fixture's calls: EqualLinear(16, 12, lr_mul=0.01, activation='fused_lrelu') and EqualLinear(16, 12, bias_init=1)
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

/** Every tensor of the file is a leaf; only kernels (FIR taps, host data) stay constants. */
function leaves(tensors: Map<string, TensorData>): InputWeights {
  return new InputWeights(new Weights('ops fixture', tensors), (key) => !key.endsWith('.kernel'));
}

/** Forward file: `<op>.out` of every case. */
async function forwardLines(file: string, atolFrom: Record<string, number>, cases: Record<string, Build>): Promise<CompareLine[]> {
  const { tensors } = load(file);
  const P = leaves(tensors);
  const g = new G.Graph(file);
  const outs: Record<string, Tensor> = {};
  for (const [op, build] of Object.entries(cases)) outs[op] = build(g, P);
  const r = await evaluate(outs, P.feeds(g));
  return Object.keys(cases).map((op) => {
    const ref = tensors.get(`${op}.out`);
    assert.ok(ref, `${file} has no '${op}.out'`);
    assert.deepEqual(r[op].shape, [...ref.shape], `${op}.out shape`);
    return compare(`${file}:${op}.out`, r[op].data as Float32Array, ref.data as Float32Array, { atol: atolFrom[`${op}.out`] ?? 1e-5, rtol: 0 });
  });
}

/** Gradient file: out, loss and every `<op>.grad.<leaf>` of every case. */
async function gradLines(file: string, cases: Record<string, Build>): Promise<CompareLine[]> {
  const { tensors, atol } = load(file);
  const lines: CompareLine[] = [];
  for (const [op, build] of Object.entries(cases)) {
    const P = leaves(tensors);
    const g = new G.Graph(`${file}:${op}`);
    const out = build(g, P);
    const Rt = tensors.get(`${op}.R`)!;
    const R = g.input(`${op}.R`, Rt.shape);
    const loss = G.reshape(G.reduceSum(G.mul(out, R)), [1]);
    const gradKeys = [...tensors.keys()].filter((k) => k.startsWith(`${op}.grad.`));
    assert.ok(gradKeys.length, `${file} has no gradients for '${op}'`);
    const inputs = P.inputs(g);
    const wrt = gradKeys.map((k) => {
      const leaf = k.slice(`${op}.grad.`.length);
      const t = inputs.get(leaf);
      assert.ok(t, `${op}: the fixture differentiates w.r.t. '${leaf}', which the op does not use`);
      return t;
    });
    const grads = G.grad(loss, wrt);
    const outs: Record<string, Tensor> = { out, loss };
    gradKeys.forEach((k, i) => { outs[k] = grads[i]; });
    const r = await evaluate(outs, { ...P.feeds(g), [`${op}.R`]: Rt.data as Float32Array });
    const ref = (k: string) => tensors.get(k)!.data as Float32Array;
    lines.push(compare(`${file}:${op}.out`, r.out.data as Float32Array, ref(`${op}.out`), { atol: atol[`${op}.out`], rtol: 0 }));
    lines.push(compare(`${file}:${op}.loss`, r.loss.data as Float32Array, ref(`${op}.loss`), { atol: atol[`${op}.loss`], rtol: 1e-6 }));
    for (const k of gradKeys) lines.push(compare(`${file}:${k}`, r[k].data as Float32Array, ref(k), { relMax: GRAD_REL }));
  }
  return lines;
}

function assertAll(t: { diagnostic(s: string): void }, lines: CompareLine[]): void {
  for (const l of lines) t.diagnostic(formatLine(l));
  for (const l of lines) assert.ok(l.pass, formatLine(l));
}

test('upfirdn2d (Upsample, Downsample, Blur, negative pads) matches upfirdn2d_native, forward and gradients', async (t) => {
  const atol = load('grad_upfirdn2d.safetensors').atol;
  assertAll(t, [...await forwardLines('upfirdn2d.safetensors', atol, UPFIRDN), ...await gradLines('grad_upfirdn2d.safetensors', UPFIRDN)]);
});

test('ModulatedConv2d / StyledConv / ToRGB (non-fused) match model.py, with gradients w.r.t. inputs, style, noise, skip and every parameter', async (t) => {
  const atol = load('grad_modconv.safetensors').atol;
  const lines = [...await forwardLines('modconv.safetensors', atol, MODCONV), ...await gradLines('grad_modconv.safetensors', MODCONV)];
  // every gradient the file holds was compared (6 ops: out + loss + their gradients)
  const nGrads = [...load('grad_modconv.safetensors').tensors.keys()].filter((k) => k.includes('.grad.')).length;
  assert.equal(lines.length, 6 + 6 * 2 + nGrads);
  assertAll(t, lines);
});

test('fused leaky ReLU, EqualLinear, PixelNorm, QuickGELU, LayerNorm, LeakyReLU match PyTorch, forward and gradients', async (t) => {
  const atol = load('grad_activations.safetensors').atol;
  assertAll(t, [...await forwardLines('activations.safetensors', atol, ACTIVATIONS), ...await gradLines('grad_activations.safetensors', ACTIVATIONS)]);
});

test('CLIP Normalize and the HairCLIP renorm: gradients match PyTorch (grad_clip_norm)', async (t) => {
  const atol = load('grad_clip_norm.safetensors').atol;
  assertAll(t, [...await forwardLines('clip_norm.safetensors', atol, CLIP_NORM), ...await gradLines('grad_clip_norm.safetensors', CLIP_NORM)]);
});
