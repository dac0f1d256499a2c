// HairCLIP's face parser: the CelebAMask-HQ U-Net (`criteria/parse_related_loss/unet.py` +
// `model_utils.py`, from pytorch-semseg), loaded from `parsenet.pth`, and the hair / background
// masks HairCLIP derives from it (`gen_hair_mask` / `gen_bg_mask` of AvgLabLoss / BackgroundLoss).
//
//   conv1..conv4  unetConv2 = [Conv3x3 (bias) -> BatchNorm -> ReLU] x 2, each followed by MaxPool2d(2)
//   center        unetConv2
//   up_concat4..1 unetUp: ConvTranspose2d(k2, s2) of the deeper map, the skip padded by the size
//                 difference, cat([skip, up], 1), unetConv2
//   final         Conv1x1 -> 19 logits at the input resolution (no softmax)
//
// Widths are [64, 128, 256, 512, 1024] / feature_scale (HairCLIP: 4 -> [16, ..., 256]); they, the
// input channels and the class count are read from the weights. Only the configuration HairCLIP
// uses (is_deconv=True, is_batchnorm=True) is supported; other files are refused by validation.
//
// HairCLIP's pipeline around it: images in [-1, 1] (no other normalisation), AdaptiveAvgPool2d to
// 512 ("shrink", an exact 2x2 mean from 1024), argmax over the classes, `== 13` (hair) or `!= 13`
// (everything else), and AdaptiveAvgPool2d back to the image size ("magnify": 512 -> 1024 is
// nearest-neighbour replication, so the mask stays exactly 0/1). The logits are detached there;
// here the argmax/compare/cast chain has no gradient, so nothing flows through a mask either.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import {
  Weights, batchNorm, bnSpec, conv2d, convSpec, convTranspose2d, loadBareNet, shapeOf, type KeySpec,
  type StateDict,
} from '../common.ts';

/** CelebAMask-HQ label order (g_mask.py: label = list index + 1, background 0). */
export const PARSENET_LABELS = [
  'background', 'skin', 'nose', 'eye_g', 'l_eye', 'r_eye', 'l_brow', 'r_brow', 'l_ear', 'r_ear',
  'mouth', 'u_lip', 'l_lip', 'hair', 'hat', 'ear_r', 'neck_l', 'neck', 'cloth',
] as const;
/** HairCLIP tests `== 13` for hair and `!= 13` for "background". */
export const PARSENET_HAIR = 13;
/** HairCLIP's shrink size (AdaptiveAvgPool2d((512, 512))). */
export const PARSENET_SIZE = 512;

export interface UnetConfig {
  /** the five block widths: [64, 128, 256, 512, 1024] / feature_scale */
  filters: [number, number, number, number, number];
  inChannels: number;
  nClasses: number;
}

/** unet() with its defaults: feature_scale 4, 19 classes, RGB input. */
export const PARSENET_HAIRCLIP: UnetConfig = { filters: [16, 32, 64, 128, 256], inChannels: 3, nClasses: 19 };

const ENCODER = ['conv1', 'conv2', 'conv3', 'conv4', 'center'] as const;
const DECODER = ['up_concat4', 'up_concat3', 'up_concat2', 'up_concat1'] as const;

// ---------------------------------------------------------------------------------------------
// State dict layout: conv1..conv4, center, up_concat4..1 (in a unetUp, `conv` is registered
// before `up`), final.

function unetConv2Spec(prefix: string, cin: number, cout: number): KeySpec[] {
  return [
    ...convSpec(`${prefix}.conv1.0`, [cout, cin, 3, 3], true), ...bnSpec(`${prefix}.conv1.1`, cout),
    ...convSpec(`${prefix}.conv2.0`, [cout, cout, 3, 3], true), ...bnSpec(`${prefix}.conv2.1`, cout),
  ];
}

export function unetStateSpec(c: UnetConfig): KeySpec[] {
  const f = c.filters;
  const s: KeySpec[] = [];
  ENCODER.forEach((name, i) => s.push(...unetConv2Spec(name, i === 0 ? c.inChannels : f[i - 1], f[i])));
  DECODER.forEach((name, k) => {
    const inC = f[4 - k]; const outC = f[3 - k];
    s.push(
      ...unetConv2Spec(`${name}.conv`, inC, outC),
      { key: `${name}.up.weight`, shape: [inC, outC, 2, 2], dtype: 'F32' },
      { key: `${name}.up.bias`, shape: [outC], dtype: 'F32' },
    );
  });
  s.push(...convSpec('final', [c.nClasses, f[0], 1, 1], true));
  return s;
}

export function inferUnetConfig(sd: StateDict, what = 'parsenet'): UnetConfig {
  if (sd.has('conv1.conv1.0.weight') && !sd.has('conv1.conv1.1.running_mean')) {
    throw new Error(`${what}: no BatchNorm after 'conv1.conv1.0' — only unet(is_batchnorm=True) (HairCLIP's parsenet.pth) is supported`);
  }
  if (sd.has('up_concat4.conv.conv1.0.weight') && !sd.has('up_concat4.up.weight')) {
    throw new Error(`${what}: no 'up_concat4.up.weight' — only unet(is_deconv=True) (HairCLIP's parsenet.pth) is supported`);
  }
  const filters = ENCODER.map((n) => shapeOf(sd, `${n}.conv1.0.weight`, what)[0]) as UnetConfig['filters'];
  const inChannels = shapeOf(sd, 'conv1.conv1.0.weight', what)[1];
  const nClasses = shapeOf(sd, 'final.weight', what)[0];
  return { filters, inChannels, nClasses };
}

export interface UnetNet { config: UnetConfig; weights: Weights }

/** The parser from a bare state dict (parsenet.pth), a path or bytes; strict like load_state_dict. */
export function loadParsenet(source: string | Uint8Array | StateDict, what = 'parsenet'): UnetNet {
  return loadBareNet(source, what, inferUnetConfig, unetStateSpec);
}

// ---------------------------------------------------------------------------------------------
// Forward

/** unetConv2: two Conv3x3(pad 1, bias) -> BatchNorm -> ReLU. */
function unetConv2(W: Weights, prefix: string, x: Tensor): Tensor {
  let h = G.relu(batchNorm(W, `${prefix}.conv1.1`, conv2d(W, `${prefix}.conv1.0`, x, { padding: 1 })));
  h = G.relu(batchNorm(W, `${prefix}.conv2.1`, conv2d(W, `${prefix}.conv2.0`, h, { padding: 1 })));
  return h;
}

/**
 * unetUp(skip, deeper): upsample the deeper map with the transposed conv, pad the skip by
 * offset // 2 on every side (offset = upsampled height - skip height, as the official code, which
 * uses the height for both axes; 0 when the input is a multiple of 16), concatenate skip first.
 */
function unetUp(W: Weights, prefix: string, skip: Tensor, deeper: Tensor): Tensor {
  const up = convTranspose2d(W, `${prefix}.up`, deeper, { stride: 2 });
  const offset = up.shape[2] - skip.shape[2];
  const p = Math.floor(offset / 2);
  const padded = p === 0 ? skip : G.padTorch(skip, [p, p, p, p]);
  if (padded.shape[2] !== up.shape[2] || padded.shape[3] !== up.shape[3]) {
    throw new Error(`parsenet ${prefix}: skip [${skip.shape.join(', ')}] cannot be padded to [${up.shape.join(', ')}] (use an input size divisible by 16)`);
  }
  return unetConv2(W, `${prefix}.conv`, G.concat([padded, up], 1));
}

/** unet.forward: image [N, C, H, W] (HairCLIP: [-1, 1], 512x512) -> logits [N, classes, H, W]. */
export function unetForward(net: UnetNet, x: Tensor): Tensor {
  const W = net.weights;
  if (x.rank !== 4 || x.shape[1] !== net.config.inChannels) {
    throw new Error(`parsenet: input must be [N, ${net.config.inChannels}, H, W], got [${x.shape.join(', ')}]`);
  }
  const conv1 = unetConv2(W, 'conv1', x);
  const conv2 = unetConv2(W, 'conv2', G.maxPool2d(conv1, 2));
  const conv3 = unetConv2(W, 'conv3', G.maxPool2d(conv2, 2));
  const conv4 = unetConv2(W, 'conv4', G.maxPool2d(conv3, 2));
  const center = unetConv2(W, 'center', G.maxPool2d(conv4, 2));
  const up4 = unetUp(W, 'up_concat4', conv4, center);
  const up3 = unetUp(W, 'up_concat3', conv3, up4);
  const up2 = unetUp(W, 'up_concat2', conv2, up3);
  const up1 = unetUp(W, 'up_concat1', conv1, up2);
  return conv2d(W, 'final', up1);
}

// ---------------------------------------------------------------------------------------------
// HairCLIP's preprocessing and masks

/** `shrink`: AdaptiveAvgPool2d((size, size)) of the image as HairCLIP holds it ([-1, 1]). */
export function parserInput(img: Tensor, size = PARSENET_SIZE): Tensor {
  return G.adaptiveAvgPool2d(img, [size, size]);
}

/** `torch.max(logits, 1)[1]`: the label map [N, H, W] (int64). */
export function parseLabels(logits: Tensor): Tensor {
  return G.argmax(logits, 1);
}

/**
 * `(labels.unsqueeze(1) == cls).float()` (or `!=` with `invert`), then `magnify` =
 * AdaptiveAvgPool2d to `size`: a float 0/1 mask [N, 1, size] with no gradient.
 */
export function classMask(logits: Tensor, cls: number, size: readonly [number, number], invert = false): Tensor {
  const labels = G.argmax(logits, 1, true);
  let hit = G.equal(labels, logits.graph.scalar(cls, 'int64'));
  if (invert) hit = G.logicalNot(hit);
  return G.adaptiveAvgPool2d(G.cast(hit, 'float32'), [size[0], size[1]]);
}

export interface MaskOptions {
  /** the parser's input size (HairCLIP: 512) */
  parserSize?: number;
  /** the class tested (HairCLIP: 13) */
  hairClass?: number;
}

/** gen_hair_mask(img): [N, 1, H, W] float 0/1 at the image's own resolution. */
export function hairMask(net: UnetNet, img: Tensor, opts: MaskOptions = {}): Tensor {
  const logits = unetForward(net, parserInput(img, opts.parserSize ?? PARSENET_SIZE));
  return classMask(logits, opts.hairClass ?? PARSENET_HAIR, [img.shape[2], img.shape[3]]);
}

/** gen_bg_mask(img): 1 where the label is not hair (the face included), [N, 1, H, W]. */
export function backgroundMask(net: UnetNet, img: Tensor, opts: MaskOptions = {}): Tensor {
  const logits = unetForward(net, parserInput(img, opts.parserSize ?? PARSENET_SIZE));
  return classMask(logits, opts.hairClass ?? PARSENET_HAIR, [img.shape[2], img.shape[3]], true);
}
