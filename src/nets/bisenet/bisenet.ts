// BiSeNet face parser (zllrunning/face-parsing.PyTorch, model.py + resnet.py), loaded from
// `79999_iter.pth`: an alternative to HairCLIP's U-Net (src/nets/parsenet) with another label
// order (hair = 17 here, 13 there) and ImageNet input normalisation.
//
//   cp.resnet    ResNet-18 trunk: conv7x7 s2 -> BN -> ReLU -> maxpool 3x3 s2 -> layer1..4 of
//                BasicBlocks (layer2/3/4 stride 2) = feat8, feat16, feat32
//   ContextPath  avg = ConvBNReLU1x1(mean(feat32)); arm32(feat32) + avg -> nearest x2 -> conv_head32
//                = feat32_up (1/16); arm16(feat16) + feat32_up -> nearest x2 -> conv_head16 = feat16_up (1/8)
//                ARM(x) = f * sigmoid(BN(conv1x1(mean(f)))), f = ConvBNReLU3x3(x)
//   ffm          cat(feat8, feat16_up) -> ConvBNReLU1x1 = f; f * sigmoid(conv2(relu(conv1(mean(f))))) + f
//   outputs      BiSeNetOutput (ConvBNReLU3x3 -> conv1x1 to the classes, no bias) on ffm, feat16_up
//                and feat32_up, each resized bilinearly (align_corners=True) to the input size;
//                consumers use the first (feat_out) and argmax over the classes.
//
// Widths (trunk, attention, fusion, heads) and the class count are read from the weights.
// (SpatialPath exists in model.py but is never built — BiSeNet uses feat8 instead.)
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import {
  Weights, batchNorm, bnSpec, contiguousCount, conv2d, convSpec, loadBareNet, resizeBilinearAlignCorners,
  shapeOf, type KeySpec, type StateDict,
} from '../common.ts';

/** Labels of the face-parsing.PyTorch model (prepropess_data.py: label = list index + 1, background 0). */
export const BISENET_LABELS = [
  'background', 'skin', 'l_brow', 'r_brow', 'l_eye', 'r_eye', 'eye_g', 'l_ear', 'r_ear', 'ear_r',
  'nose', 'mouth', 'u_lip', 'l_lip', 'neck', 'neck_l', 'cloth', 'hair', 'hat',
] as const;
export const BISENET_HAIR = 17;
/** test.py resizes to 512x512 and normalises with the ImageNet statistics. */
export const BISENET_SIZE = 512;
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface BisenetConfig {
  /** ResNet-18 stem width (conv1) */
  stem: number;
  /** per layer1..4: output width and BasicBlock count */
  layers: { width: number; blocks: number }[];
  /** AttentionRefinementModule / conv_head / conv_avg width (128) */
  arm: number;
  /** FeatureFusionModule(in = feat8 + arm, out) width (256) and its attention width out // 4 */
  ffm: number;
  ffmMid: number;
  /** BiSeNetOutput mid widths: conv_out (256), conv_out16 / conv_out32 (64) */
  outMid: number;
  out16Mid: number;
  out32Mid: number;
  nClasses: number;
}

/** BiSeNet(n_classes=19) as 79999_iter.pth. */
export const BISENET_FACE: BisenetConfig = {
  stem: 64,
  layers: [{ width: 64, blocks: 2 }, { width: 128, blocks: 2 }, { width: 256, blocks: 2 }, { width: 512, blocks: 2 }],
  arm: 128, ffm: 256, ffmMid: 64, outMid: 256, out16Mid: 64, out32Mid: 64, nClasses: 19,
};

const LAYER_STRIDE = [1, 2, 2, 2];

interface Block { prefix: string; inC: number; outC: number; stride: number; downsample: boolean }

function resnetBlocks(c: BisenetConfig): Block[] {
  const blocks: Block[] = [];
  let inC = c.stem;
  c.layers.forEach((l, li) => {
    for (let b = 0; b < l.blocks; b++) {
      const stride = b === 0 ? LAYER_STRIDE[li] : 1;
      const bin = b === 0 ? inC : l.width;
      blocks.push({ prefix: `cp.resnet.layer${li + 1}.${b}`, inC: bin, outC: l.width, stride, downsample: bin !== l.width || stride !== 1 });
    }
    inC = l.width;
  });
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// State dict layout (BiSeNet.state_dict(): cp.{resnet, arm16, arm32, conv_head32, conv_head16,
// conv_avg}, ffm, conv_out, conv_out16, conv_out32)

function convBnReluSpec(prefix: string, cin: number, cout: number, k: number): KeySpec[] {
  return [...convSpec(`${prefix}.conv`, [cout, cin, k, k], false), ...bnSpec(`${prefix}.bn`, cout)];
}
function armSpec(prefix: string, cin: number, cout: number): KeySpec[] {
  return [...convBnReluSpec(`${prefix}.conv`, cin, cout, 3), ...convSpec(`${prefix}.conv_atten`, [cout, cout, 1, 1], false), ...bnSpec(`${prefix}.bn_atten`, cout)];
}
function outputSpec(prefix: string, cin: number, mid: number, n: number): KeySpec[] {
  return [...convBnReluSpec(`${prefix}.conv`, cin, mid, 3), ...convSpec(`${prefix}.conv_out`, [n, mid, 1, 1], false)];
}

export function bisenetStateSpec(c: BisenetConfig): KeySpec[] {
  const s: KeySpec[] = [...convSpec('cp.resnet.conv1', [c.stem, 3, 7, 7], false), ...bnSpec('cp.resnet.bn1', c.stem)];
  for (const b of resnetBlocks(c)) {
    s.push(
      ...convSpec(`${b.prefix}.conv1`, [b.outC, b.inC, 3, 3], false), ...bnSpec(`${b.prefix}.bn1`, b.outC),
      ...convSpec(`${b.prefix}.conv2`, [b.outC, b.outC, 3, 3], false), ...bnSpec(`${b.prefix}.bn2`, b.outC),
    );
    if (b.downsample) s.push(...convSpec(`${b.prefix}.downsample.0`, [b.outC, b.inC, 1, 1], false), ...bnSpec(`${b.prefix}.downsample.1`, b.outC));
  }
  const [, w8, w16, w32] = c.layers.map((l) => l.width);
  s.push(
    ...armSpec('cp.arm16', w16, c.arm), ...armSpec('cp.arm32', w32, c.arm),
    ...convBnReluSpec('cp.conv_head32', c.arm, c.arm, 3), ...convBnReluSpec('cp.conv_head16', c.arm, c.arm, 3),
    ...convBnReluSpec('cp.conv_avg', w32, c.arm, 1),
    ...convBnReluSpec('ffm.convblk', w8 + c.arm, c.ffm, 1),
    ...convSpec('ffm.conv1', [c.ffmMid, c.ffm, 1, 1], false), ...convSpec('ffm.conv2', [c.ffm, c.ffmMid, 1, 1], false),
    ...outputSpec('conv_out', c.ffm, c.outMid, c.nClasses),
    ...outputSpec('conv_out16', c.arm, c.out16Mid, c.nClasses),
    ...outputSpec('conv_out32', c.arm, c.out32Mid, c.nClasses),
  );
  return s;
}

export function inferBisenetConfig(sd: StateDict, what = 'BiSeNet'): BisenetConfig {
  const stem = shapeOf(sd, 'cp.resnet.conv1.weight', what)[0];
  const layers = [1, 2, 3, 4].map((li) => ({
    width: shapeOf(sd, `cp.resnet.layer${li}.0.conv1.weight`, what)[0],
    blocks: contiguousCount(sd, `cp.resnet.layer${li}.`, what),
  }));
  const ffm = shapeOf(sd, 'ffm.convblk.conv.weight', what)[0];
  return {
    stem, layers,
    arm: shapeOf(sd, 'cp.arm32.conv.conv.weight', what)[0],
    ffm, ffmMid: shapeOf(sd, 'ffm.conv1.weight', what)[0], // FeatureFusionModule: conv1 out_chan // 4 (read, not assumed)
    outMid: shapeOf(sd, 'conv_out.conv.conv.weight', what)[0],
    out16Mid: shapeOf(sd, 'conv_out16.conv.conv.weight', what)[0],
    out32Mid: shapeOf(sd, 'conv_out32.conv.conv.weight', what)[0],
    nClasses: shapeOf(sd, 'conv_out.conv_out.weight', what)[0],
  };
}

export interface BisenetNet { config: BisenetConfig; weights: Weights }

/** BiSeNet from a bare state dict (79999_iter.pth), a path or bytes; strict. */
export function loadBisenet(source: string | Uint8Array | StateDict, what = 'BiSeNet'): BisenetNet {
  return loadBareNet(source, what, inferBisenetConfig, bisenetStateSpec);
}

// ---------------------------------------------------------------------------------------------
// Forward

/** ConvBNReLU(ks, padding = ks // 2 as every use in model.py). */
function convBnRelu(W: Weights, prefix: string, x: Tensor): Tensor {
  const k = W.shape(`${prefix}.conv.weight`)[2];
  return G.relu(batchNorm(W, `${prefix}.bn`, conv2d(W, `${prefix}.conv`, x, { padding: Math.floor(k / 2) })));
}

/** resnet.py BasicBlock: relu(shortcut + bn2(conv2(relu(bn1(conv1(x)))))). */
function basicBlock(W: Weights, b: Block, x: Tensor): Tensor {
  let r = G.relu(batchNorm(W, `${b.prefix}.bn1`, conv2d(W, `${b.prefix}.conv1`, x, { stride: b.stride, padding: 1 })));
  r = batchNorm(W, `${b.prefix}.bn2`, conv2d(W, `${b.prefix}.conv2`, r, { padding: 1 }));
  const shortcut = b.downsample ? batchNorm(W, `${b.prefix}.downsample.1`, conv2d(W, `${b.prefix}.downsample.0`, x, { stride: b.stride })) : x;
  return G.relu(G.add(shortcut, r));
}

/** AttentionRefinementModule: f * sigmoid(bn_atten(conv_atten(mean(f)))), f = ConvBNReLU3x3(x). */
function arm(W: Weights, prefix: string, x: Tensor): Tensor {
  const feat = convBnRelu(W, `${prefix}.conv`, x);
  const a = G.sigmoid(batchNorm(W, `${prefix}.bn_atten`, conv2d(W, `${prefix}.conv_atten`, G.globalAvgPool(feat))));
  return G.mul(feat, a);
}

/** F.interpolate(x, size, mode='nearest') */
const nearest = (x: Tensor, like: Tensor) => G.resize(x, [like.shape[2], like.shape[3]], 'nearest');

export interface BisenetTaps {
  feat8?: Tensor; feat16?: Tensor; feat32?: Tensor;
  /** ContextPath outputs: feat16_up (1/8) and feat32_up (1/16) */
  cpFeat8?: Tensor; cpFeat16?: Tensor;
  ffm?: Tensor;
}

export interface BisenetOutputs { out: Tensor; out16: Tensor; out32: Tensor }

/** BiSeNet.forward: normalised image [N, 3, H, W] (H, W multiples of 32) -> three logit maps at H x W. */
export function bisenetForward(net: BisenetNet, x: Tensor, taps?: BisenetTaps): BisenetOutputs {
  const { config: c, weights: W } = net;
  if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`BiSeNet: input must be [N, 3, H, W], got [${x.shape.join(', ')}]`);
  const [H, Wd] = x.shape.slice(2);

  // ResNet-18 trunk
  let h = G.relu(batchNorm(W, 'cp.resnet.bn1', conv2d(W, 'cp.resnet.conv1', x, { stride: 2, padding: 3 })));
  h = G.maxPool2d(h, 3, 2, 1);
  const feats: Tensor[] = [];
  const blocks = resnetBlocks(c);
  for (let li = 1; li <= 4; li++) {
    for (const b of blocks) if (b.prefix.startsWith(`cp.resnet.layer${li}.`)) h = basicBlock(W, b, h);
    feats.push(h);
  }
  const [, feat8, feat16, feat32] = feats;

  // ContextPath
  const avg = convBnRelu(W, 'cp.conv_avg', G.globalAvgPool(feat32));
  const feat32Sum = G.add(arm(W, 'cp.arm32', feat32), nearest(avg, feat32));
  const feat32Up = convBnRelu(W, 'cp.conv_head32', nearest(feat32Sum, feat16));
  const feat16Sum = G.add(arm(W, 'cp.arm16', feat16), feat32Up);
  const feat16Up = convBnRelu(W, 'cp.conv_head16', nearest(feat16Sum, feat8));

  // FeatureFusionModule(feat8, feat16_up)
  const f = convBnRelu(W, 'ffm.convblk', G.concat([feat8, feat16Up], 1));
  let a = G.relu(conv2d(W, 'ffm.conv1', G.globalAvgPool(f)));
  a = G.sigmoid(conv2d(W, 'ffm.conv2', a));
  const fused = G.add(G.mul(f, a), f);
  if (taps) Object.assign(taps, { feat8, feat16, feat32, cpFeat8: feat16Up, cpFeat16: feat32Up, ffm: fused });

  const head = (prefix: string, t: Tensor) =>
    resizeBilinearAlignCorners(conv2d(W, `${prefix}.conv_out`, convBnRelu(W, `${prefix}.conv`, t)), [H, Wd]);
  return { out: head('conv_out', fused), out16: head('conv_out16', feat16Up), out32: head('conv_out32', feat32Up) };
}

/** The main logits (net(x)[0]), [N, classes, H, W]. */
export function bisenetLogits(net: BisenetNet, x: Tensor, taps?: BisenetTaps): Tensor {
  return bisenetForward(net, x, taps).out;
}

/**
 * test.py's input from an RGB image in [0, 1] (`range: 'unit'`) or in [-1, 1] as generators and
 * HairCLIP hold images (`range: 'signed'`): resized to `size` (default 512) by adaptive average
 * pooling — exact 2x2 means from 1024 — then normalised with the ImageNet mean and std.
 * (test.py resizes photos with PIL's bilinear filter before ToTensor; pooling is this port's
 * in-graph, differentiable stand-in for images that are already tensors.)
 */
export function bisenetInput(img: Tensor, opts: { range: 'unit' | 'signed'; size?: number }): Tensor {
  const size = opts.size ?? BISENET_SIZE;
  let x = img.shape[2] === size && img.shape[3] === size ? img : G.adaptiveAvgPool2d(img, [size, size]);
  if (opts.range === 'signed') x = G.mul(G.add(x, 1), 0.5);
  const g = img.graph;
  const mean = g.constant(Float32Array.from(IMAGENET_MEAN), [1, 3, 1, 1]);
  const std = g.constant(Float32Array.from(IMAGENET_STD), [1, 3, 1, 1]);
  return G.div(G.sub(x, mean), std);
}

/** The label map: argmax over the classes of the main logits, [N, H, W] (int64). */
export function bisenetLabels(logits: Tensor): Tensor {
  return G.argmax(logits, 1);
}

/** A 0/1 float mask [N, 1, H, W] of one class (hair = 17), with no gradient. */
export function bisenetClassMask(logits: Tensor, cls = BISENET_HAIR): Tensor {
  return G.cast(G.equal(G.argmax(logits, 1, true), logits.graph.scalar(cls, 'int64')), 'float32');
}
