// Bytes <-> float tensors, with no codec: interleaved 8-bit RGB to NCHW float32 and back, in
// torchvision's float32 order (ToTensor then Normalize(0.5, 0.5); save_image's rounding). Kept
// apart from src/io/image.ts (sharp) so the web page's browser mode bundles the very same code.
import { ImageError } from './errors.ts';
import { TensorData } from './tensor.ts';

/** [low, high]: the float values that u8 0 and 255 map to. */
export type PixelRange = readonly [number, number];

export const DEFAULT_RANGE: PixelRange = [-1, 1];

export interface RgbImage {
  /** Interleaved RGB bytes, row-major: (y * width + x) * 3 + c. */
  data: Uint8Array;
  width: number;
  height: number;
}

/** Interleaved 8-bit RGB -> [1, 3, H, W] float32 in `range` (bit-exact with ToTensor + Normalize(0.5, 0.5) for [-1, 1]). */
export function rgbToTensor(img: RgbImage, range: PixelRange = DEFAULT_RANGE): TensorData<'float32'> {
  const { data, width, height } = img;
  const plane = width * height;
  if (data.length !== plane * 3) throw new ImageError(`RGB buffer of ${data.length} bytes does not match ${width}x${height}x3`);
  // value of each byte, computed once: the same float32 operations as torchvision
  const lut = new Float32Array(256);
  const [lo, hi] = range;
  for (let u = 0; u < 256; u++) {
    const x = Math.fround(u / 255);
    if (lo === -1 && hi === 1) lut[u] = Math.fround(Math.fround(x - 0.5) / 0.5);
    else if (lo === 0 && hi === 1) lut[u] = x;
    else lut[u] = Math.fround(lo + x * (hi - lo));
  }
  const out = new Float32Array(plane * 3);
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[i] = lut[data[p]!]!;
    out[plane + i] = lut[data[p + 1]!]!;
    out[2 * plane + i] = lut[data[p + 2]!]!;
  }
  return new TensorData('float32', [1, 3, height, width], out);
}

/** One image of an NCHW (or CHW) float tensor -> interleaved 8-bit RGB, rounding like save_image. */
export function tensorToRgb(t: TensorData, opts: { range?: PixelRange; index?: number } = {}): RgbImage {
  if (t.dtype !== 'float32') throw new ImageError(`image tensor must be float32, got ${t.dtype}`);
  const shape = t.shape.length === 3 ? [1, ...t.shape] : t.shape;
  if (shape.length !== 4 || shape[1] !== 3) throw new ImageError(`image tensor must be [N, 3, H, W] or [3, H, W], got [${t.shape.join(', ')}]`);
  const [n, , height, width] = shape as [number, number, number, number];
  const index = opts.index ?? 0;
  if (!(index >= 0 && index < n)) throw new ImageError(`image index ${index} out of range for a batch of ${n}`);
  const [lo, hi] = opts.range ?? DEFAULT_RANGE;
  const plane = width * height;
  const src = (t.data as Float32Array).subarray(index * 3 * plane, (index + 1) * 3 * plane);
  const scale = 255 / (hi - lo);
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.floor((src[c * plane + i]! - lo) * scale + 0.5);
      out[i * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v; // NaN -> 0 via the typed array
    }
  }
  return { data: out, width, height };
}
