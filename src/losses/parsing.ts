// HairCLIP's background loss (criteria/parse_related_loss/bg_loss.py, BackgroundLoss):
//
//   m    = [label(x) != hair] AND [label(x_hat) != hair]       (detached parser masks, 0/1)
//   loss = MSELoss()(x * m, x_hat * m) = mean over ALL N*3*H*W elements of (x*m - x_hat*m)^2
//
// The masks come from the face parser (src/nets/parsenet/unet.ts `backgroundMask`); they carry
// no gradient, so the loss is differentiable in the images only. Builders take the masks as
// tensors, so a trainer can compute them in a parser forward session and feed them here, or use
// `backgroundLossWithParser` to build the whole thing in one graph.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { backgroundMask, type MaskOptions, type UnetNet } from '../nets/parsenet/unet.ts';

/** `((m_x + m_xh) == 2).float()`: pixels that are non-hair in both images, [N, 1, H, W]. */
export function backgroundLossMask(bgMaskX: Tensor, bgMaskXHat: Tensor): Tensor {
  return G.cast(G.equal(G.add(bgMaskX, bgMaskXHat), 2), 'float32');
}

/** nn.MSELoss (mean) between the masked images: (x*m - x_hat*m)^2 averaged over every element. */
export function maskedMse(x: Tensor, xHat: Tensor, m: Tensor): Tensor {
  const d = G.sub(G.mul(x, m), G.mul(xHat, m));
  // summed one axis at a time (W, H, then the rest): short float32 sums, like PyTorch's
  // pairwise reduction, instead of one long accumulation over ~3M elements
  const sq = G.mul(d, d);
  const total = G.reduceSum(G.reduceSum(G.reduceSum(sq, 3), 2));
  return G.div(total, sq.size);
}

/** BackgroundLoss(x, x_hat) from the two "not hair" masks (gen_bg_mask of x and of x_hat). Scalar. */
export function backgroundLoss(x: Tensor, xHat: Tensor, bgMaskX: Tensor, bgMaskXHat: Tensor): Tensor {
  return maskedMse(x, xHat, backgroundLossMask(bgMaskX, bgMaskXHat));
}

/** BackgroundLoss(x, x_hat) with the parser inside the same graph (masks detached). */
export function backgroundLossWithParser(net: UnetNet, x: Tensor, xHat: Tensor, opts: MaskOptions = {}): Tensor {
  return backgroundLoss(x, xHat, backgroundMask(net, x, opts), backgroundMask(net, xHat, opts));
}
