// Face detection + 68 landmarks with @vladmandic/face-api (a maintained fork of face-api.js).
//
// Package: @vladmandic/face-api 1.7.x, MIT licence (models included: the face-api.js weights,
// MIT). It ships its models inside the npm package (model/: ssd_mobilenetv1 5.4 MB,
// tiny_face_detector 0.19 MB and face_landmark_68 0.35 MB used here; 13 MB of models, 24 MB
// unpacked in all) and has no dependencies of its own; its Node wasm build needs @tensorflow/tfjs 4.22 and
// @tensorflow/tfjs-backend-wasm 4.22 (pure JS + a bundled .wasm, nothing downloaded at install
// or run time; ~290 MB unpacked under node_modules/@tensorflow, most of it tfjs's prebuilt
// bundles). tfjs-node is not used (its install downloads libtensorflow).
//
// Isolation: nothing here imports tfjs or face-api at module load. The first detectFaces() call
// imports them (dynamic import), initialises the wasm backend (the cpu backend as a fallback,
// ~20x slower) and loads the three networks from the package's model/ folder on disk, once per
// process. Importing clipmapper (or src/align) therefore never loads tfjs.
//
// Coordinates: face-api reports positions in pixel-edge coordinates (a box from x to x + width
// covers pixels x .. x+width-1, a point's x is in [0, width]); landmarks are returned here in
// pixel-centre coordinates (subtract 0.5: pixel i's centre is i), as dlib and the FFHQ
// alignment use. Boxes stay in pixel-edge coordinates. (Which convention the landmark net was
// trained in cannot be measured: re-detecting on a 2x / 1.5x / 0.75x rescaled photo moves the
// mean landmark by 0.2-0.5 px either way, the size of the half-pixel in question.)
//
// Detector: SSD MobileNet v1 (face-api's most accurate boxes; ~0.3 s per 512x512 photo on the
// wasm backend, 2 cores) + the 68-point landmark net (the full one, not the tiny one). SSD alone
// finds a "face" in a cat's head with score 0.93 (chelsea.png), so by default each SSD box must be
// confirmed by face-api's second, independently trained detector (Tiny Face Detector, input
// sizes 416 and 608, score >= 0.3, IoU >= 0.3 with the SSD box); unconfirmed boxes are dropped
// (verify: false keeps them). On the test photos the Tiny detector finds the astronaut (0.98)
// and the cameraman (0.67) and nothing on the cat at any input size or score >= 0.2.
//
// Landmark refinement: face-api runs its landmark net on the detector's box, and that box frames
// the same face differently from one image to the next (astronaut.png: 2.10 x 2.56 eye-to-mouth
// distances with the eyes tilted 2.9 deg; on its aligned 1024 crop 2.43 x 2.76, upright, shifted),
// so the jaw points slide along the outline: mapped back from the crop they land up to 3.8 px from
// the photo's. Each refinement pass therefore re-runs the landmark net on a canonical view built
// from the previous landmarks: a square of 2.4 eye-to-mouth distances around their mean (0.1 of
// that distance above it), rotated so the eyes are level, resampled to the net's 112x112 input
// (bilinear, box-supersampled when shrinking), and maps the points back. The view is then the
// same for any similarity transform of the photo. The net is also run on the mirrored view and
// the two answers averaged (points paired by the iBUG mirror permutation): a single pass leaves a
// left/right bias that tilts the eye line by ~0.5 deg in the upright crop. Measured on
// astronaut.png vs its aligned 1024 crop, max disagreement over all 68 points mapped back: 3.76 px
// raw, 1.30 / 0.37 / 0.23 px after 1 / 2 / 3 passes (default 2); the re-detected crop's eye line
// 0.83 deg raw, 0.42 after 2 passes (0.96 without the mirror average). Cost ~0.1 s a pass.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { RgbImage } from '../io/image.ts';
import type { Point } from './ffhq.ts';

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface DetectedFace {
  /** Bounding box in pixel-edge coordinates. */
  box: FaceBox;
  /** Detector confidence in [0, 1]. */
  score: number;
  /** 68 landmarks (iBUG/dlib order) in pixel-centre coordinates. */
  landmarks: Point[];
}

export interface DetectOptions {
  /** Minimum detector confidence (default 0.5). */
  minConfidence?: number;
  /** Max faces returned (default 100). */
  maxResults?: number;
  /** Keep only SSD faces confirmed by the Tiny Face Detector (default true; see the header). */
  verify?: boolean;
  /** Landmark refinement passes on the canonical upright view (default 2; 0 = face-api's raw points; see the header). */
  refine?: number;
}

/** No face was found where one was required. */
export class NoFaceError extends Error {
  override name = 'NoFaceError';
  readonly width: number;
  readonly height: number;
  /** Candidates the SSD detector proposed that the second detector did not confirm. */
  readonly rejected: number;
  constructor(what: string, width: number, height: number, minConfidence: number, rejected = 0) {
    super(`no face found in ${what} (${width}x${height}; SSD MobileNet v1 at minConfidence ${minConfidence}` +
      (rejected ? `; ${rejected} candidate${rejected > 1 ? 's' : ''} rejected because the Tiny Face Detector did not confirm ${rejected > 1 ? 'them' : 'it'}` : '') +
      '). Use a photo with a clearly visible, roughly frontal human face' + (rejected ? ', or pass verify: false.' : ', or lower minConfidence.'));
    this.width = width;
    this.height = height;
    this.rejected = rejected;
  }
}

/** An image given as a path, encoded bytes (PNG/JPEG/WebP...) or decoded 8-bit RGB. */
export type ImageInput = string | Uint8Array | RgbImage;

/** Decodes an input to 8-bit RGB with sharp (alpha dropped, greyscale expanded, no EXIF rotation, as PIL). */
export async function loadRgb(input: ImageInput): Promise<RgbImage> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) return input;
  const { data, info } = await sharp(input).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

function describe(input: ImageInput): string {
  if (typeof input === 'string') return `'${input}'`;
  if (input instanceof Uint8Array) return `image bytes (${input.length} bytes)`;
  return 'the image';
}

// ---------------------------------------------------------------- the lazily loaded engine

// The few face-api / tfjs members used here (structural, so no tfjs types leak into the library).
interface TfTensor { dispose(): void }
interface TfLike {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  getBackend(): string;
  tensor3d(values: Int32Array | Uint8Array, shape: [number, number, number], dtype: 'int32'): TfTensor;
  io: { decodeWeights(buffer: ArrayBuffer, specs: unknown[]): Record<string, unknown> };
}
interface FaceApiPoint { x: number; y: number }
interface FaceApiResult {
  detection: { score: number; box: { x: number; y: number; width: number; height: number } };
  landmarks: { positions: FaceApiPoint[] };
}
interface FaceApiNet { loadFromWeightMap(map: Record<string, unknown>): void; isLoaded: boolean }
interface FaceApiLandmarkNet extends FaceApiNet { detectLandmarks(input: TfTensor): Promise<{ positions: FaceApiPoint[] }> }
interface FaceApiLike {
  tf: TfLike & { tensor3d(values: Float32Array, shape: [number, number, number], dtype: 'float32'): TfTensor };
  nets: { ssdMobilenetv1: FaceApiNet; tinyFaceDetector: FaceApiNet; faceLandmark68Net: FaceApiLandmarkNet };
  SsdMobilenetv1Options: new (o: { minConfidence: number; maxResults: number }) => unknown;
  TinyFaceDetectorOptions: new (o: { inputSize: number; scoreThreshold: number }) => unknown;
  detectAllFaces(input: TfTensor, options: unknown): PromiseLike<FaceApiResult['detection'][]> & { withFaceLandmarks(): Promise<FaceApiResult[]> };
}

export interface DetectorInfo {
  backend: string;
  modelDir: string;
}

let engine: Promise<{ api: FaceApiLike; info: DetectorInfo }> | null = null;

/** Where the face-api models are read from: $CLIPMAPPER_FACE_MODELS, else the package's own model/ folder. */
export function faceModelDir(): string {
  if (process.env.CLIPMAPPER_FACE_MODELS) return process.env.CLIPMAPPER_FACE_MODELS;
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
}

async function loadNet(api: FaceApiLike, net: FaceApiNet, dir: string, name: string): Promise<void> {
  const manifestPath = join(dir, `${name}-weights_manifest.json`);
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Array<{ paths: string[]; weights: unknown[] }>;
  const parts = await Promise.all(manifest.flatMap((g) => g.paths.map((p) => readFile(join(dir, p)))));
  const buf = Buffer.concat(parts);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  net.loadFromWeightMap(api.tf.io.decodeWeights(ab, manifest.flatMap((g) => g.weights)));
}

async function startEngine(): Promise<{ api: FaceApiLike; info: DetectorInfo }> {
  const mod = (await import('@vladmandic/face-api/dist/face-api.node-wasm.js')) as unknown as { default?: FaceApiLike } & FaceApiLike;
  const api: FaceApiLike = mod.default ?? mod;
  const wanted = process.env.CLIPMAPPER_TFJS_BACKEND ?? 'wasm';
  let ok = false;
  try { ok = await api.tf.setBackend(wanted); } catch { ok = false; }
  if (!ok && wanted !== 'cpu') ok = await api.tf.setBackend('cpu');
  if (!ok) throw new Error(`could not initialise a tfjs backend ('${wanted}' or 'cpu') for face detection`);
  await api.tf.ready();
  const modelDir = faceModelDir();
  await loadNet(api, api.nets.ssdMobilenetv1, modelDir, 'ssd_mobilenetv1_model');
  await loadNet(api, api.nets.tinyFaceDetector, modelDir, 'tiny_face_detector_model');
  await loadNet(api, api.nets.faceLandmark68Net, modelDir, 'face_landmark_68_model');
  return { api, info: { backend: api.tf.getBackend(), modelDir } };
}

/** Loads tfjs, face-api and the two networks (once per process; later calls reuse them). */
export async function loadFaceDetector(): Promise<DetectorInfo> {
  if (!engine) {
    engine = startEngine();
    engine.catch(() => { engine = null; }); // a failed start can be retried
  }
  return (await engine).info;
}

/**
 * Detects faces and their 68 landmarks, largest box first.
 * Throws NoFaceError when there is none.
 */
export async function detectFaces(input: ImageInput, opts: DetectOptions = {}): Promise<DetectedFace[]> {
  const img = await loadRgb(input);
  await loadFaceDetector();
  const { api } = await engine!;
  const minConfidence = opts.minConfidence ?? 0.5;
  const maxResults = opts.maxResults ?? 100;
  const t = api.tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
  let results: FaceApiResult[];
  let rejected = 0;
  try {
    results = await api.detectAllFaces(t, new api.SsdMobilenetv1Options({ minConfidence, maxResults })).withFaceLandmarks();
    if ((opts.verify ?? true) && results.length) {
      const confirm: FaceBox[] = [];
      for (const inputSize of [416, 608]) {
        for (const d of await api.detectAllFaces(t, new api.TinyFaceDetectorOptions({ inputSize, scoreThreshold: 0.3 }))) confirm.push(d.box);
      }
      const kept = results.filter((r) => confirm.some((b) => iou(b, r.detection.box) >= 0.3));
      rejected = results.length - kept.length;
      results = kept;
    }
  } finally {
    t.dispose();
  }
  const passes = opts.refine ?? 2;
  if (!Number.isInteger(passes) || passes < 0) throw new RangeError(`refine must be a whole number of passes >= 0, got ${passes}`);
  const faces: DetectedFace[] = [];
  for (const r of results) {
    let landmarks = r.landmarks.positions.map((p) => [p.x - 0.5, p.y - 0.5] as Point);
    for (let k = 0; k < passes; k++) landmarks = await refineLandmarks(api, img, landmarks);
    faces.push({
      box: { x: r.detection.box.x, y: r.detection.box.y, width: r.detection.box.width, height: r.detection.box.height },
      score: r.detection.score,
      landmarks,
    });
  }
  if (faces.length === 0) throw new NoFaceError(describe(input), img.width, img.height, minConfidence, rejected);
  faces.sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height);
  return faces;
}

// ---------------------------------------------------------------- landmark refinement (see the header)

const NET_SIZE = 112; // face-api's landmark net input
const VIEW_SIDE = 2.4; // the view's side, in eye-to-mouth distances
const VIEW_UP = 0.1; // the view's centre above the landmarks' mean, in eye-to-mouth distances

/** The canonical view of a face: centre, rotation (eyes level) and photo pixels per view pixel. */
export interface LandmarkView { center: Point; cos: number; sin: number; scale: number }

const meanOf = (lm: readonly Point[], i: number, j: number): Point => {
  let x = 0, y = 0;
  for (let k = i; k < j; k++) { x += lm[k][0]; y += lm[k][1]; }
  return [x / (j - i), y / (j - i)];
};

export function landmarkView(lm: readonly Point[]): LandmarkView {
  const el = meanOf(lm, 36, 42), er = meanOf(lm, 42, 48);
  const eyes: Point = [(el[0] + er[0]) / 2, (el[1] + er[1]) / 2];
  const mouth: Point = [(lm[48][0] + lm[54][0]) / 2, (lm[48][1] + lm[54][1]) / 2];
  const em = Math.hypot(mouth[0] - eyes[0], mouth[1] - eyes[1]);
  const a = Math.atan2(er[1] - el[1], er[0] - el[0]);
  const cos = Math.cos(a), sin = Math.sin(a), c = meanOf(lm, 0, 68);
  // "up" in the face's frame is (sin, -cos)
  return { center: [c[0] + sin * VIEW_UP * em, c[1] - cos * VIEW_UP * em], cos, sin, scale: VIEW_SIDE * em / NET_SIZE };
}

/** View pixel (pixel-centre coordinates) -> photo point. */
export function viewToPhoto(v: LandmarkView, p: Point): Point {
  const u = (p[0] - (NET_SIZE - 1) / 2) * v.scale, w = (p[1] - (NET_SIZE - 1) / 2) * v.scale;
  return [v.center[0] + v.cos * u - v.sin * w, v.center[1] + v.sin * u + v.cos * w];
}

/** Resamples the view (NET_SIZE² RGB, float 0..255): bilinear, edge-clamped, k x k box supersampling when shrinking. */
export function sampleView(img: RgbImage, v: LandmarkView): Float32Array {
  const N = NET_SIZE, W = img.width, H = img.height, d = img.data;
  const out = new Float32Array(N * N * 3);
  const k = Math.max(1, Math.min(8, Math.ceil(v.scale)));
  for (let j = 0; j < N; j++) {
    for (let i = 0; i < N; i++) {
      let r = 0, g = 0, b = 0;
      for (let sb = 0; sb < k; sb++) {
        for (let sa = 0; sa < k; sa++) {
          const [px, py] = viewToPhoto(v, [i - 0.5 + (sa + 0.5) / k, j - 0.5 + (sb + 0.5) / k]);
          const x = Math.min(W - 1, Math.max(0, px)), y = Math.min(H - 1, Math.max(0, py));
          const x0 = Math.floor(x), y0 = Math.floor(y), x1 = Math.min(x0 + 1, W - 1), y1 = Math.min(y0 + 1, H - 1);
          const fx = x - x0, fy = y - y0;
          const w00 = (1 - fx) * (1 - fy), w10 = fx * (1 - fy), w01 = (1 - fx) * fy, w11 = fx * fy;
          const o00 = (y0 * W + x0) * 3, o10 = (y0 * W + x1) * 3, o01 = (y1 * W + x0) * 3, o11 = (y1 * W + x1) * 3;
          r += w00 * d[o00] + w10 * d[o10] + w01 * d[o01] + w11 * d[o11];
          g += w00 * d[o00 + 1] + w10 * d[o10 + 1] + w01 * d[o01 + 1] + w11 * d[o11 + 1];
          b += w00 * d[o00 + 2] + w10 * d[o10 + 2] + w01 * d[o01 + 2] + w11 * d[o11 + 2];
        }
      }
      const o = (j * N + i) * 3, n = k * k;
      out[o] = r / n; out[o + 1] = g / n; out[o + 2] = b / n;
    }
  }
  return out;
}

// iBUG 68-point index of each point's mirror image
export const FLIP68: readonly number[] = (() => {
  const f = Array.from({ length: 68 }, (_, i) => i);
  const pair = (a: number[], b: number[]) => a.forEach((x, k) => { f[x] = b[k]; f[b[k]] = x; });
  pair([0, 1, 2, 3, 4, 5, 6, 7], [16, 15, 14, 13, 12, 11, 10, 9]);
  pair([17, 18, 19, 20, 21], [26, 25, 24, 23, 22]);
  pair([31, 32], [35, 34]);
  pair([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46]);
  pair([48, 49, 50, 58, 59], [54, 53, 52, 56, 55]);
  pair([60, 61, 67], [64, 63, 65]);
  return f;
})();

async function refineLandmarks(api: FaceApiLike, img: RgbImage, lm: readonly Point[]): Promise<Point[]> {
  const v = landmarkView(lm);
  const view = sampleView(img, v);
  const N = NET_SIZE, mirror = new Float32Array(view.length);
  for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) for (let c = 0; c < 3; c++) mirror[(j * N + i) * 3 + c] = view[(j * N + N - 1 - i) * 3 + c];
  const run = async (pixels: Float32Array) => {
    const t = api.tf.tensor3d(pixels, [N, N, 3], 'float32');
    try {
      // face-api's points are pixel-edge coordinates of the 112x112 view
      return (await api.nets.faceLandmark68Net.detectLandmarks(t)).positions.map((p) => [p.x - 0.5, p.y - 0.5] as Point);
    } finally {
      t.dispose();
    }
  };
  const a = await run(view);
  const b = await run(mirror);
  return a.map((p, k) => {
    const q = b[FLIP68[k]]; // point k of the mirrored face, mirrored back
    return viewToPhoto(v, [(p[0] + (N - 1 - q[0])) / 2, (p[1] + q[1]) / 2]);
  });
}

function iou(a: FaceBox, b: FaceBox): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

/** The face to align: the largest (default) or the `face`-th of detectFaces' list. */
export async function detectFace(input: ImageInput, opts: DetectOptions & { face?: number } = {}): Promise<DetectedFace> {
  const faces = await detectFaces(input, opts);
  const i = opts.face ?? 0;
  if (!Number.isInteger(i) || i < 0 || i >= faces.length) {
    throw new RangeError(`face ${i} requested but ${faces.length} face${faces.length === 1 ? ' was' : 's were'} found (indices 0..${faces.length - 1}, largest first)`);
  }
  return faces[i];
}
