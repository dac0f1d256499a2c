// Before/after sheets and PNG encoding of RGB images.
//
// gridImage(photo, result): row 1 = the photo | the edited photo (both at the photo's size);
// row 2 = aligned crop | e4e inversion | edited crop | blend mask, as four equal squares across
// the same width.
import sharp, { type OverlayOptions } from 'sharp';
import type { RgbImage } from '../io/image.ts';
import type { FloatImage } from '../align/pixels.ts';

/** PNG bytes of an RGB image. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
}

/** A [0, 1] mask as a grey RGB image. */
export function maskToRgb(m: FloatImage): RgbImage {
  const out = new Uint8Array(m.width * m.height * 3);
  for (let i = 0; i < m.width * m.height; i++) {
    const v = Math.max(0, Math.min(255, Math.round(m.data[i] * 255)));
    out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v;
  }
  return { data: out, width: m.width, height: m.height };
}

async function resized(img: RgbImage, w: number, h: number): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(w, h, { fit: 'fill', kernel: img.width < w ? 'nearest' : 'lanczos3' }).png().toBuffer();
}

export interface GridParts { image: RgbImage; crop?: RgbImage; inversion?: RgbImage; editedCrop?: RgbImage; mask?: FloatImage }

/** The before/after sheet as RGB. */
export async function gridImage(photo: RgbImage, r: GridParts): Promise<RgbImage> {
  const W = photo.width, H = photo.height;
  const tiles = [r.crop, r.inversion, r.editedCrop, r.mask ? maskToRgb(r.mask) : undefined].filter((x): x is RgbImage => !!x);
  const tile = tiles.length ? Math.floor((2 * W) / tiles.length) : 0;
  const height = H + (tiles.length ? tile : 0);
  const layers: OverlayOptions[] = [
    { input: await resized(photo, W, H), left: 0, top: 0 },
    { input: await resized(r.image, W, H), left: W, top: 0 },
  ];
  for (let i = 0; i < tiles.length; i++) layers.push({ input: await resized(tiles[i], tile, tile), left: i * tile, top: H });
  const png = await sharp({ create: { width: 2 * W, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(layers).png().toBuffer();
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
