// The blend mask of a photo edit, in aligned-crop space: where the edit may replace the photo.
//
//   region  = head classes (face parts, hair, hat) in the source crop OR in the edited image
//             (a longer hairstyle adds hair where the photo had background, a shorter one
//             uncovers background that must come from the edit too)
//   grown   = region dilated by `grow` pixels (covers the parser's ragged edges)
//   mask    = featherMask(grown, feather): eroded then blurred, values fall only, and it is 0
//             wherever `grown` is 0 — so photo pixels outside `grown` keep their exact bytes.
import { featherMask, fullMask } from '../align/paste.ts';
import type { FloatImage } from '../align/pixels.ts';
import { photoToCrop, type FfhqAlignment } from '../align/ffhq.ts';

/** 1 where any of the label maps ([P, P] each) holds one of `classes`, nearest-upsampled to size x size. */
export function regionMask(labelMaps: readonly Int32Array[], P: number, classes: readonly number[], size: number): FloatImage {
  const set = new Uint8Array(256);
  for (const c of classes) set[c] = 1;
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const sy = Math.min(P - 1, Math.floor(((y + 0.5) * P) / size));
    for (let x = 0; x < size; x++) {
      const sx = Math.min(P - 1, Math.floor(((x + 0.5) * P) / size));
      for (const m of labelMaps) if (set[m[sy * P + sx] & 255]) { out[y * size + x] = 1; break; }
    }
  }
  return { data: out, width: size, height: size };
}

/** Square max filter of radius r (separable). */
export function dilateMask(m: FloatImage, r: number): FloatImage {
  const { width: w, height: h } = m;
  if (r <= 0) return { data: new Float32Array(m.data), width: w, height: h };
  const pass = (src: Float32Array, alongX: boolean) => {
    const out = new Float32Array(src.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0;
        for (let k = -r; k <= r; k++) {
          const xx = alongX ? x + k : x, yy = alongX ? y : y + k;
          if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
          const s = src[yy * w + xx];
          if (s > v) v = s;
        }
        out[y * w + x] = v;
      }
    }
    return out;
  };
  return { data: pass(pass(m.data, true), false), width: w, height: h };
}

export interface BlendMaskOptions {
  /** dilation in pixels of the crop (default 2% of its side, at least 1) */
  grow?: number;
  /** feather radius in pixels (default 2% of the side, at least 1) */
  feather?: number;
}

/** The feathered blend mask from the parser's label maps of the source crop and of the edit. */
export function blendMask(labelMaps: readonly Int32Array[], P: number, classes: readonly number[], size: number, o: BlendMaskOptions = {}): FloatImage {
  const grow = o.grow ?? Math.max(1, Math.round(size * 0.02));
  const feather = o.feather ?? Math.max(1, Math.round(size * 0.02));
  return featherMask(dilateMask(regionMask(labelMaps, P, classes, size), grow), feather);
}

/** Without a parser: the whole crop, feathered inwards by `feather` pixels (default 5% of the side). */
export function cropBlendMask(size: number, feather = 0.05 * size): FloatImage {
  return featherMask(fullMask(size), Math.max(1, Math.round(feather)));
}

/**
 * The crop-space mask as pasteBack sees it at every photo pixel (bilinear, zero outside the
 * crop), [height * width]: 0 exactly where the photo keeps its own bytes.
 */
export function maskInPhoto(mask: FloatImage, alignment: FfhqAlignment, cropSize: number): Float32Array {
  const W = alignment.photoWidth, H = alignment.photoHeight, M = mask.width;
  const out = new Float32Array(W * H);
  const md = mask.data;
  const g = (i: number, j: number) => (i < 0 || j < 0 || i >= M || j >= M ? 0 : md[j * M + i]);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const q = photoToCrop(alignment, [x, y], cropSize);
      const mx = (q[0] + 0.5) * M / cropSize - 0.5, my = (q[1] + 0.5) * M / cropSize - 0.5;
      if (mx <= -1 || my <= -1 || mx >= M || my >= M) continue;
      const xi = Math.floor(mx), yi = Math.floor(my), dx = mx - xi, dy = my - yi;
      out[y * W + x] = (g(xi, yi) * (1 - dx) + g(xi + 1, yi) * dx) * (1 - dy) + (g(xi, yi + 1) * (1 - dx) + g(xi + 1, yi + 1) * dx) * dy;
    }
  }
  return out;
}
