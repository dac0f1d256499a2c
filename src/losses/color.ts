// HairCLIP's average-hair-colour loss (criteria/parse_related_loss/average_lab_color_loss.py,
// AvgLabLoss) and the RGB -> Lab conversion it uses ("cal lab written by liuqk"):
//
//   rgb  = (img + 1) / 2                         no clamping (generator output may overshoot)
//   xyz  = (M @ rgb) / rowsum(M)                 M = sRGB/D65 matrix; NO gamma linearisation
//   f(t) = t^(1/3) if t > 0.008856 else 7.787 t + 0.137931
//   L    = 116 f(Y) - 16 if Y > 0.008856 else 903.3 Y;  a = 500 (f(X) - f(Y));  b = 200 (f(Y) - f(Z))
//   avg  = sum_hw(Lab * mask) / sum_hw(mask)     (mask sum 0 -> 1, so a hair-free image gives 0)
//   loss = L1Loss()(avg(fake), avg(real))        mean over N*3
//
// The hair masks come from the parser (src/nets/parsenet/unet.ts `hairMask`) and are detached.
// coach.py calls it as AvgLabLoss(reference, x_hat) (colour from a reference image) and as
// AvgLabLoss(x, x_hat) (keep the colour during hairstyle-only edits).
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { hairMask, type MaskOptions, type UnetNet } from '../nets/parsenet/unet.ts';

/** AvgLabLoss.M (float32 as torch.tensor stores it). */
export const RGB_TO_XYZ = [
  [0.412453, 0.357580, 0.180423],
  [0.212671, 0.715160, 0.072169],
  [0.019334, 0.119193, 0.950227],
] as const;
const LAB_EPS = 0.008856;

/** rgb2xyz: [N, 3, H, W] -> [N, 3, H, W], each row normalised by its float32 row sum. */
export function rgbToXyz(rgb: Tensor): Tensor {
  if (rgb.rank !== 4 || rgb.shape[1] !== 3) throw new Error(`rgbToXyz: expected [N, 3, H, W], got [${rgb.shape.join(', ')}]`);
  const f = Math.fround;
  const m = Float32Array.from(RGB_TO_XYZ.flat());
  const rowSum = Float32Array.from(RGB_TO_XYZ, (r) => f(f(f(r[0]) + f(r[1])) + f(r[2])));
  const g = rgb.graph;
  // einsum('bnc,bchw->bnhw') is a 1x1 convolution with weight M
  const xyz = G.conv2d(rgb, g.constant(m, [3, 3, 1, 1]));
  return G.div(xyz, g.constant(rowSum, [1, 3, 1, 1]));
}

/**
 * f(t) of the Lab transform. The cube root is taken of max-safe values only (1 where the linear
 * branch applies) so that neither branch produces NaN for t <= 0, in the value or the gradient.
 */
export function labF(t: Tensor): Tensor {
  const cube = G.greater(t, LAB_EPS);
  const safe = G.where(cube, t, 1);
  return G.where(cube, G.pow(safe, 1 / 3), G.add(G.mul(t, 7.787), 0.137931));
}

/** xyz2lab: [N, 3, H, W] (X, Y, Z) -> [N, 3, H, W] (L, a, b). */
export function xyzToLab(xyz: Tensor): Tensor {
  const [X, Y, Z] = G.split(xyz, [1, 1, 1], 1);
  const fX = labF(X); const fY = labF(Y); const fZ = labF(Z);
  const L = G.where(G.greater(Y, LAB_EPS), G.sub(G.mul(fY, 116), 16), G.mul(Y, 903.3));
  const a = G.mul(G.sub(fX, fY), 500);
  const b = G.mul(G.sub(fY, fZ), 200);
  return G.concat([L, a, b], 1);
}

/** Images in [-1, 1] to Lab: xyz2lab(rgb2xyz((img + 1) / 2)). */
export function imageToLab(img: Tensor): Tensor {
  return xyzToLab(rgbToXyz(G.div(G.add(img, 1), 2)));
}

/**
 * cal_hair_avg: per-image mean of `lab` over the mask, [N, 3, 1, 1]. Sums over H, then W, as the
 * official code; an empty mask divides by 1.
 */
export function maskedAverage(lab: Tensor, mask: Tensor): Tensor {
  const s = G.reduceSum(G.reduceSum(G.mul(lab, mask), 2, true), 3, true);
  const ms = G.reduceSum(G.reduceSum(mask, 2, true), 3, true);
  const denom = G.where(G.equal(ms, 0), 1, ms);
  return G.div(s, denom);
}

/** AvgLabLoss(fake, real) from the images and their hair masks (gen_hair_mask). Scalar. */
export function avgLabLoss(fake: Tensor, real: Tensor, hairMaskFake: Tensor, hairMaskReal: Tensor): Tensor {
  const avgFake = maskedAverage(imageToLab(fake), hairMaskFake);
  const avgReal = maskedAverage(imageToLab(real), hairMaskReal);
  return G.reduceMean(G.abs(G.sub(avgFake, avgReal)));
}

/** AvgLabLoss(fake, real) with the parser inside the same graph (masks detached). */
export function avgLabLossWithParser(net: UnetNet, fake: Tensor, real: Tensor, opts: MaskOptions = {}): Tensor {
  return avgLabLoss(fake, real, hairMask(net, fake, opts), hairMask(net, real, opts));
}
