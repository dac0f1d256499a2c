// StyleGAN2 generator: rosinality/stylegan2-pytorch model.py `Generator`, the network behind
// `stylegan2-ffhq-config-f.pt` (and the `decoder.*` of e4e / HairCLIP checkpoints).
//
//   style      z -> w: PixelNorm, then n_mlp x EqualLinear(lr_mul 0.01, fused leaky ReLU)
//   input      a learned 4x4 constant
//   conv1      StyledConv at 4x4; to_rgb1 its RGB image
//   convs      per resolution 8..size: an upsampling StyledConv and a plain one
//   to_rgbs    per resolution: ToRGB of the features + the upsampled previous RGB image (skip)
//
// Blocks are named after the checkpoint keys and read top to bottom like model.py. The one
// deliberate difference is how ModulatedConv2d runs: model.py's default "fused" path folds the
// per-sample style into a per-sample weight (a grouped conv over the batch); here it is the
// mathematically identical non-fused path of the same file — scale the input channels by the
// style, run ONE conv with the shared stored weight, multiply the output channels by the
// demodulation coefficients. The conv weight then stays a constant, so ONNX Runtime pre-packs it
// and its fastest conv kernels apply, and the gradient w.r.t. w+ needs input-gradient convs only
// (no weight-gradient convs). The up-conv is conv_transpose2d(stride 2) then Blur, as official.
//
// Other reorderings for speed, each exact up to float32 rounding (the fixtures hold it to PyTorch's
// own float32-vs-float64 spread): StyledConv applies its activation's sqrt(2) to the per-channel
// demodulation, noise strength and bias instead of to the full-size output (leaky_relu is
// positively homogeneous); ToRGB's 1x1 modulated conv is a per-sample [3, C] matrix product; the
// Blur/Upsample FIR filters run as depthwise convs (src/graph/ops/upfirdn2d.ts).
//
// Every size (resolution, style width, mapping depth, channels per resolution, blur kernel
// size) is read from the state dict; the blur/upsample kernels are the stored buffers.
// Sessions: `Synthesis` (w+ -> image forward, and the VJP w+ -> dL/dw+ a trainer chains),
// `mappingSession`, `meanLatent`; `verify.ts` checks all of it against the PyTorch fixtures.
import * as G from '../../graph/index.ts';
import type { Graph, Tensor } from '../../graph/index.ts';
import { TensorData, f32, toFloat32Array } from '../../io/tensor.ts';
import { loadStateDict } from '../../io/weights.ts';
import { selectPrefix } from '../../io/torch.ts';
import { Rng } from '../../train/rng.ts';
import { shapeOf, validateStateDict, Weights, type KeySpec, type ParamSource, type StateDict } from '../common.ts';
import { compile, type CompileOptions, type HostTensor } from '../../runtime/session.ts';
import { makeVjpPair, type NamedVjpPair } from '../../runtime/vjp.ts';

// ---------------------------------------------------------------------------------------------
// Configuration

export interface GeneratorConfig {
  /** output resolution (a power of two >= 4) */
  size: number;
  /** width of z, w and every style vector */
  styleDim: number;
  /** EqualLinear layers of the mapping network */
  nMlp: number;
  /** lr_mul of the mapping layers: not stored in checkpoints; 0.01 in every official config */
  lrMlp: number;
  /** feature channels per resolution (4, 8, ..., size) */
  channels: Record<number, number>;
  /** side of the 2-D blur / upsample kernels (4 for [1,3,3,1]) */
  blurSize: number;
}

/** log2(size), n_latent (w+ rows) and num_layers (noise inputs), as model.py derives them. */
export function derived(c: GeneratorConfig): { logSize: number; nLatent: number; numLayers: number } {
  const logSize = Math.round(Math.log2(c.size));
  return { logSize, nLatent: logSize * 2 - 2, numLayers: (logSize - 2) * 2 + 1 };
}

/** Resolution of noise input k: 4, 8, 8, 16, 16, ... (model.py make_noise / noises.noise_k). */
export function noiseResolution(k: number): number {
  return 2 ** ((k + 5) >> 1);
}

/** The official constructor's config: Generator(size, style_dim, n_mlp, channel_multiplier, blur_kernel, lr_mlp). */
export function generatorConfig(o: { size?: number; styleDim?: number; nMlp?: number; channelMultiplier?: number; blurKernel?: number[]; lrMlp?: number } = {}): GeneratorConfig {
  const size = o.size ?? 1024;
  const cm = o.channelMultiplier ?? 2;
  const all: Record<number, number> = { 4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm };
  if (!(size >= 4 && size <= 1024 && Number.isInteger(Math.log2(size)))) throw new Error(`stylegan2: size ${size} must be a power of two in 4..1024`);
  const channels: Record<number, number> = {};
  for (let r = 4; r <= size; r *= 2) channels[r] = all[r];
  return { size, styleDim: o.styleDim ?? 512, nMlp: o.nMlp ?? 8, lrMlp: o.lrMlp ?? 0.01, channels, blurSize: (o.blurKernel ?? [1, 3, 3, 1]).length };
}

/** The config a state dict was saved from (sizes only; lr_mlp is not stored, pass it if not 0.01). */
export function inferGeneratorConfig(sd: StateDict, what = 'stylegan2', lrMlp = 0.01): GeneratorConfig {
  const [, styleDim] = shapeOf(sd, 'conv1.conv.modulation.weight', what);
  let nMlp = 0;
  while (sd.has(`style.${nMlp + 1}.weight`)) nMlp++;
  if (!nMlp) throw new Error(`${what}: missing 'style.1.weight' (the mapping network)`);
  const channels: Record<number, number> = { 4: shapeOf(sd, 'input.input', what)[1] };
  let j = 0;
  while (sd.has(`to_rgbs.${j}.conv.weight`) || sd.has(`convs.${2 * j}.conv.weight`)) {
    channels[2 ** (j + 3)] = shapeOf(sd, `convs.${2 * j}.conv.weight`, what)[1];
    j++;
  }
  const blurSize = j > 0 ? shapeOf(sd, 'convs.0.conv.blur.kernel', what)[0] : 4;
  return { size: 2 ** (j + 2), styleDim, nMlp, lrMlp, channels, blurSize };
}

// ---------------------------------------------------------------------------------------------
// State dict layout (state_dict() order: a module's own parameters, then its buffers, then its
// children in registration order)

const F = (key: string, shape: number[]): KeySpec => ({ key, shape, dtype: 'F32' });

function equalLinearSpec(prefix: string, inDim: number, outDim: number): KeySpec[] {
  return [F(`${prefix}.weight`, [outDim, inDim]), F(`${prefix}.bias`, [outDim])];
}
function modConvSpec(prefix: string, inC: number, outC: number, k: number, styleDim: number, blur: number | null): KeySpec[] {
  return [
    F(`${prefix}.weight`, [1, outC, inC, k, k]),
    ...(blur ? [F(`${prefix}.blur.kernel`, [blur, blur])] : []),
    ...equalLinearSpec(`${prefix}.modulation`, styleDim, inC),
  ];
}
function styledConvSpec(prefix: string, inC: number, outC: number, styleDim: number, blur: number | null): KeySpec[] {
  return [...modConvSpec(`${prefix}.conv`, inC, outC, 3, styleDim, blur), F(`${prefix}.noise.weight`, [1]), F(`${prefix}.activate.bias`, [outC])];
}
function toRgbSpec(prefix: string, inC: number, styleDim: number, upsample: number | null): KeySpec[] {
  return [
    F(`${prefix}.bias`, [1, 3, 1, 1]),
    ...(upsample ? [F(`${prefix}.upsample.kernel`, [upsample, upsample])] : []),
    ...modConvSpec(`${prefix}.conv`, inC, 3, 1, styleDim, null),
  ];
}

/** Every key and shape `Generator(...).state_dict()` holds for this config, in order. */
export function generatorSpec(c: GeneratorConfig): KeySpec[] {
  const { logSize, numLayers } = derived(c);
  const D = c.styleDim;
  const s: KeySpec[] = [];
  for (let i = 1; i <= c.nMlp; i++) s.push(...equalLinearSpec(`style.${i}`, D, D));
  s.push(F('input.input', [1, c.channels[4], 4, 4]));
  s.push(...styledConvSpec('conv1', c.channels[4], c.channels[4], D, null));
  s.push(...toRgbSpec('to_rgb1', c.channels[4], D, null));
  let inC = c.channels[4];
  for (let i = 3; i <= logSize; i++) {
    const outC = c.channels[2 ** i];
    const j = i - 3;
    s.push(...styledConvSpec(`convs.${2 * j}`, inC, outC, D, c.blurSize));
    s.push(...styledConvSpec(`convs.${2 * j + 1}`, outC, outC, D, null));
    inC = outC;
  }
  for (let i = 3; i <= logSize; i++) s.push(...toRgbSpec(`to_rgbs.${i - 3}`, c.channels[2 ** i], D, c.blurSize));
  for (let k = 0; k < numLayers; k++) s.push(F(`noises.noise_${k}`, [1, 1, noiseResolution(k), noiseResolution(k)]));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Building blocks (each holds its key prefix; parameters come from a ParamSource: checkpoint
// constants normally, graph inputs when a test differentiates w.r.t. them)

/** x * rsqrt(mean(x^2, dim=1) + 1e-8) */
export function pixelNorm(x: Tensor): Tensor {
  return G.mul(x, G.reciprocal(G.sqrt(G.add(G.reduceMean(G.mul(x, x), [1], true), 1e-8))));
}

/**
 * op/fused_act.py fused_leaky_relu (its CPU path): leaky_relu(x + bias on dim 1, 0.2) * sqrt(2).
 * `bias` null: the bias-free variant.
 */
export function fusedLeakyRelu(x: Tensor, bias: Tensor | null): Tensor {
  let y = x;
  if (bias) y = G.add(y, G.reshape(bias, [1, bias.size, ...new Array(x.rank - 2).fill(1)]));
  return G.mul(G.leakyRelu(y, 0.2), Math.SQRT2);
}

/** make_kernel(k) * factor^2: outer(k, k) / sum^2 (the values the kernel buffers hold). */
export function makeKernel(k: number[], factor = 1): Float32Array {
  return G.makeKernel(k, factor * factor).data;
}

abstract class Module {
  constructor(readonly P: ParamSource, readonly prefix: string) {}
  protected param(g: Graph, name: string): Tensor { return this.P.tensor(g, `${this.prefix}.${name}`); }
}

/** EqualLinear: y = x @ (W * lr_mul / sqrt(in))^T + b * lr_mul, optionally through fused_leaky_relu. */
export class EqualLinear extends Module {
  readonly scale: number;
  constructor(P: ParamSource, prefix: string, readonly inDim: number, readonly outDim: number, readonly lrMul = 1, readonly activation = false) {
    super(P, prefix);
    this.scale = (1 / Math.sqrt(inDim)) * lrMul;
  }
  forward(x: Tensor): Tensor {
    const g = x.graph;
    const w = G.mul(this.param(g, 'weight'), this.scale);
    const b = G.mul(this.param(g, 'bias'), this.lrMul);
    if (this.activation) return fusedLeakyRelu(G.linear(x, w), b);
    return G.linear(x, w, b);
  }
}

/** Blur(kernel, pad, upsample_factor): upfirdn2d with the stored (already scaled) kernel. */
export class Blur extends Module {
  constructor(P: ParamSource, prefix: string, readonly pad: [number, number]) { super(P, prefix); }
  forward(x: Tensor): Tensor {
    const [kh, kw] = this.P.shape(`${this.prefix}.kernel`);
    return G.upfirdn2d(x, this.P.data(`${this.prefix}.kernel`), kh, kw, { pad: this.pad });
  }
}

/** Upsample(kernel, factor 2) of ToRGB's skip path: upfirdn2d(up=2) with the stored kernel. */
export class Upsample extends Module {
  forward(x: Tensor): Tensor {
    const [kh, kw] = this.P.shape(`${this.prefix}.kernel`);
    const factor = 2;
    const p = kh - factor;
    return G.upfirdn2d(x, this.P.data(`${this.prefix}.kernel`), kh, kw, { up: factor, pad: [((p + 1) >> 1) + factor - 1, p >> 1] });
  }
}

/**
 * ModulatedConv2d, non-fused path (see the header): per sample n,
 *   s = modulation(style_n)                                  [in]
 *   y = conv(x_n * s, W * scale)                             (or conv_transpose stride 2 + Blur)
 *   d = rsqrt(sum_{i,kh,kw} (scale * W[o] * s_i)^2 + 1e-8)  [out]  (demodulate)
 *   out = y * d
 * which is model.py's fused computation conv(x_n, W * scale * s * d) reordered.
 */
export class ModulatedConv2d extends Module {
  readonly scale: number;
  readonly modulation: EqualLinear;
  readonly blur?: Blur;
  constructor(
    P: ParamSource, prefix: string,
    readonly inChannel: number, readonly outChannel: number, readonly kernelSize: number, styleDim: number,
    readonly demodulate = true, readonly upsample = false, blurSize = 4,
  ) {
    super(P, prefix);
    this.scale = 1 / Math.sqrt(inChannel * kernelSize * kernelSize);
    this.modulation = new EqualLinear(P, `${prefix}.modulation`, styleDim, inChannel, 1);
    if (upsample) {
      const factor = 2;
      const p = blurSize - factor - (kernelSize - 1);
      this.blur = new Blur(P, `${prefix}.blur`, [((p + 1) >> 1) + factor - 1, (p >> 1) + 1]);
    }
  }

  /** W * scale as [out, in, k, k] (a constant expression: ORT folds it once at load) */
  weight(g: Graph): Tensor {
    const k = this.kernelSize;
    return G.mul(G.reshape(this.param(g, 'weight'), [this.outChannel, this.inChannel, k, k]), this.scale);
  }

  /**
   * `gain` (> 0) scales the output through the demodulation coefficients rather than by a pass
   * over the output (StyledConv folds its activation's sqrt(2) in here).
   */
  forward(x: Tensor, style: Tensor, gain = 1): Tensor {
    const g = x.graph;
    const [N, C, H, W] = x.shape;
    if (C !== this.inChannel) throw new Error(`${this.prefix}: input has ${C} channels, expected ${this.inChannel}`);
    const s = this.modulation.forward(style); // [N, in]
    const weight = this.weight(g);
    // d[n, o] = gain * rsqrt(sum_{i,kh,kw} (W[o,i] s[n,i])^2 + 1e-8) = gain * rsqrt((s^2) @ (sum_{kh,kw} W^2)^T + 1e-8)
    let d: Tensor | null = null;
    if (this.demodulate) {
      const wsq = G.reduceSum(G.mul(weight, weight), [2, 3]); // [out, in]
      d = G.reciprocal(G.sqrt(G.add(G.matmul(G.mul(s, s), G.mT(wsq)), 1e-8))); // [N, out]
      if (gain !== 1) d = G.mul(d, gain);
    } else if (gain !== 1) {
      d = G.expand(g.scalar(gain), [N, this.outChannel]);
    }

    if (this.kernelSize === 1 && !this.upsample) {
      // A 1x1 conv is a matrix product per sample: style and demodulation go into a small
      // [N, out, in] matrix instead of two passes over the features (ToRGB at full resolution).
      let wn = G.mul(G.reshape(weight, [1, this.outChannel, C]), G.reshape(s, [N, 1, C]));
      if (d) wn = G.mul(wn, G.reshape(d, [N, this.outChannel, 1]));
      return G.reshape(G.matmul(wn, G.reshape(x, [N, C, H * W])), [N, this.outChannel, H, W]);
    }
    let out = G.mul(x, G.reshape(s, [N, C, 1, 1]));
    if (this.upsample) {
      out = G.convTranspose2d(out, G.transpose(weight, [1, 0, 2, 3]), null, { stride: 2 });
      out = this.blur!.forward(out);
    } else {
      out = G.conv2d(out, weight, null, { padding: this.kernelSize >> 1 });
    }
    if (d) out = G.mul(out, G.reshape(d, [N, this.outChannel, 1, 1]));
    return out;
  }
}

/** NoiseInjection: image + weight * noise (noise [N|1, 1, H, W], broadcast over channels). */
export class NoiseInjection extends Module {
  /** `gain` scales the noise strength (see StyledConv). */
  forward(image: Tensor, noise: Tensor, gain = 1): Tensor {
    const [, , H, W] = image.shape;
    if (noise.rank !== 4 || noise.shape[1] !== 1 || noise.shape[2] !== H || noise.shape[3] !== W || (noise.shape[0] !== 1 && noise.shape[0] !== image.shape[0])) {
      throw new Error(`${this.prefix}: noise [${noise.shape}] does not fit features [${image.shape}] (expected [1 or N, 1, ${H}, ${W}])`);
    }
    let strength = this.param(image.graph, 'weight');
    if (gain !== 1) strength = G.mul(strength, gain);
    return G.add(image, G.mul(strength, noise));
  }
}

/** ConstantInput: the learned [1, C, 4, 4] repeated over the batch. */
export class ConstantInput extends Module {
  forward(g: Graph, batch: number): Tensor {
    const t = this.param(g, 'input');
    return G.expand(t, [batch, ...t.shape.slice(1)]);
  }
}

/** StyledConv: ModulatedConv2d -> NoiseInjection -> FusedLeakyReLU (bias). */
export class StyledConv extends Module {
  readonly conv: ModulatedConv2d;
  readonly noise: NoiseInjection;
  constructor(P: ParamSource, prefix: string, inChannel: number, outChannel: number, kernelSize: number, styleDim: number, upsample = false, blurSize = 4) {
    super(P, prefix);
    this.conv = new ModulatedConv2d(P, `${prefix}.conv`, inChannel, outChannel, kernelSize, styleDim, true, upsample, blurSize);
    this.noise = new NoiseInjection(P, `${prefix}.noise`);
  }
  /**
   * activate(noise(conv(x, style), noise)) = leaky_relu(conv + w_noise * noise + b, 0.2) * sqrt(2).
   * Since leaky_relu(c v) = c leaky_relu(v) for c > 0, the sqrt(2) is applied to the per-channel
   * demodulation, the noise strength and the bias instead of to the full-size output.
   */
  forward(x: Tensor, style: Tensor, noise: Tensor): Tensor {
    let out = this.conv.forward(x, style, Math.SQRT2);
    out = this.noise.forward(out, noise, Math.SQRT2);
    const bias = G.mul(this.param(x.graph, 'activate.bias'), Math.SQRT2);
    return G.leakyRelu(G.add(out, G.reshape(bias, [1, bias.size, 1, 1])), 0.2);
  }
}

/** ToRGB: 1x1 ModulatedConv2d (no demodulation) + bias, plus the upsampled skip image. */
export class ToRGB extends Module {
  readonly conv: ModulatedConv2d;
  readonly upsample?: Upsample;
  constructor(P: ParamSource, prefix: string, inChannel: number, styleDim: number, upsample = true) {
    super(P, prefix);
    if (upsample) this.upsample = new Upsample(P, `${prefix}.upsample`);
    this.conv = new ModulatedConv2d(P, `${prefix}.conv`, inChannel, 3, 1, styleDim, false);
  }
  forward(x: Tensor, style: Tensor, skip?: Tensor): Tensor {
    let out = this.conv.forward(x, style);
    out = G.add(out, this.param(x.graph, 'bias'));
    if (skip) {
      if (!this.upsample) throw new Error(`${this.prefix}: a skip image needs an upsampling ToRGB`);
      out = G.add(out, this.upsample.forward(skip));
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Generator

export interface ForwardOptions {
  /** styles are w ([N, D]) or w+ ([N, n_latent, D]) rather than z */
  inputIsLatent?: boolean;
  /** truncation psi; applied when < 1 (default 1) */
  truncation?: number;
  /** [1, D] or [D]: required when truncation < 1 (the mean latent / checkpoint latent_avg) */
  truncationLatent?: Tensor;
  /** style mixing with two styles: rows [0, injectIndex) from styles[0], the rest from styles[1] */
  injectIndex?: number;
  /** one tensor per noise input ([1 or N, 1, r, r]), e.g. `noiseInputs(g, gen)` or constants of the buffers */
  noise: Tensor[];
  /** collects intermediate outputs by module name (conv1, to_rgb1, convs.i, to_rgbs.j) */
  taps?: Map<string, Tensor>;
}

export class Generator {
  readonly config: GeneratorConfig;
  readonly nLatent: number;
  readonly numLayers: number;
  readonly logSize: number;
  readonly style: EqualLinear[];
  readonly input: ConstantInput;
  readonly conv1: StyledConv;
  readonly to_rgb1: ToRGB;
  readonly convs: StyledConv[] = [];
  readonly to_rgbs: ToRGB[] = [];

  /**
   * @param P the weights (state-dict keys without a prefix), already validated
   * @param latentAvg the checkpoint's `latent_avg` [D] when it has one
   */
  constructor(config: GeneratorConfig, readonly P: ParamSource, readonly latentAvg: Float32Array | null = null) {
    this.config = config;
    const { logSize, nLatent, numLayers } = derived(config);
    this.logSize = logSize; this.nLatent = nLatent; this.numLayers = numLayers;
    const D = config.styleDim;
    const ch = config.channels;
    this.style = [];
    for (let i = 1; i <= config.nMlp; i++) this.style.push(new EqualLinear(P, `style.${i}`, D, D, config.lrMlp, true));
    this.input = new ConstantInput(P, 'input');
    this.conv1 = new StyledConv(P, 'conv1', ch[4], ch[4], 3, D);
    this.to_rgb1 = new ToRGB(P, 'to_rgb1', ch[4], D, false);
    let inC = ch[4];
    for (let i = 3; i <= logSize; i++) {
      const outC = ch[2 ** i];
      this.convs.push(new StyledConv(P, `convs.${this.convs.length}`, inC, outC, 3, D, true, config.blurSize));
      this.convs.push(new StyledConv(P, `convs.${this.convs.length}`, outC, outC, 3, D, false));
      this.to_rgbs.push(new ToRGB(P, `to_rgbs.${this.to_rgbs.length}`, outC, D));
      inC = outC;
    }
  }

  /** The mapping network `style`: z [N, D] -> w [N, D] (= get_latent). */
  mapping(z: Tensor): Tensor {
    let x = pixelNorm(z);
    for (const layer of this.style) x = layer.forward(x);
    return x;
  }

  /**
   * model.py Generator.forward: styles -> (image [N, 3, size, size], latent [N, n_latent, D]).
   * z styles go through the mapping unless `inputIsLatent`; truncation, repetition of a single
   * w to every layer and style mixing follow the official code.
   */
  forward(styles: Tensor[], o: ForwardOptions): { image: Tensor; latent: Tensor } {
    if (styles.length < 1 || styles.length > 2) throw new Error(`stylegan2: 1 or 2 styles (style mixing), got ${styles.length}`);
    let ws = o.inputIsLatent ? styles : styles.map((z) => this.mapping(z));
    const psi = o.truncation ?? 1;
    if (psi < 1) {
      if (!o.truncationLatent) throw new Error('stylegan2: truncation < 1 needs a truncationLatent (mean latent or latent_avg)');
      const tl = G.reshape(o.truncationLatent, [1, this.config.styleDim]);
      ws = ws.map((w) => G.add(w.rank === 3 ? G.unsqueeze(tl, 0) : tl, G.mul(G.sub(w, w.rank === 3 ? G.unsqueeze(tl, 0) : tl), psi)));
    }
    const L = this.nLatent;
    const repeat = (w: Tensor, n: number) => G.expand(G.unsqueeze(w, 1), [w.shape[0], n, w.shape[1]]);
    let latent: Tensor;
    if (ws.length === 1) {
      latent = ws[0].rank === 3 ? ws[0] : repeat(ws[0], L);
    } else {
      const inject = o.injectIndex;
      if (inject === undefined || !Number.isInteger(inject) || inject < 1 || inject > L - 1) {
        throw new Error(`stylegan2: style mixing needs injectIndex in [1, ${L - 1}], got ${inject}`);
      }
      latent = G.concat([repeat(ws[0], inject), repeat(ws[1], L - inject)], 1);
    }
    return { image: this.synthesis(latent, o.noise, o.taps), latent };
  }

  /** The synthesis network on w+ [N, n_latent, D]. */
  synthesis(latent: Tensor, noise: Tensor[], taps?: Map<string, Tensor>): Tensor {
    const [N, L, D] = latent.shape;
    if (latent.rank !== 3 || L !== this.nLatent || D !== this.config.styleDim) {
      throw new Error(`stylegan2: w+ must be [N, ${this.nLatent}, ${this.config.styleDim}], got [${latent.shape}]`);
    }
    if (noise.length !== this.numLayers) throw new Error(`stylegan2: ${this.numLayers} noise tensors needed, got ${noise.length}`);
    const w = (i: number) => G.select(latent, 1, i);
    const tap = (name: string, t: Tensor) => { taps?.set(name, t); return t; };

    let out = this.input.forward(latent.graph, N);
    out = tap('conv1', this.conv1.forward(out, w(0), noise[0]));
    let skip = tap('to_rgb1', this.to_rgb1.forward(out, w(1)));
    let i = 1;
    for (let j = 0; j < this.to_rgbs.length; j++) {
      out = tap(`convs.${2 * j}`, this.convs[2 * j].forward(out, w(i), noise[2 * j + 1]));
      out = tap(`convs.${2 * j + 1}`, this.convs[2 * j + 1].forward(out, w(i + 1), noise[2 * j + 2]));
      skip = tap(`to_rgbs.${j}`, this.to_rgbs[j].forward(out, w(i + 2), skip));
      i += 2;
    }
    return skip;
  }

  /** Shapes of the noise inputs: [1, 1, r, r] (or [batch, 1, r, r] for per-sample noise). */
  noiseShapes(batch = 1): number[][] {
    return Array.from({ length: this.numLayers }, (_, k) => [batch, 1, noiseResolution(k), noiseResolution(k)]);
  }

  /** The stored `noises.noise_k` buffers (randomize_noise=False). */
  noiseBuffers(): Float32Array[] {
    return Array.from({ length: this.numLayers }, (_, k) => this.P.data(`noises.noise_${k}`));
  }

  /** Fresh N(0,1) noise maps from a seeded generator (randomize_noise=True, reproducible). */
  randomNoise(seed: number, batch = 1): Float32Array[] {
    const rng = new Rng(seed);
    return this.noiseShapes(batch).map((s) => rng.normals(s.reduce((a, b) => a * b, 1)));
  }

  /** Graph inputs `noise_0..` for the noise maps. */
  noiseInputs(g: Graph, batch = 1): Tensor[] {
    return this.noiseShapes(batch).map((s, k) => g.input(`noise_${k}`, s));
  }

  /** The stored buffers as constants of `g`. */
  noiseConstants(g: Graph): Tensor[] {
    return Array.from({ length: this.numLayers }, (_, k) => this.P.tensor(g, `noises.noise_${k}`));
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadOptions {
  /** name for error messages */
  what?: string;
  /** lr_mul of the mapping network (not stored; 0.01 in every official config) */
  lrMlp?: number;
  /**
   * where the generator's keys live in the file: by default `g_ema.` when present (rosinality
   * checkpoints: `{g_ema, latent_avg[, g, d]}`, `g` and `d` ignored), else the file's root;
   * e.g. `decoder.` for the copy inside e4e / HairCLIP checkpoints
   */
  prefix?: string;
}

/** A generator from a state dict (keys without prefix), validated against the inferred architecture. */
export function generatorFromStateDict(sd: StateDict, o: { what?: string; lrMlp?: number; latentAvg?: Float32Array | null } = {}): Generator {
  const what = o.what ?? 'stylegan2';
  const config = inferGeneratorConfig(sd, what, o.lrMlp);
  validateStateDict(what, sd, generatorSpec(config));
  const latentAvg = o.latentAvg ?? null;
  if (latentAvg && latentAvg.length !== config.styleDim) throw new Error(`${what}: latent_avg has ${latentAvg.length} values, style_dim is ${config.styleDim}`);
  return new Generator(config, new Weights(what, sd), latentAvg);
}

/**
 * A StyleGAN2 checkpoint (path or bytes; PyTorch zip or legacy, or safetensors):
 * `{g_ema: state_dict, latent_avg}` as convert_weight.py writes it, a training checkpoint
 * (`g`, `d`, optimisers and `args` are ignored), or a bare G state dict.
 */
export function loadGenerator(source: string | Uint8Array, o: LoadOptions = {}): Generator {
  const what = o.what ?? (typeof source === 'string' ? source : 'stylegan2');
  const all = loadStateDict(source).tensors;
  const prefix = o.prefix ?? ([...all.keys()].some((k) => k.startsWith('g_ema.')) ? 'g_ema.' : '');
  const sd = prefix ? selectPrefix(all, prefix) : stripTopLevel(all);
  if (!sd.size) throw new Error(`${what}: no tensors under '${prefix}'`);
  const la = all.get('latent_avg');
  let latentAvg: Float32Array | null = null;
  if (la) {
    // [style_dim] as convert_weight.py stores it ([1, style_dim] as mean_latent() returns it)
    if (!(la.shape.length === 1 || (la.shape.length === 2 && la.shape[0] === 1))) throw new Error(`${what}: latent_avg has shape [${la.shape}], expected [style_dim]`);
    latentAvg = toFloat32Array(la);
  }
  return generatorFromStateDict(sd, { what, lrMlp: o.lrMlp, latentAvg });
}

/** A bare state dict may sit beside latent_avg at the root: keep only generator keys. */
function stripTopLevel(all: Map<string, TensorData>): Map<string, TensorData> {
  const m = new Map(all);
  m.delete('latent_avg');
  return m;
}

/**
 * A generator with the official constructor's random initialisation (randn weights and
 * constant input, zero biases / noise strengths, modulation biases 1, randn noise buffers,
 * make_kernel buffers), from a seeded generator: the real-size architecture without the
 * 380 MB download (benchmarks, key-layout tests).
 */
export function randomGenerator(config: GeneratorConfig, seed = 0, blurKernel: number[] = [1, 3, 3, 1]): Generator {
  if (blurKernel.length !== config.blurSize) throw new Error(`stylegan2: blur kernel of ${blurKernel.length} taps for blurSize ${config.blurSize}`);
  const rng = new Rng(seed);
  const sd = new Map<string, TensorData>();
  const kernel = makeKernel(blurKernel, 2);
  for (const s of generatorSpec(config)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (s.key.endsWith('.kernel')) data = kernel.slice();
    else if (s.key.startsWith('style.') && s.key.endsWith('.weight')) data = rng.normals(n).map((v) => v / config.lrMlp);
    else if (s.key.endsWith('modulation.bias')) data = new Float32Array(n).fill(1);
    else if (s.key.endsWith('.bias') || s.key.endsWith('noise.weight')) data = new Float32Array(n);
    else data = rng.normals(n);
    sd.set(s.key, f32(s.shape, data));
  }
  return new Generator(config, new Weights('stylegan2 (random init)', sd));
}

// ---------------------------------------------------------------------------------------------
// Sessions

/**
 * Noise maps for a synthesis call: the stored buffers (`randomize_noise=False`, as HairCLIP and
 * e4e run it), fresh N(0,1) maps from a seed (model.py's `randomize_noise=True`, made
 * reproducible), or explicit arrays (model.py's `noise=[...]`).
 */
export type NoiseSpec = 'buffers' | { seed: number } | Float32Array[];

/**
 * The synthesis network w+ -> image for one batch size, as a forward session and a VJP session
 * (w+ and image cotangent -> dL/dw+, recomputing the forward inside; src/runtime/vjp.ts). The
 * noise maps are inputs `noise_0..`, shared by the batch ([1, 1, r, r]) unless `perSampleNoise`.
 */
export class Synthesis {
  readonly pair: NamedVjpPair;
  readonly wplusShape: number[];
  /** 1 (noise maps shared by the batch) or the batch size */
  readonly noiseBatch: number;
  constructor(readonly gen: Generator, readonly batch = 1, o: { perSampleNoise?: boolean; noiseGrad?: boolean; compile?: CompileOptions } = {}) {
    const { nLatent } = gen;
    const D = gen.config.styleDim;
    this.wplusShape = [batch, nLatent, D];
    const noiseBatch = o.perSampleNoise ? batch : 1;
    this.noiseBatch = noiseBatch;
    this.pair = makeVjpPair({
      name: `stylegan2-${gen.config.size}-synthesis-b${batch}`,
      build: (g) => {
        const wplus = g.input('wplus', this.wplusShape);
        return { image: gen.synthesis(wplus, gen.noiseInputs(g, noiseBatch)) };
      },
      wrt: ['wplus', ...(o.noiseGrad ? gen.noiseShapes().map((_, k) => `noise_${k}`) : [])],
      compile: o.compile,
    });
  }

  /** Feeds for the noise inputs. */
  noiseFeeds(noise: NoiseSpec = 'buffers'): Record<string, Float32Array> {
    const shapes = this.gen.noiseShapes(this.noiseBatch);
    let maps: Float32Array[];
    if (noise === 'buffers') {
      if (this.noiseBatch !== 1) throw new Error('stylegan2: the stored noise buffers are shared by the batch; per-sample noise needs a seed or arrays');
      maps = this.gen.noiseBuffers();
    } else if (Array.isArray(noise)) maps = noise;
    else maps = this.gen.randomNoise(noise.seed, this.noiseBatch);
    if (maps.length !== shapes.length) throw new Error(`stylegan2: ${shapes.length} noise maps needed, got ${maps.length}`);
    const feeds: Record<string, Float32Array> = {};
    maps.forEach((m, k) => {
      const n = shapes[k].reduce((a, b) => a * b, 1);
      if (m.length !== n) throw new Error(`stylegan2: noise map ${k} has ${m.length} values, expected [${shapes[k]}]`);
      feeds[`noise_${k}`] = m;
    });
    return feeds;
  }

  private check(wplus: Float32Array): void {
    const n = this.wplusShape.reduce((a, b) => a * b, 1);
    if (wplus.length !== n) throw new Error(`stylegan2: w+ has ${wplus.length} values, expected [${this.wplusShape}]`);
  }

  /** image [batch, 3, size, size] */
  async forward(wplus: Float32Array, noise: NoiseSpec = 'buffers'): Promise<HostTensor> {
    this.check(wplus);
    return (await this.pair.forward({ wplus, ...this.noiseFeeds(noise) })).image;
  }

  /** dL/dw+ for the image cotangent dL/dimage (and the image, recomputed). */
  async vjp(wplus: Float32Array, imageCotangent: Float32Array, noise: NoiseSpec = 'buffers'): Promise<{ image: HostTensor; grads: Record<string, HostTensor> }> {
    this.check(wplus);
    const r = await this.pair.vjp({ wplus, ...this.noiseFeeds(noise) }, { image: imageCotangent });
    return { image: r.outputs.image, grads: r.grads };
  }
}

/** The mapping network z [batch, D] -> w [batch, D] as a session. */
export async function mappingSession(gen: Generator, batch: number, o: CompileOptions = {}): Promise<(z: Float32Array) => Promise<Float32Array>> {
  const g = new G.Graph(`stylegan2-mapping-b${batch}`);
  const z = g.input('z', [batch, gen.config.styleDim]);
  const c = await compile({ w: gen.mapping(z) }, o);
  return async (zs) => (await c.run({ z: zs })).w.data as Float32Array;
}

/**
 * Generator.mean_latent(n): the mean of style(z) over n random z, [D]. model.py draws z with
 * torch.randn from the global RNG, so its value differs between runs; here z comes from a seeded
 * generator (src/train/rng.ts), so the same (n, seed) always gives the same latent. It agrees with
 * a PyTorch run on the same z (io.safetensors `mean_latent`); prefer a checkpoint's latent_avg.
 */
export async function meanLatent(gen: Generator, n = 4096, seed = 0, chunk = 512): Promise<Float32Array> {
  const D = gen.config.styleDim;
  const rng = new Rng(seed);
  const sum = new Float64Array(D);
  const run = await mappingSession(gen, Math.min(chunk, n));
  for (let done = 0; done < n; done += chunk) {
    const b = Math.min(chunk, n - done);
    const z = new Float32Array(Math.min(chunk, n) * D);
    z.set(rng.normals(b * D));
    const w = await run(z);
    for (let i = 0; i < b; i++) for (let j = 0; j < D; j++) sum[j] += w[i * D + j];
  }
  return Float32Array.from(sum, (v) => v / n);
}

/**
 * Multiply-adds x 2 of one synthesis pass per image, counted from the layer shapes as model.py
 * computes them: every modulated conv (the up-convs as stride-2 transposed convs at their input
 * size), the ToRGB 1x1 convs, the modulation linears and the FIR filters (blur, skip upsample).
 */
export function synthesisFlops(c: GeneratorConfig): { total: number; convs: number; toRgb: number; fir: number; modulation: number } {
  const D = c.styleDim; const k = c.blurSize;
  let convs = 0; let toRgb = 0; let fir = 0; let modulation = 0;
  const C4 = c.channels[4];
  convs += C4 * C4 * 9 * 16; toRgb += 3 * C4 * 16; modulation += 2 * D * C4;
  for (let r = 8; r <= c.size; r *= 2) {
    const ci = c.channels[r / 2]; const co = c.channels[r];
    convs += ci * co * 9 * (r / 2) ** 2; // transposed 3x3 stride 2 over the input pixels
    fir += co * k * k * r * r; // Blur after it
    convs += co * co * 9 * r * r;
    toRgb += 3 * co * r * r;
    fir += 3 * k * k * r * r; // Upsample of the skip image (zero-inserted taps included, as upfirdn2d_native)
    modulation += D * (ci + 2 * co);
  }
  const m = { convs: 2 * convs, toRgb: 2 * toRgb, fir: 2 * fir, modulation: 2 * modulation };
  return { total: m.convs + m.toRgb + m.fir + m.modulation, ...m };
}
