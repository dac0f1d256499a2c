// Encoder4Editing (omertov/encoder4editing, models/encoders/psp_encoders.py) inside the pSp
// wrapper (models/psp.py): an aligned face image -> W+ codes for the StyleGAN2 generator.
// HairCLIP inverts real photos with it (`e4e_ffhq_encode.pt`) before editing their latents.
//
//   input_layer  Conv3x3(3->64, no bias) -> BatchNorm -> PReLU
//   body         the IR-SE50 units of the ArcFace backbone (src/nets/arcface/irse.ts); the outputs
//                of the last unit of stages 2, 3, 4 are c1 (1/4), c2 (1/8), c3 (1/16)
//   styles[i]    GradualStyleBlock: log2(spatial) x [Conv3x3 stride 2 (bias) -> LeakyReLU(0.01)]
//                down to 1x1, then EqualLinear (weight / sqrt(in))
//   FPN          p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1), up = bilinear with
//                align_corners=True to the lateral's size
//   forward      w0 = styles[0](c3); row i = w0 + styles[i](features_i) with features c3 for the
//                coarse rows (< 3), p2 for the middle rows (< 7), p1 for the rest
//   pSp          codes + latent_avg when opts.start_from_latent_avg
//
// Input: [N, 3, 256, 256] in [-1, 1] (ToTensor + Normalize([0.5]*3, [0.5]*3) of the FFHQ-aligned
// face). Every size — stem, stages, style count (2*log2(stylegan_size) - 2), style width, the
// number of convs in each style block (hence the input resolution), the lateral widths — is read
// from the checkpoint, so the reduced fixture and e4e_ffhq_encode.pt run the same code.
// pSp's GradualStyleEncoder has the same keys and is selected by opts.encoder_type.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { flattenStateDict, selectPrefix } from '../../io/torch.ts';
import { TensorData, toFloat32Array } from '../../io/tensor.ts';
import { isPyDict, type PickleValue } from '../../io/pickle.ts';
import {
  Weights, batchNorm, bnSpec, conv2d, convSpec, contiguousCount, indices, prelu, readCheckpoint,
  resizeBilinearAlignCorners, shapeOf, validateStateDict, type KeySpec, type StateDict,
} from '../common.ts';
import { IR_SE50, bottleneckIR, inferStages, irseUnitSpec, type IrseConfig, type IrseStage, type IrseUnit } from '../arcface/irse.ts';

export type EncoderType = 'Encoder4Editing' | 'GradualStyleEncoder';

export interface E4eConfig {
  encoderType: EncoderType;
  /** input_layer width */
  stem: number;
  /** the IR-SE body (helpers.get_blocks) */
  stages: IrseStage[];
  mode: IrseConfig['mode'];
  seReduction: number;
  /** number of W+ rows: 2 * log2(stylegan_size) - 2 (18 for 1024) */
  styleCount: number;
  /** first middle / first fine row (hard-coded 3 and 7 in the code) */
  coarseInd: number;
  middleInd: number;
  /** GradualStyleBlock(in_c, out_c, spatial): in_c (= c3 width) and out_c (= the W width) */
  styleIn: number;
  styleDim: number;
  /** per style block: log2(spatial) stride-2 convs (16 / 32 / 64 -> 4 / 5 / 6) */
  styleConvs: number[];
  /** widths of c1 and c2 (latlayer2 / latlayer1 inputs) */
  c1Channels: number;
  c2Channels: number;
}

const styleSpatialConvs = (i: number, base: number) => (i < 3 ? base : i < 7 ? base + 1 : base + 2);

/** Encoder4Editing(50, 'ir_se') with stylegan_size 1024, as in e4e_ffhq_encode.pt. */
export const E4E_FFHQ: E4eConfig = {
  encoderType: 'Encoder4Editing',
  stem: IR_SE50.stem, stages: IR_SE50.stages, mode: 'ir_se', seReduction: 16,
  styleCount: 18, coarseInd: 3, middleInd: 7, styleIn: 512, styleDim: 512,
  styleConvs: Array.from({ length: 18 }, (_, i) => styleSpatialConvs(i, 4)),
  c1Channels: 128, c2Channels: 256,
};

/** Body units with their stride, and the taps: the last unit of stages 2, 3 and 4. */
function bodyUnits(c: E4eConfig): { units: IrseUnit[]; taps: [number, number, number] } {
  const units: IrseUnit[] = [];
  const lastOfStage: number[] = [];
  for (const s of c.stages) {
    for (let u = 0; u < s.units; u++) {
      units.push({ index: units.length, inChannel: u === 0 ? s.inChannel : s.depth, depth: s.depth, stride: u === 0 ? 2 : 1 });
    }
    lastOfStage.push(units.length - 1);
  }
  return { units, taps: [lastOfStage[1], lastOfStage[2], lastOfStage[3]] };
}

/** The image size the style blocks expect: c3 (1/2^stages) must pool down to 1x1 in styles[0]. */
export function e4eInputSize(c: E4eConfig): number {
  return 2 ** (c.styleConvs[0] + c.stages.length);
}

// ---------------------------------------------------------------------------------------------
// State dict layout (Encoder4Editing.state_dict(): input_layer, body, styles, latlayer1, latlayer2)

export function e4eEncoderSpec(c: E4eConfig): KeySpec[] {
  const s: KeySpec[] = [
    ...convSpec('input_layer.0', [c.stem, 3, 3, 3], false),
    ...bnSpec('input_layer.1', c.stem),
    { key: 'input_layer.2.weight', shape: [c.stem], dtype: 'F32' },
  ];
  for (const u of bodyUnits(c).units) s.push(...irseUnitSpec(`body.${u.index}`, u, c.mode, c.seReduction));
  for (let i = 0; i < c.styleCount; i++) {
    for (let k = 0; k < c.styleConvs[i]; k++) {
      s.push(...convSpec(`styles.${i}.convs.${2 * k}`, [c.styleDim, k === 0 ? c.styleIn : c.styleDim, 3, 3], true));
    }
    s.push(...convSpec(`styles.${i}.linear`, [c.styleDim, c.styleDim], true));
  }
  s.push(...convSpec('latlayer1', [c.styleIn, c.c2Channels, 1, 1], true), ...convSpec('latlayer2', [c.styleIn, c.c1Channels, 1, 1], true));
  return s;
}

/** The checkpoint's `state_dict` keys for the encoder (pSp prefixes them with 'encoder.'). */
export function e4eStateSpec(c: E4eConfig): KeySpec[] {
  return e4eEncoderSpec(c).map((k) => ({ ...k, key: `encoder.${k.key}` }));
}

export interface E4eLoadOptions {
  /**
   * helpers.get_blocks' stage list, for bodies whose stage boundaries the weights do not show: a
   * stage whose first unit keeps the width (in_channel == depth) has a parameter-free MaxPool
   * shortcut, so its stride-2 start looks like any other unit (see arcface inferStages)
   */
  stages?: readonly IrseStage[];
}

/** Configuration from the encoder keys (prefix stripped) and, when given, the training opts. */
export function inferE4eConfig(sd: StateDict, opts: Record<string, unknown> = {}, what = 'e4e', load: E4eLoadOptions = {}): E4eConfig {
  const stem = shapeOf(sd, 'input_layer.0.weight', what)[0];
  const { stages, mode, seReduction } = inferStages(sd, 'body.', what, load.stages);
  if (stages.length !== 4) {
    throw new Error(`${what}: the body has ${stages.length} stages (widths ${stages.map((st) => st.depth).join(', ')}); the encoder taps stages 2, 3 and 4 of a 4-stage IR-SE body`
      + (stages.length < 4 ? ' — a stage that keeps the width cannot be told from the weights: pass the stage list (stages)' : ''));
  }
  const styleCount = contiguousCount(sd, 'styles.', what);
  if (!styleCount) throw new Error(`${what}: no 'styles.0.*' keys`);
  if (typeof opts.stylegan_size === 'number') {
    const expected = 2 * Math.round(Math.log2(opts.stylegan_size)) - 2;
    if (expected !== styleCount) throw new Error(`${what}: opts.stylegan_size ${opts.stylegan_size} means ${expected} styles, the weights have ${styleCount}`);
  }
  const styleConvs = Array.from({ length: styleCount }, (_, i) => indices(sd, `styles.${i}.convs.`).length);
  // the widths the heads read are the body's (c3 feeds the styles, c2/c1 the lateral convs), so a
  // head of another width is reported by validation rather than absorbed into the config
  const styleDim = shapeOf(sd, 'styles.0.convs.0.weight', what)[0];
  const encoderType = (opts.encoder_type ?? 'Encoder4Editing') as string;
  if (encoderType !== 'Encoder4Editing' && encoderType !== 'GradualStyleEncoder') {
    throw new Error(`${what}: opts.encoder_type '${encoderType}' is not supported (Encoder4Editing, GradualStyleEncoder)`);
  }
  return {
    encoderType, stem, stages, mode, seReduction, styleCount, coarseInd: 3, middleInd: 7,
    styleIn: stages[3].depth, styleDim, styleConvs, c1Channels: stages[1].depth, c2Channels: stages[2].depth,
  };
}

export interface E4eNet {
  config: E4eConfig;
  weights: Weights;
  /** checkpoint['latent_avg'] [styleCount, D] (null when the file has none) */
  latentAvg: Float32Array | null;
  /** pSp.forward adds latent_avg to the codes (opts.start_from_latent_avg) */
  startFromLatentAvg: boolean;
  /** the training options stored in the checkpoint ({} when absent) */
  opts: Record<string, unknown>;
  /** the `decoder.*` tensors (prefix stripped), for the StyleGAN2 loader; empty in the reduced file */
  decoder: Map<string, TensorData>;
}

function plainOpts(v: PickleValue | undefined): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (!isPyDict(v)) throw new Error('e4e: checkpoint opts is not a dict');
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = typeof x === 'bigint' ? Number(x) : x;
  return out;
}

/**
 * An e4e checkpoint (path or bytes): `{state_dict: {encoder.*, decoder.*}, opts, latent_avg}`.
 * The encoder keys are checked strictly (pSp's get_keys + load_state_dict(strict=True)); keys
 * other than encoder.* / decoder.* are refused; decoder.* is handed back untouched.
 */
export function loadE4e(source: string | Uint8Array, what = 'e4e', load: E4eLoadOptions = {}): E4eNet {
  return e4eFromCheckpoint(readCheckpoint(source), what, load);
}

/** loadE4e on an already parsed checkpoint object tree. */
export function e4eFromCheckpoint(root: PickleValue, what = 'e4e', load: E4eLoadOptions = {}): E4eNet {
  if (!isPyDict(root)) throw new Error(`${what}: the checkpoint root is not a dict`);
  const sdRoot = 'state_dict' in root ? root.state_dict : root;
  if (!isPyDict(sdRoot)) throw new Error(`${what}: 'state_dict' is not a dict`);
  const all = flattenStateDict(sdRoot);
  const stray = [...all.keys()].filter((k) => !k.startsWith('encoder.') && !k.startsWith('decoder.'));
  if (stray.length) throw new Error(`${what}: unexpected key${stray.length > 1 ? 's' : ''} ${stray.slice(0, 5).map((k) => `'${k}'`).join(', ')} (a pSp state dict holds encoder.* and decoder.*)`);
  const enc = selectPrefix(all, 'encoder.');
  if (!enc.size) throw new Error(`${what}: no 'encoder.*' keys in the state dict`);
  const opts = plainOpts(root.opts);
  const config = inferE4eConfig(enc, opts, what, load);
  validateStateDict(`${what} encoder`, enc, e4eEncoderSpec(config));

  let latentAvg: Float32Array | null = null;
  const la = root.latent_avg;
  if (la instanceof TensorData) {
    const [rows, d] = la.shape.length === 2 ? la.shape : [1, la.shape[0]];
    if (d !== config.styleDim || (rows !== config.styleCount && rows !== 1)) {
      throw new Error(`${what}: latent_avg has shape [${la.shape.join(', ')}], expected [${config.styleCount}, ${config.styleDim}]`);
    }
    // a [D] / [1, D] average (as a generator stores it) is repeated per row, as __load_latent_avg(repeat=)
    const src = toFloat32Array(la);
    latentAvg = new Float32Array(config.styleCount * d);
    for (let r = 0; r < config.styleCount; r++) latentAvg.set(src.subarray(rows === 1 ? 0 : r * d, (rows === 1 ? 0 : r * d) + d), r * d);
  } else if (la !== undefined && la !== null) throw new Error(`${what}: latent_avg is not a tensor`);
  // without stored opts, follow the file: a stored latent_avg means the model was trained from it
  const startFromLatentAvg = 'start_from_latent_avg' in opts ? Boolean(opts.start_from_latent_avg) : latentAvg !== null;
  if (startFromLatentAvg && !latentAvg) throw new Error(`${what}: opts.start_from_latent_avg is set but the checkpoint has no latent_avg`);

  return { config, weights: new Weights(`${what} encoder`, enc), latentAvg, startFromLatentAvg, opts, decoder: selectPrefix(all, 'decoder.') };
}

// ---------------------------------------------------------------------------------------------
// Forward

/** EqualLinear(in, out, lr_mul=1): F.linear(x, W * (1/sqrt(in)), b); the scale is applied in float32. */
function equalLinear(W: Weights, prefix: string, x: Tensor): Tensor {
  const g = x.graph;
  const [out, inF] = W.shape(`${prefix}.weight`);
  const scale = Math.fround(1 / Math.sqrt(inF));
  const w = W.data(`${prefix}.weight`);
  const scaled = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) scaled[i] = w[i] * scale;
  return G.linear(x, g.constant(scaled, [out, inF]), W.tensor(g, `${prefix}.bias`));
}

/** GradualStyleBlock: stride-2 convs with LeakyReLU down to 1x1, view(-1, out_c), EqualLinear. */
function gradualStyleBlock(W: Weights, prefix: string, x: Tensor, convs: number): Tensor {
  let h = x;
  for (let k = 0; k < convs; k++) h = G.leakyRelu(conv2d(W, `${prefix}.convs.${2 * k}`, h, { stride: 2, padding: 1 }), 0.01);
  if (h.shape[2] !== 1 || h.shape[3] !== 1) {
    throw new Error(`e4e ${prefix}: features [${x.shape.join(', ')}] do not pool to 1x1 in ${convs} stride-2 convs (wrong input size?)`);
  }
  return equalLinear(W, `${prefix}.linear`, G.reshape(h, [h.shape[0], h.shape[1]]));
}

/** _upsample_add(x, y): bilinear (align_corners=True) resize of x to y's size, plus y. */
function upsampleAdd(x: Tensor, y: Tensor): Tensor {
  return G.add(resizeBilinearAlignCorners(x, [y.shape[2], y.shape[3]]), y);
}

export interface E4eTaps { c1?: Tensor; c2?: Tensor; c3?: Tensor; w0?: Tensor }

export interface E4eOptions {
  taps?: E4eTaps;
  /** Encoder4Editing's progressive stage: rows 1..stage get their delta (default: all, "Inference") */
  progressiveStage?: number;
}

/** The encoder's output (no latent_avg): image [N, 3, S, S] -> [N, styleCount, D]. */
export function e4eEncode(net: E4eNet, x: Tensor, opts: E4eOptions = {}): Tensor {
  const { config: c, weights: W } = net;
  const size = e4eInputSize(c);
  if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== size || x.shape[3] !== size) {
    throw new Error(`e4e: input must be [N, 3, ${size}, ${size}], got [${x.shape.join(', ')}]`);
  }
  let h = conv2d(W, 'input_layer.0', x, { padding: 1 });
  h = prelu(W, 'input_layer.2', batchNorm(W, 'input_layer.1', h));
  const { units, taps } = bodyUnits(c);
  let c1: Tensor | undefined; let c2: Tensor | undefined; let c3: Tensor | undefined;
  for (const u of units) {
    h = bottleneckIR(W, `body.${u.index}`, h, u, c.mode);
    if (u.index === taps[0]) c1 = h;
    else if (u.index === taps[1]) c2 = h;
    else if (u.index === taps[2]) c3 = h;
  }
  if (opts.taps) Object.assign(opts.taps, { c1, c2, c3 });
  const style = (i: number, f: Tensor) => gradualStyleBlock(W, `styles.${i}`, f, c.styleConvs[i]);
  // FPN features, built on first use as the official loops do
  let p2: Tensor | undefined; let p1: Tensor | undefined;
  const features = (i: number): Tensor => {
    if (i < c.coarseInd) return c3!;
    p2 ??= upsampleAdd(c3!, conv2d(W, 'latlayer1', c2!));
    if (i < c.middleInd) return p2;
    p1 ??= upsampleAdd(p2, conv2d(W, 'latlayer2', c1!));
    return p1;
  };

  const rows: Tensor[] = [];
  if (c.encoderType === 'GradualStyleEncoder') {
    for (let i = 0; i < c.styleCount; i++) rows.push(style(i, features(i)));
    if (opts.taps) opts.taps.w0 = rows[0];
  } else {
    // Encoder4Editing: one base code w0 for every row, plus a delta per row
    const w0 = style(0, c3!);
    if (opts.taps) opts.taps.w0 = w0;
    rows.push(w0);
    const stage = opts.progressiveStage ?? c.styleCount;
    for (let i = 1; i < c.styleCount; i++) rows.push(i <= stage ? G.add(w0, style(i, features(i))) : w0);
  }
  return G.stack(rows, 1);
}

/** pSp.forward's codes: the encoder output plus latent_avg when the model was trained from it. */
export function e4eCodes(net: E4eNet, x: Tensor, opts: E4eOptions = {}): Tensor {
  const codes = e4eEncode(net, x, opts);
  if (!net.startFromLatentAvg) return codes;
  const { styleCount, styleDim } = net.config;
  return G.add(codes, x.graph.constant(net.latentAvg!, [1, styleCount, styleDim]));
}
