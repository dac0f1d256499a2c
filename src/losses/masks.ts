// Hair / non-hair masks from HairCLIP's U-Net parser, for the losses of a training step graph:
// one parser pass per image gives both masks (the official code runs the parser once per mask).
//
//   shrink:  AdaptiveAvgPool2d(parserSize) of the image in [-1, 1]     (official: 1024 -> 512)
//   labels:  argmax over the 19 classes; hair = class 13
//   magnify: AdaptiveAvgPool2d back to the image size (nearest replication for integer ratios)
//
// The masks are 0/1 floats with no gradient (argmax), wrapped in `detach` to say so explicitly.
//
// Parser input size for other generators. The official code hard-codes 512, i.e. half of its
// 1024 generator. `defaultParserSize` keeps that ratio — size / 2, at least 16 (the U-Net pools
// four times) — so a 32 px test generator is parsed at 16 px instead of being blown up 16x to
// 512 for a parser pass that would dominate the step; 1024 gives the official 512.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { PARSENET_HAIR, classMask, parserInput, unetForward, type UnetNet } from '../nets/parsenet/unet.ts';

export interface ParseMasks {
  /** 1 where the label is hair, [N, 1, H, W] */
  hair: Tensor;
  /** 1 where it is not (face and background included), [N, 1, H, W] */
  bg: Tensor;
}

/** The parser's input size for images of `imageSize` (512 for 1024, as official; see the header). */
export function defaultParserSize(imageSize: number): number {
  return Math.max(16, Math.round(imageSize / 2 / 16) * 16);
}

/** Hair and non-hair masks of `img` [N, 3, H, W] from one parser pass (detached). */
export function parseMasks(net: UnetNet, img: Tensor, parserSize = defaultParserSize(img.shape[2]), hairClass = PARSENET_HAIR): ParseMasks {
  const logits = unetForward(net, parserInput(img, parserSize));
  const size: [number, number] = [img.shape[2], img.shape[3]];
  return {
    hair: G.detach(classMask(logits, hairClass, size)),
    bg: G.detach(classMask(logits, hairClass, size, true)),
  };
}
