// The pixel operations the FFHQ alignment is made of, ported from the libraries the official
// script calls so that the aligned crop matches it value for value, not just "looks the same":
//
//   resizeLanczos    Pillow's Image.resize(size, ANTIALIAS) on 8-bit RGB (Resample.c: separable
//                    Lanczos-3, support scaled by the reduction factor, coefficients in 22-bit
//                    fixed point, horizontal pass then vertical pass, each rounded to u8)
//   quadTransform    Pillow's Image.transform(size, QUAD, data, BILINEAR) (Geometry.c: a bilinear
//                    map of the output pixel centre to the source, bilinear sampling with edge
//                    clamping, black outside, truncation to u8)
//   gaussianFilter2d scipy.ndimage.gaussian_filter(img, [s, s, 0]) on float32 HxWx3 (mode 'reflect',
//                    truncate 4.0, symmetric-kernel summation order of NI_Correlate1D)
//   padReflect       numpy.pad(img, ..., 'reflect') (mirror without repeating the edge)
//   medianPerChannel numpy.median(img, axis=(0, 1)) on float32
//
// Coordinates: Pillow's continuous coordinates put pixel i's centre at i + 0.5; the rest of
// src/align uses pixel-centre coordinates (pixel i's centre at i, as dlib and the FFHQ landmarks).

import type { RgbImage } from '../io/image.ts';

export type { RgbImage };

/** Single-channel float image, row-major (y * width + x). */
export interface FloatImage {
  data: Float32Array;
  width: number;
  height: number;
}

export function assertRgb(img: RgbImage, what = 'image'): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new RangeError(`${what}: bad size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`${what}: ${img.data.length} bytes for ${img.width}x${img.height} RGB (expected ${img.width * img.height * 3})`);
  }
}

// ---------------------------------------------------------------- Pillow Resample.c (LANCZOS, 8 bpc)

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x: number): number {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

interface Coeffs {
  ksize: number;
  bounds: Int32Array; // [xmin, count] per output sample
  kk: Int32Array; // fixed-point coefficients, ksize per output sample
}

function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number): Coeffs {
  const scale = (in1 - in0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 3 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let ww = 0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      // normalize_coeffs_8bpc
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Pillow `img.resize((width, height), Image.ANTIALIAS)` (= LANCZOS) on 8-bit RGB, bit-exact. */
export function resizeLanczos(img: RgbImage, width: number, height: number): RgbImage {
  assertRgb(img);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`resizeLanczos: bad target size ${width}x${height}`);
  }
  const needH = width !== img.width;
  const needV = height !== img.height;
  const horiz = precomputeCoeffs(img.width, 0, img.width, width);
  const vert = precomputeCoeffs(img.height, 0, img.height, height);
  let src = img.data;
  let srcW = img.width;
  let rowOffset = 0; // first source row held in `src` for the vertical pass
  const half = 1 << (PRECISION_BITS - 1);
  if (needH) {
    const yFirst = vert.bounds[0];
    const yLast = vert.bounds[height * 2 - 2] + vert.bounds[height * 2 - 1];
    const rows = needV ? yLast - yFirst : img.height;
    const first = needV ? yFirst : 0;
    const tmp = new Uint8Array(width * rows * 3);
    const { ksize, bounds, kk } = horiz;
    for (let yy = 0; yy < rows; yy++) {
      const inRow = (yy + first) * img.width * 3;
      const outRow = yy * width * 3;
      for (let xx = 0; xx < width; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        const kb = xx * ksize;
        let s0 = half, s1 = half, s2 = half;
        let p = inRow + xmin * 3;
        for (let x = 0; x < xmax; x++, p += 3) {
          const kv = kk[kb + x];
          s0 += img.data[p] * kv;
          s1 += img.data[p + 1] * kv;
          s2 += img.data[p + 2] * kv;
        }
        const o = outRow + xx * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp;
    srcW = width;
    rowOffset = first;
  }
  if (!needV) return { data: needH ? src : new Uint8Array(src), width: srcW, height: img.height };
  const out = new Uint8Array(srcW * height * 3);
  const { ksize, bounds, kk } = vert;
  for (let yy = 0; yy < height; yy++) {
    const ymin = bounds[yy * 2] - rowOffset;
    const ymax = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    const outRow = yy * srcW * 3;
    for (let xx = 0; xx < srcW; xx++) {
      let s0 = half, s1 = half, s2 = half;
      let p = (ymin * srcW + xx) * 3;
      const stride = srcW * 3;
      for (let y = 0; y < ymax; y++, p += stride) {
        const kv = kk[kb + y];
        s0 += src[p] * kv;
        s1 += src[p + 1] * kv;
        s2 += src[p + 2] * kv;
      }
      const o = outRow + xx * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: srcW, height };
}

// ---------------------------------------------------------------- Pillow Geometry.c (QUAD + BILINEAR)

/**
 * Pillow `img.transform((size, size), Image.QUAD, data, Image.BILINEAR)`, bit-exact.
 * `data` = the source quad's corners NW, SW, SE, NE in Pillow's continuous coordinates
 * (pixel i spans [i, i+1]), flattened to 8 numbers, exactly what the FFHQ script passes
 * (`(quad + 0.5).flatten()`).
 */
export function quadTransform(img: RgbImage, width: number, height: number, data: ArrayLike<number>): RgbImage {
  assertRgb(img);
  if (data.length !== 8) throw new RangeError(`quadTransform: expected 8 numbers, got ${data.length}`);
  const [nwx, nwy, swx, swy, sex, sey, nex, ney] = Array.from(data);
  const As = 1 / width;
  const At = 1 / height;
  const a0 = nwx, a1 = (nex - nwx) * As, a2 = (swx - nwx) * At, a3 = (sex - swx - nex + nwx) * As * At;
  const a4 = nwy, a5 = (ney - nwy) * As, a6 = (swy - nwy) * At, a7 = (sey - swy - ney + nwy) * As * At;
  const W = img.width, H = img.height, src = img.data;
  const out = new Uint8Array(width * height * 3); // fill: black
  for (let y = 0; y < height; y++) {
    const yin = y + 0.5;
    for (let x = 0; x < width; x++) {
      const xin = x + 0.5;
      let sx = a0 + a1 * xin + a2 * yin + a3 * xin * yin;
      let sy = a4 + a5 * xin + a6 * yin + a7 * xin * yin;
      if (sx < 0 || sx >= W || sy < 0 || sy >= H) continue;
      sx -= 0.5;
      sy -= 0.5;
      const xi = Math.floor(sx);
      const yi = Math.floor(sy);
      const dx = sx - xi;
      const dy = sy - yi;
      const x0 = (xi < 0 ? 0 : xi < W ? xi : W - 1) * 3;
      const x1 = (xi + 1 < 0 ? 0 : xi + 1 < W ? xi + 1 : W - 1) * 3;
      const r0 = (yi < 0 ? 0 : yi < H ? yi : H - 1) * W * 3;
      const hasR1 = yi + 1 >= 0 && yi + 1 < H;
      const r1 = hasR1 ? (yi + 1) * W * 3 : r0;
      const o = (y * width + x) * 3;
      for (let b = 0; b < 3; b++) {
        const p = src[r0 + x0 + b];
        let v1 = p + (src[r0 + x1 + b] - p) * dx;
        let v2 = v1;
        if (hasR1) {
          const q = src[r1 + x0 + b];
          v2 = q + (src[r1 + x1 + b] - q) * dx;
        }
        v1 = v1 + (v2 - v1) * dy;
        out[o + b] = v1 | 0; // (UINT8) v: truncation, v is in [0, 255]
      }
    }
  }
  return { data: out, width, height };
}

// ---------------------------------------------------------------- numpy / scipy pieces on float32 HxWx3

/** numpy.pad(u8 image as float32, ((top, bottom), (left, right), (0, 0)), 'reflect'). */
export function padReflect(img: RgbImage, left: number, top: number, right: number, bottom: number): { data: Float32Array; width: number; height: number } {
  const W = img.width, H = img.height;
  const w = W + left + right, h = H + top + bottom;
  const mapX = new Int32Array(w);
  const mapY = new Int32Array(h);
  for (let x = 0; x < w; x++) mapX[x] = reflectIndex(x - left, W);
  for (let y = 0; y < h; y++) mapY[y] = reflectIndex(y - top, H);
  const out = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const srow = mapY[y] * W * 3;
    const orow = y * w * 3;
    for (let x = 0; x < w; x++) {
      const s = srow + mapX[x] * 3;
      const o = orow + x * 3;
      out[o] = img.data[s];
      out[o + 1] = img.data[s + 1];
      out[o + 2] = img.data[s + 2];
    }
  }
  return { data: out, width: w, height: h };
}

/** numpy 'reflect' padding index (d c b | a b c d | c b a), repeated for pads wider than the image. */
function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

/** scipy.ndimage 'reflect' boundary index (d c b a | a b c d | d c b a). */
function mirrorIndex(i: number, n: number): number {
  const period = 2 * n;
  let m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

/** numpy's pairwise summation of a contiguous float64 vector (what `phi_x.sum()` does). */
function pairwiseSum(a: Float64Array, start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** scipy.ndimage._gaussian_kernel1d(sigma, 0, radius) with radius = int(4 * sigma + 0.5). */
export function gaussianKernel(sigma: number): Float64Array {
  const radius = Math.trunc(4 * sigma + 0.5);
  const sigma2 = sigma * sigma;
  const phi = new Float64Array(2 * radius + 1);
  const c = -0.5 / sigma2;
  for (let i = 0; i < phi.length; i++) {
    const x = i - radius;
    phi[i] = Math.exp(c * (x * x));
  }
  const sum = pairwiseSum(phi, 0, phi.length);
  for (let i = 0; i < phi.length; i++) phi[i] /= sum;
  return phi;
}

/**
 * scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0]) on a float32 HxWx3 image: a 1-D pass
 * along y then along x, each computed in float64 (symmetric-kernel summation order of
 * NI_Correlate1D) and stored as float32.
 */
export function gaussianFilter2d(img: { data: Float32Array; width: number; height: number }, sigma: number): Float32Array {
  const { width: w, height: h } = img;
  if (sigma < 1e-15) return new Float32Array(img.data);
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const pass = (src: Float32Array, n: number, lines: number, at: (line: number, i: number) => number): Float32Array => {
    const out = new Float32Array(src.length);
    const buf = new Float64Array(n + 2 * r);
    for (let line = 0; line < lines; line++) {
      for (let c = 0; c < 3; c++) {
        for (let i = -r; i < n + r; i++) buf[i + r] = src[at(line, mirrorIndex(i, n)) + c];
        for (let i = 0; i < n; i++) {
          const m = i + r;
          let acc = buf[m] * k[r];
          for (let j = r; j >= 1; j--) acc += (buf[m - j] + buf[m + j]) * k[r - j];
          out[at(line, i) + c] = acc;
        }
      }
    }
    return out;
  };
  const alongY = pass(img.data, h, w, (x, y) => (y * w + x) * 3);
  return pass(alongY, w, h, (y, x) => (y * w + x) * 3);
}

/** numpy.median(img, axis=(0, 1)) of a float32 HxWx3 image (float32 result per channel). */
export function medianPerChannel(data: Float32Array): [number, number, number] {
  const n = data.length / 3;
  const ch = new Float32Array(n);
  const res: number[] = [];
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) ch[i] = data[i * 3 + c];
    ch.sort();
    res.push(n % 2 === 1 ? ch[(n - 1) / 2] : Math.fround(Math.fround(ch[n / 2 - 1] + ch[n / 2]) / 2));
  }
  return res as [number, number, number];
}

/** numpy.rint: round half to even. */
export function rint(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
