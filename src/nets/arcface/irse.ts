// ArcFace IR-SE backbone (TreB1eN InsightFace_Pytorch `Backbone`, as vendored by pSp / e4e /
// HairCLIP in model_irse.py + helpers.py), the identity network of HairCLIP's ID loss
// (`model_ir_se50.pth`), and that loss's preprocessing.
//
//   input_layer   Conv3x3(3->C, no bias) -> BatchNorm2d -> PReLU
//   body          bottleneck units, grouped in stages; the first unit of every stage has stride 2
//   output_layer  BatchNorm2d -> Dropout (eval: identity) -> Flatten -> Linear -> BatchNorm1d
//   l2_norm       x / ||x|| (no epsilon, as helpers.l2_norm)
//
// Everything runs in eval mode: BatchNorm uses the running statistics (folded into a per-channel
// scale and shift), Dropout is off. The configuration (stem width, stage layout, SE or plain IR,
// input 112 or 224, embedding width, BatchNorm1d affine) is read from the tensor shapes, so the
// reduced fixture network and the real IR-SE50 go through the same code.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import {
  Weights, batchNorm, bnSpec, contiguousCount, conv2d, convSpec, linear, loadBareNet, prelu, shapeOf,
  type KeySpec, type StateDict,
} from '../common.ts';

export interface IrseStage { inChannel: number; depth: number; units: number }

export interface IrseConfig {
  /** input_layer width (64 in IR-SE50) */
  stem: number;
  /** helpers.get_blocks: (in_channel, depth, num_units) per stage */
  stages: IrseStage[];
  /** 'ir_se': units end with an SE module (res_layer.5); 'ir': plain bottleneck_IR */
  mode: 'ir' | 'ir_se';
  /** SE bottleneck width = depth // seReduction (16 in the code) */
  seReduction: number;
  /** 112 (output_layer Linear over C*7*7) or 224 (C*14*14) */
  inputSize: number;
  /** embedding width (output_layer.3 out features) */
  embedding: number;
  /** BatchNorm1d(affine=...) at the end; Backbone's default is True (IDLoss), IR_SE_50() passes False */
  affine: boolean;
}

/** Backbone(input_size=112, num_layers=50, mode='ir_se') as HairCLIP's IDLoss builds it. */
export const IR_SE50: IrseConfig = {
  stem: 64,
  stages: [
    { inChannel: 64, depth: 64, units: 3 },
    { inChannel: 64, depth: 128, units: 4 },
    { inChannel: 128, depth: 256, units: 14 },
    { inChannel: 256, depth: 512, units: 3 },
  ],
  mode: 'ir_se', seReduction: 16, inputSize: 112, embedding: 512, affine: true,
};

/** One body unit, flattened out of the stages: its key index, widths and stride. */
export interface IrseUnit { index: number; inChannel: number; depth: number; stride: number }

export function irseUnits(c: IrseConfig): IrseUnit[] {
  const units: IrseUnit[] = [];
  for (const s of c.stages) {
    for (let u = 0; u < s.units; u++) {
      units.push({ index: units.length, inChannel: u === 0 ? s.inChannel : s.depth, depth: s.depth, stride: u === 0 ? 2 : 1 });
    }
  }
  return units;
}

/** Spatial size after the body: the input halves once per stage. */
function finalSpatial(c: IrseConfig): number {
  return c.inputSize / 2 ** c.stages.length;
}

// ---------------------------------------------------------------------------------------------
// State dict layout (state_dict() order: input_layer, output_layer, body — output_layer is
// assigned before body in Backbone.__init__; in a unit, shortcut_layer comes before res_layer).

/** The keys of one bottleneck unit `prefix` (`body.i`). Shared with e4e, whose body is the same. */
export function irseUnitSpec(prefix: string, u: IrseUnit, mode: IrseConfig['mode'], seReduction: number): KeySpec[] {
  const s: KeySpec[] = [];
  if (u.inChannel !== u.depth) {
    s.push(...convSpec(`${prefix}.shortcut_layer.0`, [u.depth, u.inChannel, 1, 1], false), ...bnSpec(`${prefix}.shortcut_layer.1`, u.depth));
  }
  s.push(
    ...bnSpec(`${prefix}.res_layer.0`, u.inChannel),
    ...convSpec(`${prefix}.res_layer.1`, [u.depth, u.inChannel, 3, 3], false),
    { key: `${prefix}.res_layer.2.weight`, shape: [u.depth], dtype: 'F32' },
    ...convSpec(`${prefix}.res_layer.3`, [u.depth, u.depth, 3, 3], false),
    ...bnSpec(`${prefix}.res_layer.4`, u.depth),
  );
  if (mode === 'ir_se') {
    const r = Math.floor(u.depth / seReduction); // SEModule(channels, reduction): channels // reduction
    s.push(
      ...convSpec(`${prefix}.res_layer.5.fc1`, [r, u.depth, 1, 1], false),
      ...convSpec(`${prefix}.res_layer.5.fc2`, [u.depth, r, 1, 1], false),
    );
  }
  return s;
}

export function irseStateSpec(c: IrseConfig): KeySpec[] {
  const last = c.stages[c.stages.length - 1].depth;
  const sp = finalSpatial(c);
  const s: KeySpec[] = [
    ...convSpec('input_layer.0', [c.stem, 3, 3, 3], false),
    ...bnSpec('input_layer.1', c.stem),
    { key: 'input_layer.2.weight', shape: [c.stem], dtype: 'F32' },
    ...bnSpec('output_layer.0', last),
    ...convSpec('output_layer.3', [c.embedding, last * sp * sp], true),
    ...bnSpec('output_layer.4', c.embedding, c.affine),
  ];
  for (const u of irseUnits(c)) s.push(...irseUnitSpec(`body.${u.index}`, u, c.mode, c.seReduction));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Configuration from the weights

/**
 * The stage layout of a body (`prefix` = 'body.' or e4e's 'body.'), from each unit's first conv
 * [depth, in, 3, 3]. A stage starts at unit 0 and wherever the depth changes — helpers.get_blocks
 * never puts two stages of the same depth next to each other (50/100/152: 64, 128, 256, 512).
 * A patched layout that does (e.g. [(16, 16, 1), (16, 16, 2), ...]) is not visible in the weights:
 * the stride-2 unit of the second stage has the same shapes as a stride-1 one; pass its `stages`
 * (get_blocks' (in_channel, depth, num_units) list), which are then checked against the units.
 */
export function inferStages(sd: StateDict, prefix: string, what: string, given?: readonly IrseStage[]): { stages: IrseStage[]; mode: IrseConfig['mode']; seReduction: number } {
  const n = contiguousCount(sd, prefix, what);
  if (!n) throw new Error(`${what}: no body units ('${prefix}0.res_layer.1.weight' missing)`);
  const stages: IrseStage[] = [];
  let mode: IrseConfig['mode'] | undefined;
  const seWidths: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const [depth, inC] = shapeOf(sd, `${prefix}${i}.res_layer.1.weight`, what);
    const cur = stages[stages.length - 1];
    if (!cur || depth !== cur.depth) stages.push({ inChannel: inC, depth, units: 1 });
    else cur.units++;
    const se = sd.has(`${prefix}${i}.res_layer.5.fc1.weight`);
    const m = se ? 'ir_se' : 'ir';
    if (mode && m !== mode) throw new Error(`${what}: unit ${i} is ${m} but unit 0 is ${mode}`);
    mode = m;
    if (se) seWidths.push([depth, shapeOf(sd, `${prefix}${i}.res_layer.5.fc1.weight`, what)[0]]);
  }
  // The reduction is a constructor constant (16); prefer it whenever every unit agrees with it,
  // otherwise take the exact ratio of the first unit (validation then names any unit that differs).
  const fits = (r: number) => seWidths.every(([d, w]) => Math.floor(d / r) === w);
  const seReduction = !seWidths.length || fits(16) ? 16 : seWidths[0][0] / seWidths[0][1];
  if (given) {
    // the given layout must describe the same units (the state-dict validation then checks every shape)
    const units = given.reduce((a, st) => a + st.units, 0);
    const depths = given.flatMap((st) => Array.from({ length: st.units }, () => st.depth));
    const found = stages.flatMap((st) => Array.from({ length: st.units }, () => st.depth));
    if (units !== n || depths.some((d, i) => d !== found[i])) {
      throw new Error(`${what}: the given stages ${fmtStages(given)} do not match the ${n} units in the weights ${fmtStages(stages)}`);
    }
    return { stages: given.map((st) => ({ ...st })), mode: mode!, seReduction };
  }
  return { stages, mode: mode!, seReduction };
}

const fmtStages = (st: readonly IrseStage[]) => `[${st.map((x) => `(${x.inChannel}, ${x.depth}, ${x.units})`).join(', ')}]`;

export interface IrseLoadOptions {
  /** get_blocks' stage list, for layouts whose stage boundaries the weights do not show (see inferStages) */
  stages?: readonly IrseStage[];
}

export function inferIrseConfig(sd: StateDict, what = 'IR-SE', opts: IrseLoadOptions = {}): IrseConfig {
  const stem = shapeOf(sd, 'input_layer.0.weight', what)[0];
  const { stages, mode, seReduction } = inferStages(sd, 'body.', what, opts.stages);
  const [embedding, flat] = shapeOf(sd, 'output_layer.3.weight', what);
  const last = stages[stages.length - 1].depth;
  const sp = Math.round(Math.sqrt(flat / last));
  if (sp * sp * last !== flat) throw new Error(`${what}: output_layer.3.weight [${embedding}, ${flat}] is not Linear(${last}*s*s, E)`);
  const inputSize = sp * 2 ** stages.length;
  return { stem, stages, mode, seReduction, inputSize, embedding, affine: sd.has('output_layer.4.weight') };
}

export interface IrseNet { config: IrseConfig; weights: Weights }

/**
 * A Backbone from a state dict, a `.pth` path or its bytes (bare state dict, as model_ir_se50.pth
 * and the fixtures), checked strictly against the inferred architecture.
 */
export function loadIrse(source: string | Uint8Array | StateDict, what = 'IR-SE backbone', opts: IrseLoadOptions = {}): IrseNet {
  return loadBareNet(source, what, (sd, w) => inferIrseConfig(sd, w, opts), irseStateSpec);
}

// ---------------------------------------------------------------------------------------------
// Forward

/** SEModule: x * sigmoid(fc2(relu(fc1(avgpool(x))))), fc = 1x1 convs without bias. */
function seModule(W: Weights, prefix: string, x: Tensor): Tensor {
  let a = G.globalAvgPool(x);
  a = G.relu(conv2d(W, `${prefix}.fc1`, a));
  a = G.sigmoid(conv2d(W, `${prefix}.fc2`, a));
  return G.mul(x, a);
}

/**
 * bottleneck_IR(_SE): res = BN -> Conv3x3 -> PReLU -> Conv3x3(stride) -> BN [-> SE];
 * shortcut = MaxPool2d(1, stride) (a strided pick) when widths match, else Conv1x1(stride) -> BN;
 * out = res + shortcut, no activation after the sum.
 */
export function bottleneckIR(W: Weights, prefix: string, x: Tensor, u: IrseUnit, mode: IrseConfig['mode']): Tensor {
  let shortcut: Tensor;
  if (u.inChannel === u.depth) {
    const [H, Wd] = x.shape.slice(2);
    shortcut = G.slice(x, [0, 0], [H, Wd], [2, 3], [u.stride, u.stride]);
  } else {
    shortcut = batchNorm(W, `${prefix}.shortcut_layer.1`, conv2d(W, `${prefix}.shortcut_layer.0`, x, { stride: u.stride }));
  }
  let r = batchNorm(W, `${prefix}.res_layer.0`, x);
  r = conv2d(W, `${prefix}.res_layer.1`, r, { padding: 1 });
  r = prelu(W, `${prefix}.res_layer.2`, r);
  r = conv2d(W, `${prefix}.res_layer.3`, r, { stride: u.stride, padding: 1 });
  r = batchNorm(W, `${prefix}.res_layer.4`, r);
  if (mode === 'ir_se') r = seModule(W, `${prefix}.res_layer.5`, r);
  return G.add(r, shortcut);
}

/** Intermediate values for verification (names follow the fixture hooks). */
export interface IrseTaps { body?: Tensor; prenorm?: Tensor }

/** Backbone.forward: image [N, 3, S, S] (S = config.inputSize) -> unit embeddings [N, E]. */
export function irseForward(net: IrseNet, x: Tensor, taps?: IrseTaps): Tensor {
  const { config: c, weights: W } = net;
  const [, ch, H, Wd] = x.shape;
  if (x.rank !== 4 || ch !== 3 || H !== c.inputSize || Wd !== c.inputSize) {
    throw new Error(`IR-SE: input must be [N, 3, ${c.inputSize}, ${c.inputSize}] for stages ${fmtStages(c.stages)}, got [${x.shape.join(', ')}]`
      + ' (two adjacent stages of one depth look like one in the weights: pass the stage list, IrseLoadOptions.stages)');
  }
  let h = conv2d(W, 'input_layer.0', x, { padding: 1 });
  h = batchNorm(W, 'input_layer.1', h);
  h = prelu(W, 'input_layer.2', h);
  for (const u of irseUnits(c)) h = bottleneckIR(W, `body.${u.index}`, h, u, c.mode);
  if (taps) taps.body = h;
  h = batchNorm(W, 'output_layer.0', h);
  h = G.flatten(h, 1); // C-major, as Flatten's view(N, -1)
  h = linear(W, 'output_layer.3', h);
  h = batchNorm(W, 'output_layer.4', h);
  if (taps) taps.prenorm = h;
  return G.divNorm(h, 1);
}

// ---------------------------------------------------------------------------------------------
// HairCLIP / pSp identity loss (criteria/id_loss.py)

/** The face crop of IDLoss.extract_feats, in the coordinates of a 256x256 image. */
export const ID_CROP = { top: 35, bottom: 223, left: 32, right: 220, frame: 256 } as const;

/**
 * IDLoss.extract_feats preprocessing: images in [-1, 1] (no renormalisation); anything not
 * 256 high is first AdaptiveAvgPool2d'ed to 256x256 (an exact 4x4 mean from 1024), then rows
 * 35:223 and columns 32:220 are cut out and AdaptiveAvgPool2d'ed to the network's input size (112).
 */
export function idPreprocess(x: Tensor, inputSize = 112): Tensor {
  if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`ID loss: images must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
  let v = x;
  if (v.shape[2] !== ID_CROP.frame) v = G.adaptiveAvgPool2d(v, [ID_CROP.frame, ID_CROP.frame]);
  v = G.slice(v, [ID_CROP.top, ID_CROP.left], [ID_CROP.bottom, ID_CROP.right], [2, 3]);
  return G.adaptiveAvgPool2d(v, [inputSize, inputSize]);
}

/** IDLoss.extract_feats: preprocessing + backbone, [N, 3, H, W] -> [N, E]. */
export function idFeatures(net: IrseNet, x: Tensor, taps?: IrseTaps): Tensor {
  return irseForward(net, idPreprocess(x, net.config.inputSize), taps);
}

/**
 * IDLoss.forward's value: mean over the batch of 1 - <f(y_hat)_i, f(y)_i>, with the target
 * features given as a separate (detached) tensor. Returns a scalar (rank 0).
 */
export function idLoss(yHatFeats: Tensor, yFeats: Tensor): Tensor {
  const dots = G.reduceSum(G.mul(yHatFeats, yFeats), 1);
  return G.reduceMean(G.sub(1, dots));
}
