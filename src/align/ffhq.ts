// FFHQ face alignment: the crop every StyleGAN2 FFHQ generator (and e4e, pSp, StyleCLIP,
// HairCLIP, FFCLIP on real photos) expects, as NVlabs/ffhq-dataset `recreate_aligned_images`
// and e4e/pSp `utils/alignment.py` `align_face` compute it from 68 dlib-style landmarks:
//
//   eye_left = mean(lm[36:42]), eye_right = mean(lm[42:48]), mouth = lm[48], lm[54]
//   x = eye_to_eye - rot90(eye_to_mouth), normalised, times max(|eye_to_eye|*2, |eye_to_mouth|*1.8)
//   y = rot90(x); c = eye_avg + 0.1 * eye_to_mouth; quad = [c-x-y, c-x+y, c+x+y, c+x-y]
//   shrink (integer Lanczos downscale when the quad is > 4x the output) -> crop (quad bbox + 10%
//   border) -> pad (reflect, blurred towards the border and faded to the median colour)
//   -> Pillow QUAD/BILINEAR warp to transform_size -> Lanczos resize to output_size.
//
// Every step is reproduced with the same arithmetic (see pixels.ts), so with the same landmarks
// the crop equals the official one (test/fixtures/align holds goldens made with the official
// steps in Pillow 9.4 / numpy 2.4 / scipy 1.17). Known, tiny sources of difference: Math.exp vs
// numpy's exp (1 ulp in the blur kernel) and numpy 1.x's float32 (instead of float64) border mask;
// either can move a padded-border pixel by 1 in rare cases.
//
// Geometry. Coordinates are pixel-centre coordinates (pixel (i, j)'s centre is the point (i, j)),
// as dlib's landmarks and the official script use. The whole chain is affine (the quad is a
// square, so Pillow's bilinear QUAD map has no cross term; shrink, crop, pad and the final resize
// are scalings and integer shifts), so a crop pixel maps to the photo by
//   photo = origin + ex * (i + 0.5) / S + ey * (j + 0.5) / S          (crop of side S)
// which `cropToPhoto` / `photoToCrop` evaluate and invert exactly. With shrink the official chain
// is offset from the quad by about (shrink - 1) / 2 photo pixels (it divides pixel-centre
// coordinates by the factor); the map here is the one the pixels actually went through.

import { gaussianFilter2d, medianPerChannel, padReflect, quadTransform, resizeLanczos, rint, assertRgb, type RgbImage } from './pixels.ts';

export type Point = readonly [number, number];
/** 68 points in the iBUG 300-W / dlib order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67. */
export type Landmarks68 = ReadonlyArray<Point>;

/** The FFHQ oriented square: corners NW, SW, SE, NE (pixel-centre coordinates of the photo). */
export interface FfhqQuad {
  quad: [Point, Point, Point, Point];
  /** Side length of the square (2 |x|). */
  qsize: number;
  center: Point;
  /** Half-side vectors: x points to the face's right side of the image (photo left-to-right), y downwards. */
  x: Point;
  y: Point;
}

export interface AlignOptions {
  /** Side of the aligned crop; default 1024 (the FFHQ generators). e4e/pSp use 256. */
  outputSize?: number;
  /** Side of the intermediate warp; default 4 * outputSize (FFHQ: 4096 for 1024). e4e/pSp use transformSize = outputSize = 256. */
  transformSize?: number;
  /** Reflect-pad and blur the border when the quad leaves the photo (official default true). */
  enablePadding?: boolean;
}

/** Everything needed to map between the photo and the aligned crop, and to paste an edit back. */
export interface FfhqAlignment {
  photoWidth: number;
  photoHeight: number;
  outputSize: number;
  transformSize: number;
  landmarks: Landmarks68;
  /** The official quad, as computed from the landmarks (before shrink/crop/pad). */
  quad: FfhqQuad;
  /** Photo point (pixel-centre coordinates) of the crop's top-left corner (edge, not pixel centre). */
  origin: Point;
  /** Photo vector spanned by the crop's full width (left edge to right edge). */
  ex: Point;
  /** Photo vector spanned by the crop's full height (top edge to bottom edge). */
  ey: Point;
  /** What the official pipeline did, for diagnostics. */
  steps: {
    shrink: number;
    /** Photo size after shrink ([width, height]; the photo size when no shrink). */
    shrunkSize: [number, number];
    border: number;
    /** (left, top, right, bottom) crop box in the shrunk photo, or null when not cropped. */
    crop: [number, number, number, number] | null;
    /** (left, top, right, bottom) padding, or null when not padded. */
    pad: [number, number, number, number] | null;
  };
}

function add(a: Point, b: Point): Point { return [a[0] + b[0], a[1] + b[1]]; }
function sub(a: Point, b: Point): Point { return [a[0] - b[0], a[1] - b[1]]; }
function scale(a: Point, s: number): Point { return [a[0] * s, a[1] * s]; }
function mean(pts: Landmarks68, from: number, to: number): Point {
  // np.mean over axis 0: pairwise sum of the column (< 8 values: sequential), divided by n
  let sx = 0, sy = 0;
  for (let i = from; i < to; i++) { sx += pts[i][0]; sy += pts[i][1]; }
  return [sx / (to - from), sy / (to - from)];
}

function checkLandmarks(lm: Landmarks68): void {
  if (lm.length !== 68) throw new RangeError(`FFHQ alignment needs 68 landmarks, got ${lm.length}`);
  for (const p of lm) {
    if (p.length !== 2 || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) throw new RangeError(`bad landmark ${JSON.stringify(p)}`);
  }
}

/** The FFHQ oriented crop square from 68 landmarks (official "Choose oriented crop rectangle"). */
export function ffhqQuad(lm: Landmarks68): FfhqQuad {
  checkLandmarks(lm);
  const eyeLeft = mean(lm, 36, 42);
  const eyeRight = mean(lm, 42, 48);
  const eyeAvg = scale(add(eyeLeft, eyeRight), 0.5);
  const eyeToEye = sub(eyeRight, eyeLeft);
  const mouthLeft = lm[48];
  const mouthRight = lm[54];
  const mouthAvg = scale(add(mouthLeft, mouthRight), 0.5);
  const eyeToMouth = sub(mouthAvg, eyeAvg);
  // x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
  let x: Point = [eyeToEye[0] + eyeToMouth[1], eyeToEye[1] - eyeToMouth[0]];
  x = scale(x, 1 / Math.hypot(x[0], x[1]));
  x = scale(x, Math.max(Math.hypot(eyeToEye[0], eyeToEye[1]) * 2.0, Math.hypot(eyeToMouth[0], eyeToMouth[1]) * 1.8));
  const y: Point = [-x[1], x[0]];
  const c = add(eyeAvg, scale(eyeToMouth, 0.1));
  const quad: [Point, Point, Point, Point] = [sub(sub(c, x), y), add(sub(c, x), y), add(add(c, x), y), sub(add(c, x), y)];
  return { quad, qsize: Math.hypot(x[0], x[1]) * 2, center: c, x, y };
}

interface Plan {
  alignment: FfhqAlignment;
  /** The quad in the working image (after shrink, crop and pad), pixel-centre coordinates. */
  workQuad: Point[];
  qsize: number;
}

function resolveSizes(opts: AlignOptions): { outputSize: number; transformSize: number; enablePadding: boolean } {
  const outputSize = opts.outputSize ?? 1024;
  const transformSize = opts.transformSize ?? outputSize * 4;
  if (!Number.isInteger(outputSize) || outputSize < 1) throw new RangeError(`outputSize must be a positive integer, got ${outputSize}`);
  if (!Number.isInteger(transformSize) || transformSize < outputSize) {
    throw new RangeError(`transformSize must be an integer >= outputSize (${outputSize}), got ${transformSize}`);
  }
  return { outputSize, transformSize, enablePadding: opts.enablePadding ?? true };
}

/** The geometry of the official pipeline for a photo of this size (no pixels touched). */
export function planFfhqAlignment(landmarks: Landmarks68, photoWidth: number, photoHeight: number, opts: AlignOptions = {}): FfhqAlignment {
  return plan(landmarks, photoWidth, photoHeight, opts).alignment;
}

function plan(landmarks: Landmarks68, photoWidth: number, photoHeight: number, opts: AlignOptions): Plan {
  const { outputSize, transformSize, enablePadding } = resolveSizes(opts);
  const fq = ffhqQuad(landmarks);
  let quad: Point[] = fq.quad.map((p) => [p[0], p[1]] as Point);
  let qsize = fq.qsize;
  let W = photoWidth, H = photoHeight;

  // Shrink.
  const shrink = Math.floor(qsize / outputSize * 0.5);
  let sx = 1, sy = 1; // photo continuous = shrunk continuous * s
  if (shrink > 1) {
    const rw = rint(photoWidth / shrink), rh = rint(photoHeight / shrink);
    sx = photoWidth / rw;
    sy = photoHeight / rh;
    W = rw; H = rh;
    quad = quad.map((p) => scale(p, 1 / shrink));
    qsize /= shrink;
  }

  // Crop.
  const border = Math.max(rint(qsize * 0.1), 3);
  const bbox = (): [number, number, number, number] => [
    Math.floor(Math.min(...quad.map((p) => p[0]))), Math.floor(Math.min(...quad.map((p) => p[1]))),
    Math.ceil(Math.max(...quad.map((p) => p[0]))), Math.ceil(Math.max(...quad.map((p) => p[1]))),
  ];
  let b = bbox();
  let crop: [number, number, number, number] | null = [Math.max(b[0] - border, 0), Math.max(b[1] - border, 0), Math.min(b[2] + border, W), Math.min(b[3] + border, H)];
  let offX = 0, offY = 0; // shrunk = work + off
  let workW = W, workH = H;
  if (crop[2] - crop[0] < W || crop[3] - crop[1] < H) {
    quad = quad.map((p) => [p[0] - crop![0], p[1] - crop![1]] as Point);
    offX += crop[0]; offY += crop[1];
    workW = crop[2] - crop[0]; workH = crop[3] - crop[1];
  } else {
    crop = null;
  }

  // Pad.
  b = bbox();
  let pad: [number, number, number, number] | null = [Math.max(-b[0] + border, 0), Math.max(-b[1] + border, 0), Math.max(b[2] - workW + border, 0), Math.max(b[3] - workH + border, 0)];
  if (enablePadding && Math.max(...pad) > border - 4) {
    const m = rint(qsize * 0.3);
    pad = pad.map((v) => Math.max(v, m)) as [number, number, number, number];
    quad = quad.map((p) => [p[0] + pad![0], p[1] + pad![1]] as Point);
    offX -= pad[0]; offY -= pad[1];
  } else {
    pad = null;
  }

  // Transform: crop point (u, v) in [0,1]^2 samples the work image at
  //   quad[0] + (quad[3] - quad[0]) u + (quad[1] - quad[0]) v        (pixel-centre coordinates)
  // (Pillow's +0.5 on the quad and its -0.5 in the bilinear filter cancel; the u*v term is 0 for a
  // parallelogram). Work -> shrunk: + off; shrunk -> photo: (p + 0.5) * s - 0.5.
  const toPhoto = (p: Point): Point => [(p[0] + offX + 0.5) * sx - 0.5, (p[1] + offY + 0.5) * sy - 0.5];
  const o = toPhoto(quad[0]);
  const ne = toPhoto(quad[3]);
  const sw = toPhoto(quad[1]);
  const alignment: FfhqAlignment = {
    photoWidth, photoHeight, outputSize, transformSize,
    landmarks: landmarks.map((p) => [p[0], p[1]] as Point),
    quad: fq,
    origin: o,
    ex: sub(ne, o),
    ey: sub(sw, o),
    steps: { shrink: shrink > 1 ? shrink : 1, shrunkSize: [W, H], border, crop, pad },
  };
  return { alignment, workQuad: quad, qsize };
}

/**
 * Aligns a photo the FFHQ way from its 68 landmarks (pixel-centre coordinates).
 * Returns the outputSize x outputSize RGB crop and the alignment (for the inverse map and paste-back).
 */
export function alignFfhq(photo: RgbImage, landmarks: Landmarks68, opts: AlignOptions = {}): { image: RgbImage; alignment: FfhqAlignment } {
  assertRgb(photo, 'photo');
  const { alignment, workQuad, qsize } = plan(landmarks, photo.width, photo.height, opts);
  const { shrink, shrunkSize, crop, pad } = alignment.steps;
  let img: RgbImage = photo;
  if (shrink > 1) img = resizeLanczos(img, shrunkSize[0], shrunkSize[1]);
  if (crop) img = cropRgb(img, crop);
  if (pad) img = padAndBlur(img, pad, qsize);
  const data = workQuad.flatMap((p) => [p[0] + 0.5, p[1] + 0.5]);
  const T = alignment.transformSize, S = alignment.outputSize;
  img = quadTransform(img, T, T, data);
  if (S < T) img = resizeLanczos(img, S, S);
  return { image: img, alignment };
}

function cropRgb(img: RgbImage, box: [number, number, number, number]): RgbImage {
  const [l, t, r, b] = box;
  const w = r - l, h = b - t;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const s = ((t + y) * img.width + l) * 3;
    out.set(img.data.subarray(s, s + w * 3), y * w * 3);
  }
  return { data: out, width: w, height: h };
}

/** The official "Pad." step: reflect pad, blur towards the border, fade to the median colour, round to u8. */
function padAndBlur(img: RgbImage, pad: [number, number, number, number], qsize: number): RgbImage {
  const [p0, p1, p2, p3] = pad;
  const padded = padReflect(img, p0, p1, p2, p3);
  const { width: w, height: h } = padded;
  const f = padded.data;
  // mask = max(1 - min(x / pad0, (w-1-x) / pad2), 1 - min(y / pad1, (h-1-y) / pad3)) (float64, numpy >= 2)
  const mx = new Float64Array(w);
  const my = new Float64Array(h);
  for (let x = 0; x < w; x++) mx[x] = 1 - Math.min(Math.fround(x) / p0, Math.fround(w - 1 - x) / p2);
  for (let y = 0; y < h; y++) my[y] = 1 - Math.min(Math.fround(y) / p1, Math.fround(h - 1 - y) / p3);
  const blurred = gaussianFilter2d(padded, qsize * 0.02);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const mask = Math.max(mx[x], my[y]);
      const k = Math.min(Math.max(mask * 3.0 + 1.0, 0), 1);
      const i = (y * w + x) * 3;
      for (let c = 0; c < 3; c++) f[i + c] = Math.fround(f[i + c] + Math.fround(blurred[i + c] - f[i + c]) * k);
    }
  }
  const med = medianPerChannel(f);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const mask = Math.max(mx[x], my[y]);
      const k = Math.min(Math.max(mask, 0), 1);
      const i = (y * w + x) * 3;
      for (let c = 0; c < 3; c++) {
        const v = Math.fround(f[i + c] + Math.fround(med[c] - f[i + c]) * k);
        const r = rint(v);
        out[i + c] = r < 0 ? 0 : r > 255 ? 255 : r;
      }
    }
  }
  return { data: out, width: w, height: h };
}

// ---------------------------------------------------------------- the exact map and its inverse

/**
 * Crop pixel-centre coordinates -> photo pixel-centre coordinates. `cropSize` is the side of the
 * crop the point refers to (default alignment.outputSize; an edit at another resolution maps too).
 */
export function cropToPhoto(al: FfhqAlignment, p: Point, cropSize = al.outputSize): Point {
  const u = (p[0] + 0.5) / cropSize, v = (p[1] + 0.5) / cropSize;
  return [al.origin[0] + al.ex[0] * u + al.ey[0] * v, al.origin[1] + al.ex[1] * u + al.ey[1] * v];
}

/** Photo pixel-centre coordinates -> crop pixel-centre coordinates (exact inverse of cropToPhoto). */
export function photoToCrop(al: FfhqAlignment, p: Point, cropSize = al.outputSize): Point {
  const [a, c] = al.ex, [b, d] = al.ey;
  const det = a * d - b * c;
  const dx = p[0] - al.origin[0], dy = p[1] - al.origin[1];
  const u = (d * dx - b * dy) / det;
  const v = (-c * dx + a * dy) / det;
  return [u * cropSize - 0.5, v * cropSize - 0.5];
}

/**
 * The crop -> photo map as a 2x3 matrix [[a, b, tx], [c, d, ty]] for a crop of side `cropSize`
 * (photo = M * [i, j, 1]), e.g. for handing to another warper.
 */
export function cropToPhotoMatrix(al: FfhqAlignment, cropSize = al.outputSize): [[number, number, number], [number, number, number]] {
  const s = 1 / cropSize;
  const [ox, oy] = cropToPhoto(al, [0, 0], cropSize);
  return [[al.ex[0] * s, al.ey[0] * s, ox], [al.ex[1] * s, al.ey[1] * s, oy]];
}
