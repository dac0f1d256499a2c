// Images in and out, through sharp (libvips): PNG, JPEG, WebP (and whatever else libvips reads).
//
// Tensors are NCHW float32 RGB. The default range [-1, 1] is what the PyTorch code feeds its
// networks: torchvision's ToTensor (u8 / 255) then Normalize(0.5, 0.5), computed here in float32
// in the same order so the values are bit-identical. Alpha is dropped (like PIL's
// convert('RGB')), greyscale becomes three equal channels, EXIF orientation is ignored unless
// asked for (PIL ignores it too). Encoding maps back with torchvision's save_image rounding:
// floor(x * 255 + 0.5), clamped.

import { extname } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { ImageError } from './errors.ts';
import { TensorData } from './tensor.ts';
import { rgbToTensor, tensorToRgb, type PixelRange, type RgbImage } from './pixels.ts';

export { rgbToTensor, tensorToRgb };
export type { PixelRange, RgbImage };

export type ResizeKernel = 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3';
export type ResizeFit = 'fill' | 'cover' | 'contain' | 'inside' | 'outside';
export type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface ResizeOptions {
  /** How the aspect ratio is handled (sharp's `fit`); default 'fill' (stretch to exactly width x height). */
  fit?: ResizeFit;
  /** Interpolation; default 'lanczos3' (sharp's default, close to PIL's LANCZOS/ANTIALIAS). */
  kernel?: ResizeKernel;
}

export interface DecodeOptions extends ResizeOptions {
  /** Value range of the result; default [-1, 1]. */
  range?: PixelRange;
  /** Resize while decoding: a side length (square) or [width, height]. */
  size?: number | readonly [number, number];
  /** Apply the EXIF orientation (default false, as PIL). */
  autoOrient?: boolean;
}

export interface EncodeOptions {
  /** Value range of the tensor; default [-1, 1]. */
  range?: PixelRange;
  /** JPEG/WebP quality 1-100 (default 95). */
  quality?: number;
  /** Which image of a batch (default 0). */
  index?: number;
}

function describeSource(source: string | Uint8Array): string {
  return typeof source === 'string' ? `'${source}'` : `image bytes (${source.length} bytes)`;
}

/** Decodes an image to 8-bit RGB (alpha dropped), optionally resized. */
export async function decodeImageRgb(source: string | Uint8Array, opts: Omit<DecodeOptions, 'range'> = {}): Promise<RgbImage> {
  // read files ourselves: a missing file is an fs error (ENOENT), not a bad image
  const input = typeof source === 'string' ? await readFile(source) : source;
  try {
    // sharp's default failOn ('warning') is the strict setting its docs advise for untrusted input
    let img = sharp(input, { autoOrient: opts.autoOrient ?? false });
    if (opts.size !== undefined) {
      const [width, height] = typeof opts.size === 'number' ? [opts.size, opts.size] : opts.size;
      img = img.resize(width, height, { fit: opts.fit ?? 'fill', kernel: opts.kernel ?? 'lanczos3' });
    }
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new ImageError(`${describeSource(source)}: decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${describeSource(source)} is not a readable image: ${(e as Error).message}`, { cause: e });
  }
}

/** Decodes an image file or bytes to a [1, 3, H, W] float32 tensor in `range` (default [-1, 1]). */
export async function decodeImage(source: string | Uint8Array, opts: DecodeOptions = {}): Promise<TensorData<'float32'>> {
  return rgbToTensor(await decodeImageRgb(source, opts), opts.range);
}

/** Concatenates [1, 3, H, W] (or [n, 3, H, W]) tensors of equal size into one batch. */
export function stackImages(images: readonly TensorData[]): TensorData<'float32'> {
  if (images.length === 0) throw new ImageError('no images to stack');
  const [, c, h, w] = images[0]!.shape;
  let n = 0;
  for (const im of images) {
    if (im.dtype !== 'float32' || im.shape.length !== 4 || im.shape[1] !== c || im.shape[2] !== h || im.shape[3] !== w) {
      throw new ImageError(`cannot stack ${im.toString()} with images of shape [*, ${c}, ${h}, ${w}]`);
    }
    n += im.shape[0]!;
  }
  const out = new Float32Array(n * c! * h! * w!);
  let p = 0;
  for (const im of images) {
    out.set(im.data as Float32Array, p);
    p += im.numel;
  }
  return new TensorData('float32', [n, c!, h!, w!], out);
}

function formatOf(path: string): ImageFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  if (ext === '.webp') return 'webp';
  throw new ImageError(`cannot tell the image format from '${path}' (use .png, .jpg, .jpeg or .webp)`);
}

async function encodeRgb(img: RgbImage, format: ImageFormat, quality = 95): Promise<Buffer> {
  const s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
  if (format === 'png') return s.png().toBuffer();
  if (format === 'jpeg') return s.jpeg({ quality }).toBuffer();
  return s.webp({ quality }).toBuffer();
}

/** Encodes one image of a float tensor as PNG, JPEG or WebP bytes. */
export async function encodeImage(t: TensorData, format: ImageFormat, opts: EncodeOptions = {}): Promise<Buffer> {
  return encodeRgb(tensorToRgb(t, opts), format, opts.quality);
}

/** Writes one image of a float tensor; the format comes from the extension (.png/.jpg/.jpeg/.webp). */
export async function writeImage(path: string, t: TensorData, opts: EncodeOptions = {}): Promise<void> {
  await writeFile(path, await encodeImage(t, formatOf(path), opts));
}

/** Resizes an image file or bytes and re-encodes it (as `opts.format`, default PNG). */
export async function resizeImage(
  source: string | Uint8Array, width: number, height: number, opts: ResizeOptions & { format?: ImageFormat; quality?: number } = {},
): Promise<Buffer> {
  const rgb = await decodeImageRgb(source, { size: [width, height], fit: opts.fit, kernel: opts.kernel });
  return encodeRgb(rgb, opts.format ?? 'png', opts.quality);
}

export { formatOf as imageFormatFromPath };
