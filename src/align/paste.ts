// Paste an edited aligned crop back into the original photo: the inverse of the FFHQ warp,
// blended through a [0, 1] mask given in crop space.
//
// For each photo pixel whose centre falls inside the crop square, the crop point is found with
// the exact inverse map (photoToCrop), the edited crop is sampled bilinearly (edges clamped) and
// the mask bilinearly with zero outside the crop; then
//   out = photo * (1 - m) + edit * m, rounded half-up to u8.
// Where the warped mask is exactly 0 (outside the square, or where the mask and its neighbours
// are 0) the photo's own bytes are kept untouched. featherMask softens a hard mask *inwards*, so
// feathering never lets the edit leak outside the region the caller marked.

import { assertRgb, type FloatImage, type RgbImage } from './pixels.ts';
import { photoToCrop, type FfhqAlignment } from './ffhq.ts';

export interface PasteOptions {
  /**
   * When no mask is given: feather width of the default mask (the whole crop), as a fraction
   * of the crop side (default 0.05).
   */
  feather?: number;
}

/** A float mask of side `size` with value 1 (use featherMask to soften it). */
export function fullMask(size: number): FloatImage {
  return { data: new Float32Array(size * size).fill(1), width: size, height: size };
}

/**
 * Feathers a mask inwards by `radius` pixels: erode (square min filter of radius r), then two box
 * blurs of radius r/2. Values only fall, and the result is 0 wherever the input mask is 0.
 */
export function featherMask(mask: FloatImage, radius: number): FloatImage {
  const { width: w, height: h } = mask;
  const r = Math.max(0, Math.round(radius));
  if (r === 0) return { data: new Float32Array(mask.data), width: w, height: h };
  let a: Float32Array = new Float32Array(mask.data);
  // erosion, treating outside the mask as 0 (so the crop border is feathered too)
  a = filter1d(a, w, h, r, true, 'min');
  a = filter1d(a, w, h, r, false, 'min');
  const br = Math.max(1, Math.floor(r / 2));
  for (let pass = 0; pass < 2; pass++) {
    a = filter1d(a, w, h, br, true, 'mean');
    a = filter1d(a, w, h, br, false, 'mean');
  }
  // keep the guarantee exact despite float rounding: never above the input, 0 where it is 0
  for (let i = 0; i < a.length; i++) a[i] = mask.data[i] <= 0 ? 0 : Math.min(a[i], mask.data[i]);
  return { data: a, width: w, height: h };
}

function filter1d(src: Float32Array, w: number, h: number, r: number, alongX: boolean, op: 'min' | 'mean'): Float32Array {
  const out = new Float32Array(src.length);
  const n = alongX ? w : h, lines = alongX ? h : w;
  const at = alongX ? (line: number, i: number) => line * w + i : (line: number, i: number) => i * w + line;
  for (let line = 0; line < lines; line++) {
    for (let i = 0; i < n; i++) {
      let acc = op === 'min' ? Infinity : 0;
      for (let k = i - r; k <= i + r; k++) {
        const v = k < 0 || k >= n ? 0 : src[at(line, k)];
        acc = op === 'min' ? Math.min(acc, v) : acc + v;
      }
      out[at(line, i)] = op === 'min' ? acc : acc / (2 * r + 1);
    }
  }
  return out;
}

/**
 * Warps `edited` (an aligned crop of any square size, e.g. the generator's output) back into
 * `photo` through `mask` (crop space, any square size, values in [0, 1]; null: the whole crop
 * feathered by opts.feather). Pixels where the warped mask is 0 keep the photo's exact bytes.
 */
export function pasteBack(photo: RgbImage, edited: RgbImage, mask: FloatImage | null, alignment: FfhqAlignment, opts: PasteOptions = {}): RgbImage {
  assertRgb(photo, 'photo');
  assertRgb(edited, 'edited crop');
  if (edited.width !== edited.height) throw new RangeError(`edited crop must be square, got ${edited.width}x${edited.height}`);
  if (photo.width !== alignment.photoWidth || photo.height !== alignment.photoHeight) {
    throw new RangeError(`photo is ${photo.width}x${photo.height} but the alignment was made for ${alignment.photoWidth}x${alignment.photoHeight}`);
  }
  const m = mask ?? featherMask(fullMask(edited.width), (opts.feather ?? 0.05) * edited.width);
  if (m.width !== m.height || m.data.length !== m.width * m.height) throw new RangeError(`mask must be square, got ${m.width}x${m.height} with ${m.data.length} values`);
  const S = edited.width, M = m.width;
  const out = new Uint8Array(photo.data);
  // photo bounding box of the crop square
  const corners = [[-0.5, -0.5], [S - 0.5, -0.5], [-0.5, S - 0.5], [S - 0.5, S - 0.5]].map(([i, j]) => {
    const u = (i + 0.5) / S, v = (j + 0.5) / S;
    return [alignment.origin[0] + alignment.ex[0] * u + alignment.ey[0] * v, alignment.origin[1] + alignment.ex[1] * u + alignment.ey[1] * v];
  });
  const x0 = Math.max(0, Math.floor(Math.min(...corners.map((c) => c[0]))));
  const x1 = Math.min(photo.width - 1, Math.ceil(Math.max(...corners.map((c) => c[0]))));
  const y0 = Math.max(0, Math.floor(Math.min(...corners.map((c) => c[1]))));
  const y1 = Math.min(photo.height - 1, Math.ceil(Math.max(...corners.map((c) => c[1]))));
  const ed = edited.data, md = m.data;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const q = photoToCrop(alignment, [x, y], S);
      // mask at its own resolution: same normalised position
      const mq0 = (q[0] + 0.5) * M / S - 0.5, mq1 = (q[1] + 0.5) * M / S - 0.5;
      const a = sampleMask(md, M, mq0, mq1);
      if (!(a > 0)) continue;
      const alpha = a > 1 ? 1 : a;
      const i = (y * photo.width + x) * 3;
      const cx = Math.min(Math.max(q[0], 0), S - 1), cy = Math.min(Math.max(q[1], 0), S - 1);
      const xi = Math.min(Math.floor(cx), S - 2 < 0 ? 0 : S - 2), yi = Math.min(Math.floor(cy), S - 2 < 0 ? 0 : S - 2);
      const dx = cx - xi, dy = cy - yi;
      const xj = Math.min(xi + 1, S - 1), yj = Math.min(yi + 1, S - 1);
      for (let c = 0; c < 3; c++) {
        const p00 = ed[(yi * S + xi) * 3 + c], p01 = ed[(yi * S + xj) * 3 + c];
        const p10 = ed[(yj * S + xi) * 3 + c], p11 = ed[(yj * S + xj) * 3 + c];
        const e = (p00 * (1 - dx) + p01 * dx) * (1 - dy) + (p10 * (1 - dx) + p11 * dx) * dy;
        const v = Math.floor(photo.data[i + c] * (1 - alpha) + e * alpha + 0.5);
        out[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return { data: out, width: photo.width, height: photo.height };
}

/** Bilinear sample of a square float mask, zero outside [-0.5, M - 0.5] (pixel-centre coordinates). */
function sampleMask(md: Float32Array, M: number, x: number, y: number): number {
  if (x <= -1 || y <= -1 || x >= M || y >= M) return 0;
  const xi = Math.floor(x), yi = Math.floor(y);
  const dx = x - xi, dy = y - yi;
  const g = (i: number, j: number) => (i < 0 || j < 0 || i >= M || j >= M ? 0 : md[j * M + i]);
  return (g(xi, yi) * (1 - dx) + g(xi + 1, yi) * dx) * (1 - dy) + (g(xi, yi + 1) * (1 - dx) + g(xi + 1, yi + 1) * dx) * dy;
}
