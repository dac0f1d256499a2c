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
import { detectWithFaceApi, type DetectedFace, type DetectOptions, type FaceApiLike, type FaceApiNet } from './detect_core.ts';

export { FLIP68, landmarkView, sampleView, viewToPhoto, NoFaceError } from './detect_core.ts';
export type { DetectedFace, DetectOptions, FaceBox, LandmarkView } from './detect_core.ts';

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
  return detectWithFaceApi(api, img, opts, describe(input));
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
