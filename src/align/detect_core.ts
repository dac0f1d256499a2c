// The half of face detection that needs neither Node nor a particular tfjs build, shared by
// src/align/detect.ts (Node, tfjs wasm) and the web page's browser mode (face-api's browser
// bundle): SSD boxes confirmed by the Tiny Face Detector, and the landmark refinement on a
// canonical upright view with mirror averaging (why, and what each measures: detect.ts's header).
// face-api comes in as an object (structurally typed, so no tfjs types leak into the library).
import type { RgbImage } from './pixels.ts';
import type { Point } from './ffhq.ts';

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

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export const NET_SIZE = 112; // face-api's landmark net input
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

/** Runs the 68-point landmark net on a NET_SIZE² RGB view (float 0..255, HWC); points in the view's pixel-centre coordinates. */
export type LandmarkNet = (view: Float32Array) => Promise<Point[]>;

/** One refinement pass: the net on the canonical view and on its mirror image, averaged, mapped back to the photo. */
export async function refineLandmarks(net: LandmarkNet, img: RgbImage, lm: readonly Point[]): Promise<Point[]> {
  const v = landmarkView(lm);
  const view = sampleView(img, v);
  const N = NET_SIZE, mirror = new Float32Array(view.length);
  for (let j = 0; j < N; j++) for (let i = 0; i < N; i++) for (let c = 0; c < 3; c++) mirror[(j * N + i) * 3 + c] = view[(j * N + N - 1 - i) * 3 + c];
  const a = await net(view);
  const b = await net(mirror);
  return a.map((p, k) => {
    const q = b[FLIP68[k]]; // point k of the mirrored face, mirrored back
    return viewToPhoto(v, [(p[0] + (N - 1 - q[0])) / 2, (p[1] + q[1]) / 2]);
  });
}

export function iou(a: FaceBox, b: FaceBox): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

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
export interface FaceApiNet { loadFromWeightMap(map: Record<string, unknown>): void; isLoaded: boolean }
interface FaceApiLandmarkNet extends FaceApiNet { detectLandmarks(input: TfTensor): Promise<{ positions: FaceApiPoint[] }> }
export interface FaceApiLike {
  tf: TfLike & { tensor3d(values: Float32Array, shape: [number, number, number], dtype: 'float32'): TfTensor };
  nets: { ssdMobilenetv1: FaceApiNet; tinyFaceDetector: FaceApiNet; faceLandmark68Net: FaceApiLandmarkNet };
  SsdMobilenetv1Options: new (o: { minConfidence: number; maxResults: number }) => unknown;
  TinyFaceDetectorOptions: new (o: { inputSize: number; scoreThreshold: number }) => unknown;
  detectAllFaces(input: TfTensor, options: unknown): PromiseLike<FaceApiResult['detection'][]> & { withFaceLandmarks(): Promise<FaceApiResult[]> };
}

function landmarkNet(api: FaceApiLike): LandmarkNet {
  return async (pixels) => {
    const t = api.tf.tensor3d(pixels, [NET_SIZE, NET_SIZE, 3], 'float32');
    try {
      // face-api's points are pixel-edge coordinates of the 112x112 view
      return (await api.nets.faceLandmark68Net.detectLandmarks(t)).positions.map((p) => [p.x - 0.5, p.y - 0.5] as Point);
    } finally {
      t.dispose();
    }
  };
}

/**
 * Faces and their 68 landmarks with an initialised face-api (its three nets loaded), largest box
 * first; NoFaceError (naming `what`) when there is none.
 */
export async function detectWithFaceApi(api: FaceApiLike, img: RgbImage, opts: DetectOptions = {}, what = 'the image'): Promise<DetectedFace[]> {
  const passes = opts.refine ?? 2;
  if (!Number.isInteger(passes) || passes < 0) throw new RangeError(`refine must be a whole number of passes >= 0, got ${passes}`);
  const t = api.tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
  const minConfidence = opts.minConfidence ?? 0.5;
  const maxResults = opts.maxResults ?? 100;
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
  const net = landmarkNet(api);
  const faces: DetectedFace[] = [];
  for (const r of results) {
    let landmarks = r.landmarks.positions.map((p) => [p.x - 0.5, p.y - 0.5] as Point);
    for (let k = 0; k < passes; k++) landmarks = await refineLandmarks(net, img, landmarks);
    faces.push({
      box: { x: r.detection.box.x, y: r.detection.box.y, width: r.detection.box.width, height: r.detection.box.height },
      score: r.detection.score,
      landmarks,
    });
  }
  if (faces.length === 0) throw new NoFaceError(what, img.width, img.height, minConfidence, rejected);
  faces.sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height);
  return faces;
}
