// Resize and adaptive pooling with PyTorch's semantics, as separable linear maps (see resample2d).
// Source coordinates are computed in float32, as PyTorch's CPU kernels do for float tensors,
// so bicubic agrees to float rounding rather than to 1e-3.
import type { Tensor } from '../graph.ts';
import { resample2d } from './conv.ts';
import { expand, reshape } from './shape.ts';

const f = Math.fround;

export type ResizeMode = 'nearest' | 'bilinear' | 'bicubic';

/**
 * Row i of the result holds the weights of output i over the input samples. `alignCorners`
 * (bilinear / bicubic only, as F.interpolate(align_corners=True)): the corner samples of input and
 * output coincide, src = dst * (in - 1) / (out - 1), with the scale and the product rounded to
 * float32 as PyTorch's CPU kernels compute them for float tensors.
 */
export function resizeMatrix(inSize: number, outSize: number, mode: ResizeMode, scaleFactor?: number, alignCorners = false): Float32Array {
  const A = new Float32Array(outSize * inSize);
  if (alignCorners) {
    if (mode === 'nearest') throw new Error('resize: align_corners applies to bilinear and bicubic only');
    const scale = outSize > 1 ? f((inSize - 1) / (outSize - 1)) : 0;
    for (let o = 0; o < outSize; o++) {
      const row = o * inSize;
      // PyTorch's compiled kernel takes both the index and the fraction from the unrounded
      // product (in double scale * o is exact): this matches its bilinear weights exactly and its
      // bicubic ones to ~1e-6 (the cubic polynomials' own FMA contractions), checked against
      // torch 1.13 for 5 -> 11, 32 -> 224 and 64 -> 224
      const exact = scale * o;
      const i0 = Math.floor(exact);
      const t = f(exact - i0);
      if (mode === 'bilinear') {
        const i1 = Math.min(i0 + 1, inSize - 1);
        const l1 = Math.min(Math.max(t, 0), 1); // clamped as compute_source_index_and_lambda does
        A[row + i0] += f(1 - l1);
        A[row + i1] += l1;
      } else {
        const w = cubicWeights(t);
        for (let k = 0; k < 4; k++) {
          const idx = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
          A[row + idx] = f(A[row + idx] + w[k]);
        }
      }
    }
    return A;
  }
  // PyTorch: scale = 1/scale_factor when given, else in/out (area_pixel_compute_scale, align_corners=False)
  const scale = scaleFactor ? f(1 / scaleFactor) : f(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    const row = o * inSize;
    if (mode === 'nearest') {
      const src = Math.min(Math.floor(f(o * scale)), inSize - 1);
      A[row + src] = 1;
    } else if (mode === 'bilinear') {
      let src = f(f(scale * f(o + 0.5)) - 0.5);
      if (src < 0) src = 0;
      const i0 = Math.floor(src);
      const i1 = Math.min(i0 + 1, inSize - 1);
      const l1 = f(src - i0);
      const l0 = f(1 - l1);
      A[row + i0] += l0;
      A[row + i1] += l1;
    } else {
      // PyTorch's compiled CPU kernel evaluates scale * (o + 0.5) - 0.5 with ONE rounding (a fused
      // multiply-add), for the source coordinate and again for its fraction t (the exact value
      // minus i0). Rounding the product first, as the bilinear branch does, is off by up to 7.5e-5
      // on 1024 -> 224 (ops fixture); this is within 4e-7. In double the expression is exact: a
      // 24-bit scale times o + 0.5 (< 2^17, one fraction bit) fits in 53 bits.
      const exact = scale * (o + 0.5) - 0.5;
      const i0 = Math.floor(f(exact));
      const t = f(exact - i0);
      const w = cubicWeights(t);
      for (let k = 0; k < 4; k++) {
        const idx = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
        A[row + idx] = f(A[row + idx] + w[k]);
      }
    }
  }
  return A;
}

/** PyTorch's upsample_bicubic2d coefficients, A = -0.75, in float32. */
function cubicWeights(t: number): number[] {
  const A = -0.75;
  const c1 = (x: number) => f(f(f(f(A + 2) * x) - f(A + 3)) * x * x + 1);
  const c2 = (x: number) => f(f(f(f(A * x) - f(5 * A)) * x + f(8 * A)) * x - f(4 * A));
  return [c2(f(t + 1)), c1(t), c1(f(1 - t)), c2(f(2 - t))].map(f);
}

/** F.interpolate(x, size, mode, align_corners=False, or True with `alignCorners`) on [..., H, W] */
export function resize(x: Tensor, size: [number, number], mode: ResizeMode, opts: { alignCorners?: boolean } = {}): Tensor {
  const [H, W] = x.shape.slice(-2);
  const [Ho, Wo] = size;
  const ac = opts.alignCorners ?? false;
  if (mode === 'nearest' && !ac && Ho % H === 0 && Wo % W === 0) return upsampleNearest(x, Ho / H, Wo / W);
  return resample2d(x, resizeMatrix(H, Ho, mode, undefined, ac), resizeMatrix(W, Wo, mode, undefined, ac), Ho, Wo);
}

/** integer nearest upsampling by broadcasting (nn.Upsample(scale_factor=s)) */
export function upsampleNearest(x: Tensor, sh: number, sw = sh): Tensor {
  const lead = x.shape.slice(0, -2);
  const [H, W] = x.shape.slice(-2);
  const y = expand(reshape(x, [...lead, H, 1, W, 1]), [...lead, H, sh, W, sw]);
  return reshape(y, [...lead, H * sh, W * sw]);
}

export function adaptiveAvgPoolMatrix(inSize: number, outSize: number): Float32Array {
  const A = new Float32Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) {
    const s = Math.floor((o * inSize) / outSize);
    const e = Math.ceil(((o + 1) * inSize) / outSize);
    for (let i = s; i < e; i++) A[o * inSize + i] = f(1 / (e - s));
  }
  return A;
}

/** nn.AdaptiveAvgPool2d(size) */
export function adaptiveAvgPool2d(x: Tensor, size: [number, number]): Tensor {
  const [H, W] = x.shape.slice(-2);
  return resample2d(x, adaptiveAvgPoolMatrix(H, size[0]), adaptiveAvgPoolMatrix(W, size[1]), size[0], size[1]);
}

/**
 * nn.AvgPool2d(k)(nn.Upsample(scale_factor=s)(x)) along one axis as one matrix:
 * StyleCLIP/HairCLIP's CLIP-loss resize (s = 7, k = size/32) without materialising the 7x image.
 */
export function upsamplePoolMatrix(inSize: number, s: number, k: number): Float32Array {
  const outSize = Math.floor((inSize * s) / k);
  const A = new Float32Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) {
    for (let j = o * k; j < o * k + k; j++) A[o * inSize + Math.floor(j / s)] += 1 / k;
  }
  return A;
}
export function upsamplePool(x: Tensor, s: number, k: number): Tensor {
  const [H, W] = x.shape.slice(-2);
  const Ho = Math.floor((H * s) / k); const Wo = Math.floor((W * s) / k);
  return resample2d(x, upsamplePoolMatrix(H, s, k), upsamplePoolMatrix(W, s, k), Ho, Wo);
}
