// Getting pixels into CLIP, in the ways the projects this repo ports do it.
//
// 1. Generated images ([-1, 1], from StyleGAN2), differentiable graph ops:
//    - `clipLossResize`: StyleCLIP/HairCLIP `CLIPLoss` — nn.Upsample(scale_factor=7) (nearest) then
//      nn.AvgPool2d(size // 32): 1024 -> 7168 -> 224 (256 -> 1792 -> 224). HairCLIP feeds the result
//      to CLIP as is, still in [-1, 1], WITHOUT CLIP's mean/std (a quirk inherited from StyleCLIP;
//      `normalize: true` adds `hairclipRenorm`, the fix HairCLIPv2 made).
//    - `embeddingResize`: HairCLIP's `HairMapper.gen_image_embedding` / `ImageEmbddingLoss` —
//      AdaptiveAvgPool2d(224), then `hairclipRenorm` = Normalize(mean, std)(x * 0.5 + 0.5).
// 2. Photos (CLIP's own `_transform`: Resize(224, bicubic) of the short side, CenterCrop(224),
//    ToTensor, Normalize):
//    - `photoTransformU8`: host-side and exact — replays Pillow's 8-bit two-pass resampler
//      (fixed-point coefficients, rounding to uint8 after each pass) on decoded RGB bytes, so the
//      result equals `preprocess(PIL.Image)` bit for bit (up to float32 normalisation).
//    - `preprocessPhoto`: a graph op on a float image in [0, 1] with the same antialiased bicubic
//      kernel (Pillow's a = -0.5, support scaled by the downscale factor — what torchvision's
//      tensor Resize(antialias=True) computes) but without Pillow's two uint8 roundings; it differs
//      from the PIL path by up to ~1/255 per pass before normalisation, and is differentiable.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** torchvision Normalize(CLIP mean, std) on [N, 3, H, W]: (x - mean) / std */
export function clipNormalize(x: Tensor): Tensor {
  const g = x.graph;
  const mean = g.constant(Float32Array.from(CLIP_MEAN), [1, 3, 1, 1]);
  const std = g.constant(Float32Array.from(CLIP_STD), [1, 3, 1, 1]);
  return G.div(G.sub(x, mean), std);
}

/** Normalize(mean, std)(x * 0.5 + 0.5): a [-1, 1] image into CLIP's input space. */
export function hairclipRenorm(x: Tensor): Tensor {
  return clipNormalize(G.add(G.mul(x, 0.5), 0.5));
}

/**
 * CLIPLoss's resize: AvgPool2d(size // 32)(Upsample(scale_factor=7)(x)) for a square [N, 3, S, S]
 * image (S = 256, 512, 1024, ...), giving [N, 3, 224, 224]. `normalize` (default false, as
 * HairCLIP/StyleCLIP) applies `hairclipRenorm` after it.
 */
export function clipLossResize(x: Tensor, opts: { normalize?: boolean } = {}): Tensor {
  const [, C, H, W] = x.shape;
  if (x.rank !== 4 || C !== 3 || H !== W) throw new Error(`clipLossResize: need a square [N, 3, S, S] image, got [${x.shape.join(', ')}]`);
  const k = Math.floor(H / 32);
  if (k < 1 || Math.floor((H * 7) / k) !== 224) {
    throw new Error(`clipLossResize: size ${H} does not give 224 under Upsample(7) + AvgPool2d(${k}) (use a multiple of 32)`);
  }
  const y = G.upsamplePool(x, 7, k);
  return opts.normalize ? hairclipRenorm(y) : y;
}

/** HairCLIP's image-embedding path: AdaptiveAvgPool2d(224) then Normalize(mean, std)(x * 0.5 + 0.5). */
export function embeddingResize(x: Tensor, size = 224): Tensor {
  return hairclipRenorm(G.adaptiveAvgPool2d(x, [size, size]));
}

// ---------------------------------------------------------------------------------------------
// CLIP's _transform for photos.

/** torchvision Resize(size) on a PIL image: the short side becomes `size`, the long side int(size * long / short). */
export function resizedShortSide(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.floor((size * height) / width)];
  return [Math.floor((size * width) / height), size];
}

/** torchvision CenterCrop offsets: int(round((in - out) / 2)), Python's round (half to even). */
export function centerCropOffset(inSize: number, outSize: number): number {
  if (outSize > inSize) throw new Error(`centerCrop: ${outSize} is larger than the image (${inSize}); torchvision pads, CLIP's transform never needs it`);
  const v = (inSize - outSize) / 2;
  const f = Math.floor(v);
  const r = v - f === 0.5 ? (f % 2 === 0 ? f : f + 1) : Math.round(v);
  return r;
}

function bicubicPil(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * Pillow's precompute_coeffs for BICUBIC (support 2, widened by the downscale factor), in double:
 * for each output index its first input index and normalised weights.
 */
export function pilBicubicCoeffs(inSize: number, outSize: number): { start: number[]; weights: number[][] } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const start: number[] = []; const weights: number[][] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k: number[] = [];
    let ww = 0;
    for (let i = 0; i < xmax; i++) {
      const w = bicubicPil((i + xmin - center + 0.5) / filterscale);
      k.push(w);
      ww += w;
    }
    start.push(xmin);
    weights.push(ww !== 0 ? k.map((w) => w / ww) : k);
  }
  return { start, weights };
}

/** The same resampling as a dense [out, in] matrix (float32) for `G.resample2d`. */
export function pilBicubicMatrix(inSize: number, outSize: number): Float32Array {
  const { start, weights } = pilBicubicCoeffs(inSize, outSize);
  const A = new Float32Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) weights[o].forEach((w, i) => { A[o * inSize + start[o] + i] = w; });
  return A;
}

/**
 * Graph version of CLIP's photo transform on a float RGB image [N, 3, H, W] in [0, 1]: antialiased
 * bicubic resize of the short side to `size` (Pillow's kernel, float arithmetic), centre crop,
 * Normalize(mean, std). See the file header for how it differs from PIL's 8-bit path.
 */
export function preprocessPhoto(x: Tensor, size = 224): Tensor {
  const [, C, H, W] = x.shape;
  if (x.rank !== 4 || C !== 3) throw new Error(`preprocessPhoto: need [N, 3, H, W], got [${x.shape.join(', ')}]`);
  const [Wr, Hr] = resizedShortSide(W, H, size);
  let y = x;
  // torchvision returns the image untouched when it already has the target size
  if (Wr !== W || Hr !== H) y = G.resample2d(x, pilBicubicMatrix(H, Hr), pilBicubicMatrix(W, Wr), Hr, Wr);
  const top = centerCropOffset(Hr, size); const left = centerCropOffset(Wr, size);
  y = G.slice(y, [top, left], [top + size, left + size], [2, 3]);
  return clipNormalize(y);
}

/** Pillow's normalize_coeffs_8bpc: fixed point with 22 fraction bits, rounded half away from zero. */
function fixedPoint(weights: number[][]): number[][] {
  return weights.map((k) => k.map((v) => (v < 0 ? Math.trunc(-0.5 + v * PIL_ONE) : Math.trunc(0.5 + v * PIL_ONE))));
}
const PIL_ONE = 1 << 22; // PRECISION_BITS = 32 - 8 - 2

/**
 * One Pillow 8-bit pass (ImagingResample{Horizontal,Vertical}_8bpc) over an interleaved RGB buffer
 * [h, w, 3]: along x (horizontal) or y, with taps starting at `start[o] - offset`.
 */
function pilPass8(src: Uint8Array, w: number, h: number, coeffs: { start: number[]; weights: number[][] }, offset: number, horizontal: boolean): Uint8Array {
  const kk = fixedPoint(coeffs.weights);
  const outLen = kk.length;
  const ow = horizontal ? outLen : w; const oh = horizontal ? h : outLen;
  const out = new Uint8Array(ow * oh * 3);
  for (let yy = 0; yy < oh; yy++) {
    for (let xx = 0; xx < ow; xx++) {
      const o = horizontal ? xx : yy;
      const k = kk[o]; const s0 = coeffs.start[o] - offset;
      for (let c = 0; c < 3; c++) {
        let ss = PIL_ONE / 2;
        for (let i = 0; i < k.length; i++) {
          ss += k[i] * (horizontal ? src[(yy * w + s0 + i) * 3 + c] : src[((s0 + i) * w + xx) * 3 + c]);
        }
        // clip8: arithmetic shift right by 22, then clamp to 0..255
        out[(yy * ow + xx) * 3 + c] = Math.min(255, Math.max(0, Math.floor(ss / PIL_ONE)));
      }
    }
  }
  return out;
}

/**
 * Pillow's `Image.resize((outW, outH), BICUBIC)` on an RGB uint8 image (HWC, row-major),
 * reproducing its integer arithmetic (ImagingResampleInner): a horizontal pass over only the rows
 * the vertical pass will read, then the vertical pass.
 */
export function pilResizeBicubicRGB(rgb: Uint8Array, width: number, height: number, outW: number, outH: number): Uint8Array {
  if (rgb.length !== width * height * 3) throw new Error(`pilResizeBicubicRGB: ${rgb.length} bytes for ${width}x${height} RGB`);
  const vert = pilBicubicCoeffs(height, outH);
  let img = rgb; let h = height; let offset = 0;
  if (outW !== width) {
    const first = vert.start[0];
    const last = vert.start[outH - 1] + vert.weights[outH - 1].length;
    img = pilPass8(rgb.subarray(first * width * 3, last * width * 3), width, last - first, pilBicubicCoeffs(width, outW), 0, true);
    h = last - first; offset = first;
  }
  if (outH !== height) img = pilPass8(img, outW, h, vert, offset, false);
  return img === rgb ? rgb.slice() : img;
}

/**
 * CLIP's `preprocess` (clip.load's _transform) on decoded RGB bytes (HWC): PIL bicubic resize of
 * the short side to `size`, centre crop, ToTensor (/255), Normalize. Returns [3, size, size] float32.
 */
export function photoTransformU8(rgb: Uint8Array, width: number, height: number, size = 224): Float32Array {
  const [Wr, Hr] = resizedShortSide(width, height, size);
  const resized = Wr === width && Hr === height ? rgb : pilResizeBicubicRGB(rgb, width, height, Wr, Hr);
  const top = centerCropOffset(Hr, size); const left = centerCropOffset(Wr, size);
  const out = new Float32Array(3 * size * size);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(CLIP_MEAN[c]); const s = f(CLIP_STD[c]);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = f(resized[((top + y) * Wr + left + x) * 3 + c] / 255);
        out[(c * size + y) * size + x] = f(f(v - m) / s);
      }
    }
  }
  return out;
}
