// `pipeline(method, options)`: one entry point that edits a real photo end to end.
//
//   const editor = await pipeline('hairclip', { weights: { ... } });
//   const r = await editor('photo.jpg', { hairstyle: 'afro', color: 'purple' });
//   // r.image: the photo (its own size) with the edited face pasted back
//
// Steps of one call:
//   decode (sharp) -> detect the face + 68 landmarks (face-api) -> FFHQ-align twice from the same
//   landmarks: at the generator's resolution (the crop that is edited and pasted back) and at
//   e4e's input size (e4e/pSp's own 256 crop) -> e4e -> w+ -> mapper (w_edit = w + alpha * M) ->
//   synthesis of w and w_edit (one batch) -> face parser on the source crop and the edit ->
//   blend mask (head region of either, grown, feathered inwards) -> paste back through the exact
//   inverse of the alignment: photo pixels where the mask is 0 keep their bytes.
//
// Every network is loaded and every session compiled once, when the editor is created; calls
// reuse them (mapper sessions are compiled once per condition variant, on first use).
import { readdir, mkdir, writeFile } from 'node:fs/promises';
import { extname, join, basename } from 'node:path';
import cliProgress from 'cli-progress';
import { compile, settings, type Compiled, type ExecutionProvider, type HostTensor } from '../runtime/session.ts';
import { decodeImageRgb, rgbToTensor, tensorToRgb, type RgbImage } from '../io/image.ts';
import { TensorData } from '../io/tensor.ts';
import { detectFace, loadFaceDetector, type DetectedFace, type ImageInput } from '../align/detect.ts';
import { alignFfhq, type FfhqAlignment } from '../align/ffhq.ts';
import { pasteBack } from '../align/paste.ts';
import type { FloatImage } from '../align/pixels.ts';
import { e4eInputSize } from '../nets/e4e/e4e.ts';
import { HairClipMapper, HAIRCLIP_ALPHA, colorPrompt, hairstylePrompt } from '../mappers/hairclip.ts';
import { StyleClipMapper, STYLECLIP_ALPHA } from '../mappers/styleclip.ts';
import { FfclipMapper, FFCLIP_ALPHA } from '../mappers/ffclip.ts';
import { loadNets, type EditMethod, type LoadedNets, type WeightsSpec } from './nets.ts';
import { encodeGraph, parseGraph, parserClasses, parserSize, synthesisGraph, type ConditionEmbeddings } from './graphs.ts';
import { blendMask, cropBlendMask, type BlendMaskOptions } from './mask.ts';

export interface ProgressEvent {
  stage: 'load' | 'compile' | 'decode' | 'detect' | 'align' | 'embed' | 'encode' | 'edit' | 'synthesis' | 'parse' | 'paste' | 'done';
  message: string;
}

export interface PipelineOptions {
  /** where the networks come from (paths, registry names or loaded objects); defaults per method, see nets.ts */
  weights?: WeightsSpec;
  /** ONNX Runtime execution provider for every session (default: $CLIPMAPPER_EP or 'cpu') */
  executionProvider?: ExecutionProvider;
  /** intra-op threads (0: ORT's default) */
  threads?: number;
  /** true: steps and download bars on stderr; a function: receives every step */
  progress?: boolean | ((e: ProgressEvent) => void);
  /** download registry weights that are missing from the cache (default true) */
  download?: boolean;
  cacheDir?: string;
  /** StyleCLIP: the prompt naming a released mapper when weights.mapper is not given */
  text?: string;
  /** side of the FFHQ warp for the generator-resolution crop (default 4x the output, as the official script) */
  transformSize?: number;
  /** load the face detector now rather than on the first call (default true) */
  preloadDetector?: boolean;
}

export interface EditConditions {
  /** HairCLIP: hairstyle name ("afro" -> the prompt "afro hairstyle") */
  hairstyle?: string;
  /** HairCLIP: hair colour ("purple" -> "purple hair") */
  color?: string;
  /** HairCLIP: a photo whose hairstyle to copy (used when `hairstyle` is not given) */
  hairstyleRef?: ImageInput;
  /** HairCLIP: a photo whose hair colour to copy (used when `color` is not given) */
  colorRef?: ImageInput;
  /** FFCLIP: free text ("a man with a beard"); StyleCLIP: picks the mapper at load time only */
  text?: string;
  /** strength: w_edit = w + alpha * M(w); default 0.1 (HairCLIP, StyleCLIP), 1 (FFCLIP) */
  alpha?: number;
  /** which face when there are several (0 = largest) */
  face?: number;
  /** blend mask shape */
  mask?: BlendMaskOptions;
}

export interface EditResult {
  /** the photo, its own size, with the edit pasted back (bytes outside the mask untouched) */
  image: RgbImage;
  /** the aligned source crop at the generator's resolution */
  crop: RgbImage;
  /** the edited crop (G(w_edit)) */
  editedCrop: RgbImage;
  /** the e4e inversion (G(w)), for comparison */
  inversion: RgbImage;
  /** the blend mask in crop space (crop size), values in [0, 1] */
  mask: FloatImage;
  /** e4e's w+ [1, L, D] and the edited w+ */
  w: HostTensor;
  wEdit: HostTensor;
  alignment: FfhqAlignment;
  face: DetectedFace;
  /** milliseconds per step */
  timings: Record<string, number>;
}

/** The conditions given do not make an edit for this method (a usage error, not a failure). */
export class ConditionError extends Error {
  override name = 'ConditionError';
}

export interface FaceEditor {
  (photo: ImageInput, conditions?: EditConditions): Promise<EditResult>;
  readonly method: EditMethod;
  readonly nets: LoadedNets;
  /** generator resolution S and e4e input size */
  readonly sizes: { generator: number; e4e: number; parser: number | null; latent: [number, number] };
  /** the compiled sessions, created once */
  readonly sessions: { encode: Compiled; synthesis: Compiled; parse: Compiled | null };
  /** the condition embeddings a call would use (CLIP text / reference image features) */
  embed(conditions: EditConditions): Promise<ConditionEmbeddings>;
  /** the default alpha of the method */
  readonly defaultAlpha: number;
  /** edits every image of a folder into `outDir` with a progress bar */
  editFolder(inDir: string, outDir: string, conditions?: EditConditions, opts?: FolderOptions): Promise<FolderSummary>;
}

export const DEFAULT_ALPHA: Record<EditMethod, number> = { hairclip: HAIRCLIP_ALPHA, styleclip: STYLECLIP_ALPHA, ffclip: FFCLIP_ALPHA };

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp']);

export interface FolderOptions {
  /** show a cli-progress bar on stderr (default: when stderr is a terminal) */
  progressBar?: boolean;
  /** called after each file */
  onFile?: (r: { file: string; out?: string; error?: string }) => void;
  /** written next to each result: a before/after sheet (grid.ts) */
  grid?: boolean;
}

export interface FolderSummary { ok: { file: string; out: string }[]; failed: { file: string; error: string }[] }

/** Decodes a photo given as a path, encoded bytes or RGB (ImageError when it is not an image). */
export async function decodePhoto(input: ImageInput): Promise<RgbImage> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) return input;
  return decodeImageRgb(input);
}

function toHost(t: TensorData | { data: Float32Array; shape: number[] }): HostTensor {
  return { data: t.data as Float32Array, shape: [...t.shape] };
}

/** Creates a photo editor for `method`: loads the networks and compiles the sessions once. */
export async function pipeline(method: EditMethod, options: PipelineOptions = {}): Promise<FaceEditor> {
  const report = typeof options.progress === 'function' ? options.progress
    : options.progress ? (e: ProgressEvent) => process.stderr.write(`clipmapper: ${e.message}\n`) : () => {};
  if (options.executionProvider) settings.executionProvider = options.executionProvider;
  if (options.threads !== undefined) settings.threads = options.threads;
  const nets = await loadNets(method, options.weights ?? {}, {
    download: options.download, cacheDir: options.cacheDir, text: options.text,
    progressBars: options.progress === true ? true : options.progress ? false : 'auto',
    log: (m) => report({ stage: 'load', message: m }),
  });
  const { generator: gen, e4e, mapper, clip, parser } = nets;
  const S = gen.config.size;
  const Se = e4eInputSize(e4e.config);
  const L = gen.nLatent, D = gen.config.styleDim;
  const copts = { executionProvider: options.executionProvider, threads: options.threads };

  report({ stage: 'compile', message: 'compiling sessions (e4e, synthesis, parser)' });
  const [encode, synthesis, parse] = await Promise.all([
    compile(encodeGraph(e4e), { ...copts, name: 'e4e' }),
    compile(synthesisGraph(gen, 2), { ...copts, name: 'synthesis' }),
    parser ? compile(parseGraph(parser, 2, S), { ...copts, name: 'parser' }) : Promise.resolve(null),
  ]);
  const P = parser ? parserSize(parser, S) : null;
  if (options.preloadDetector ?? true) await loadFaceDetector();

  const hairMaskOf = async (img: Float32Array): Promise<Float32Array> => {
    // HairCLIP masks a reference image with its own hair mask before embedding it
    if (!parse || !parser) return img;
    const batch = new Float32Array(2 * 3 * S * S);
    batch.set(img, 0);
    batch.set(img, 3 * S * S);
    const labels = (await parse.run({ image: batch })).labels.data as Int32Array;
    const hair = parserClasses(parser).hair;
    const out = new Float32Array(img.length);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const l = labels[Math.min(P! - 1, Math.floor(((y + 0.5) * P!) / S)) * P! + Math.min(P! - 1, Math.floor(((x + 0.5) * P!) / S))];
        if (l !== hair) continue;
        for (let c = 0; c < 3; c++) out[c * S * S + y * S + x] = img[c * S * S + y * S + x];
      }
    }
    return out;
  };

  const refEmbedding = async (ref: ImageInput): Promise<Float32Array> => {
    const rgb = await decodePhoto(ref);
    let crop: RgbImage;
    try {
      const face = await detectFace(rgb);
      crop = alignFfhq(rgb, face.landmarks, { outputSize: S, transformSize: options.transformSize }).image;
    } catch (e) {
      if (!(e instanceof Error && e.name === 'NoFaceError')) throw e;
      // no face in the reference (a hair swatch, say): the whole image, squashed to the crop size
      crop = await decodeImageRgb(await sharpPng(rgb), { size: S });
    }
    const masked = await hairMaskOf(rgbToTensor(crop).data as Float32Array);
    const f = await clip!.encodeImage({ data: masked, shape: [1, 3, S, S] }, { preprocess: 'embedding', size: S });
    return f.data as Float32Array;
  };

  const textEmbedding = async (text: string): Promise<Float32Array> => (await clip!.encodeTexts([text])).data as Float32Array;

  async function embed(c: EditConditions): Promise<ConditionEmbeddings> {
    if (mapper instanceof HairClipMapper) {
      const hair = c.hairstyle?.trim() ? await textEmbedding(hairstylePrompt(c.hairstyle.trim()))
        : c.hairstyleRef ? await refEmbedding(c.hairstyleRef) : null;
      const color = c.color?.trim() ? await textEmbedding(colorPrompt(c.color.trim()))
        : c.colorRef ? await refEmbedding(c.colorRef) : null;
      if (!hair && !color) {
        throw new ConditionError(c.text?.trim()
          ? 'HairCLIP takes a hairstyle and/or a hair colour (text or reference image), not free text; use the ffclip method for free text'
          : 'HairCLIP needs a hairstyle and/or a hair colour: give hairstyle, color, hairstyleRef or colorRef');
      }
      return { hair, color };
    }
    if (mapper instanceof FfclipMapper) {
      const text = c.text?.trim() || [c.hairstyle?.trim() && hairstylePrompt(c.hairstyle.trim()), c.color?.trim() && colorPrompt(c.color.trim())].filter(Boolean).join(', ');
      if (!text) throw new ConditionError('FFCLIP needs a text describing the edit');
      return { text: await textEmbedding(text) };
    }
    return {};
  }

  const defaultAlpha = DEFAULT_ALPHA[method];

  async function edit(photoIn: ImageInput, c: EditConditions = {}): Promise<EditResult> {
    const timings: Record<string, number> = {};
    let t = performance.now();
    const lap = (k: string) => { const n = performance.now(); timings[k] = Math.round((n - t) * 10) / 10; t = n; };
    const alpha = c.alpha ?? defaultAlpha;
    if (!Number.isFinite(alpha)) throw new ConditionError(`alpha must be a number, got ${c.alpha}`);
    // conditions first: a usage error should not cost a face detection
    report({ stage: 'embed', message: 'embedding the conditions' });
    const cond = await embed(c);
    lap('embed');

    report({ stage: 'decode', message: 'decoding the photo' });
    const photo = await decodePhoto(photoIn);
    lap('decode');
    report({ stage: 'detect', message: 'detecting the face' });
    const face = await detectFace(photo, { face: c.face }).catch((e: unknown) => {
      // name the file (or the upload) rather than "the image"
      if (e instanceof Error && e.name === 'NoFaceError') {
        const what = typeof photoIn === 'string' ? `'${photoIn}'` : photoIn instanceof Uint8Array ? `the uploaded photo` : 'the photo';
        e.message = e.message.replace('the image', what);
      }
      throw e;
    });
    lap('detect');
    report({ stage: 'align', message: `aligning (${S}px crop, ${Se}px for e4e)` });
    const big = alignFfhq(photo, face.landmarks, { outputSize: S, transformSize: options.transformSize });
    const small = Se === S && !options.transformSize ? big : alignFfhq(photo, face.landmarks, { outputSize: Se, transformSize: Se });
    lap('align');

    report({ stage: 'encode', message: 'inverting with e4e' });
    const w = (await encode.run({ image: rgbToTensor(small.image).data as Float32Array })).w;
    lap('encode');

    report({ stage: 'edit', message: `mapping (alpha ${alpha})` });
    let wEdit: HostTensor;
    if (mapper instanceof HairClipMapper) wEdit = (await mapper.edit(w, { hair: cond.hair, color: cond.color }, { alpha })).wHat;
    else if (mapper instanceof FfclipMapper) wEdit = (await mapper.edit(w, cond.text!, { alpha })).wHat;
    else wEdit = (await (mapper as StyleClipMapper).edit(w, { alpha })).wHat;
    lap('edit');

    report({ stage: 'synthesis', message: 'synthesising' });
    const both = new Float32Array(2 * L * D);
    both.set(w.data as Float32Array, 0);
    both.set(wEdit.data as Float32Array, L * D);
    const images = (await synthesis.run({ w: both })).image;
    const imgT = new TensorData('float32', images.shape, images.data as Float32Array);
    const inversion = tensorToRgb(imgT, { index: 0 });
    const editedCrop = tensorToRgb(imgT, { index: 1 });
    lap('synthesis');

    report({ stage: 'parse', message: 'parsing the source and the edit' });
    let mask: FloatImage;
    if (parse && parser) {
      const batch = new Float32Array(2 * 3 * S * S);
      batch.set(rgbToTensor(big.image).data as Float32Array, 0);
      batch.set((images.data as Float32Array).subarray(3 * S * S, 6 * S * S), 3 * S * S);
      const labels = (await parse.run({ image: batch })).labels.data as Int32Array;
      const n = P! * P!;
      mask = blendMask([labels.subarray(0, n), labels.subarray(n, 2 * n)], P!, parserClasses(parser).head, S, c.mask);
    } else {
      mask = cropBlendMask(S, c.mask?.feather);
    }
    lap('parse');

    report({ stage: 'paste', message: 'pasting back' });
    const image = pasteBack(photo, editedCrop, mask, big.alignment);
    lap('paste');
    report({ stage: 'done', message: `done (${Object.entries(timings).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(', ')})` });
    return {
      image, crop: big.image, editedCrop, inversion, mask, w: toHost(w as { data: Float32Array; shape: number[] }), wEdit,
      alignment: big.alignment, face, timings,
    };
  }

  async function editFolder(inDir: string, outDir: string, c: EditConditions = {}, fo: FolderOptions = {}): Promise<FolderSummary> {
    const files = (await readdir(inDir)).filter((f) => IMAGE_EXT.has(extname(f).toLowerCase())).sort();
    await mkdir(outDir, { recursive: true });
    const showBar = fo.progressBar ?? Boolean(process.stderr.isTTY);
    const bar = showBar ? new cliProgress.SingleBar({
      format: 'editing |{bar}| {value}/{total} {file}', stream: process.stderr, hideCursor: true,
    }, cliProgress.Presets.shades_classic) : null;
    bar?.start(files.length, 0, { file: '' });
    const summary: FolderSummary = { ok: [], failed: [] };
    const { gridImage, encodePng } = await import('./grid.ts');
    for (const f of files) {
      const src = join(inDir, f);
      try {
        const r = await edit(src, c);
        const out = join(outDir, `${basename(f, extname(f))}.png`);
        await writeFile(out, await encodePng(r.image));
        if (fo.grid) await writeFile(join(outDir, `${basename(f, extname(f))}.grid.png`), await encodePng(await gridImage(await decodePhoto(src), r)));
        summary.ok.push({ file: src, out });
        fo.onFile?.({ file: src, out });
      } catch (e) {
        const error = (e as Error).message;
        summary.failed.push({ file: src, error });
        fo.onFile?.({ file: src, error });
      }
      bar?.increment(1, { file: f });
    }
    bar?.stop();
    return summary;
  }

  const editor = Object.assign(edit, {
    method, nets, embed, editFolder, defaultAlpha,
    sizes: { generator: S, e4e: Se, parser: P, latent: [L, D] as [number, number] },
    sessions: { encode, synthesis, parse },
  });
  return editor as FaceEditor;
}

async function sharpPng(rgb: RgbImage): Promise<Uint8Array> {
  const { encodePng } = await import('./grid.ts');
  return encodePng(rgb);
}
