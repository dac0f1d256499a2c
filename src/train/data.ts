// Training data: latent sets, the prompt vocabularies of the three projects, and HairCLIP's
// per-sample condition sampling.
//
// Latents. Either a file of w+ codes [N, L, D] — the `.pt` tensors e4e inversion produces
// (StyleCLIP/HairCLIP `train_faces.pt`, a bare tensor saved with torch.save), FFCLIP's `.npy`, or a
// safetensors file — or codes sampled from G's mapping network with truncation (the official
// fallback when no file is given: z ~ N(0, I), w = avg + psi (mapping(z) - avg), psi 0.7, the same
// w on every row). Every draw comes from the trainer's Rng, so a resumed run sees the same data:
// a file is sampled by index (with replacement: no epoch state to save), the mapping source
// draws z itself and maps it in a forward session at step time.
//
// Prompts (hairclip.md §7.7, ffclip.md §6.2): the 44 hairstyles and 12 colours of HairCLIP, the
// 53-entry (44 unique) prompt list of FFCLIP's face dataset, with its duplicates and casing.
//
// HairCLIP condition sampling (hairclip.md §7.2, LatentsDataset.__getitem__), per sample:
//   hairstyle only 0.5 | colour only 0.2 | both 0.27 | no edit 0.03 (the rest);
//   hairstyle: text "<name> hairstyle" with p 0.5, else a random real reference image;
//   colour: the colour word first (uniform over 12), then text "<colour> hair" with p 0.5, else an
//   in-domain generated image of that colour with conditional p 0.25 / 0.5, else a real reference.
// Branches whose images were not given are folded away (their probability spread over the
// remaining branches in proportion), with a warning — the official code crashes instead.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Rng } from './rng.ts';
import { loadCheckpoint, flattenStateDict } from '../io/torch.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { TensorData, toFloat32Array } from '../io/tensor.ts';
import { isPyDict } from '../io/pickle.ts';
import { mappingSession, meanLatent, type Generator } from '../nets/stylegan2/stylegan2.ts';

// ---------------------------------------------------------------------------------------------
// Vocabularies

/** HairCLIP mapper/hairstyle_list.txt, file order (each used as "<name> hairstyle"). */
export const HAIRSTYLES: readonly string[] = [
  'afro', 'bob cut', 'bowl cut', 'braid', 'caesar cut', 'chignon', 'cornrows', 'crew cut', 'crown braid', 'curtained hair',
  'dido flip', 'dreadlocks', 'extensions', 'fade', 'fauxhawk', 'finger waves', 'french braid', 'frosted tips', 'full crown',
  'harvard clip', 'high and tight', 'hime cut', 'hi-top fade', 'jewfro', 'jheri curl', 'liberty spikes', 'marcel waves',
  'mohawk', 'pageboy', 'perm', 'pixie cut', 'psychobilly wedge', 'quiff', 'regular taper cut', 'ringlets', 'shingle bob',
  'short hair', 'slicked-back', 'spiky hair', 'surfer hair', 'taper cut', 'the rachel', 'undercut', 'updo',
];

/** HairCLIP's 12 colours (README command / the original hard-coded list), used as "<colour> hair". */
export const HAIR_COLORS: readonly string[] = ['purple', 'red', 'orange', 'yellow', 'green', 'blue', 'gray', 'brown', 'black', 'white', 'blond', 'pink'];

/** FFCLIP data/ffhq_dataset.py: the 53-entry face prompt list, duplicates and casing as written. */
export const FFCLIP_PROMPTS: readonly string[] = [
  // emotion (12)
  'Sad', 'Sad', 'Surprise', 'Surprise', 'Fear', 'Fear', 'Contempt', 'Contempt', 'Neutral', 'happy', 'Disgust', 'Anger',
  // age / gender (8)
  'Woman Aged 40', 'Woman Aged 80', 'Woman Aged 10', 'Woman Aged 20', 'Man Aged 40', 'Man Aged 80', 'Man Aged 10', 'Man Aged 20',
  // face (4 x 2)
  'Bald', 'Bald', 'make up', 'make up', 'closed eyes', 'closed eyes', 'wearing glasses', 'wearing glasses',
  // celebrity (1 x 2)
  'Taylor Swift', 'Taylor Swift',
  // eyes (2)
  'Blue eyes', 'Green eyes',
  // hair colour (13)
  'Purple hair', 'Green hair', 'Orange hair', 'Yellow hair', 'Blue hair', 'Gray hair', 'Brown hair', 'Black hair', 'White hair',
  'Blond hair', 'Pink hair', 'Beard', 'curly hair',
  // hairstyle (8)
  'afro hairstyle', 'bowl cut hairstyle', 'mohawk hairstyle', 'jewfro hairstyle', 'dreadlocks hairstyle', 'cornrows hairstyle',
  'Hi-top Fade hairstyle', 'Bob Cut hairstyle',
];

export const hairstylePrompt = (name: string): string => `${name} hairstyle`;
export const colorPrompt = (color: string): string => `${color} hair`;

/**
 * A prompt list from a CLI value: a file with one entry per line (HairCLIP's hairstyle_list.txt
 * lines "<name> hairstyle" are reduced to the name, as the official code does), or a
 * comma-separated list.
 */
export function readList(value: string, opts: { stripSuffix?: string } = {}): string[] {
  let items: string[];
  if (existsSync(value) && statSync(value).isFile()) items = readFileSync(value, 'utf8').split(/\r?\n/);
  else items = value.split(',');
  items = items.map((s) => s.trim()).filter((s) => s.length > 0);
  if (opts.stripSuffix) {
    const suf = opts.stripSuffix;
    items = items.map((s) => (s.endsWith(suf) ? s.slice(0, -suf.length).trim() : s));
  }
  if (!items.length) throw new Error(`empty list: '${value}'`);
  return items;
}

// ---------------------------------------------------------------------------------------------
// Latent files

export interface LatentSet { data: Float32Array; shape: [number, number, number] }

/** NumPy .npy (v1-3, little-endian float32/float64/float16, C order). */
export function parseNpy(bytes: Uint8Array, what = 'npy'): TensorData {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) throw new Error(`${what}: not a .npy file`);
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeStr === undefined) throw new Error(`${what}: cannot read the .npy header '${header.trim()}'`);
  if (fortran === 'True') throw new Error(`${what}: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)`);
  const shape = shapeStr.split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const off = start + headerLen;
  const body = bytes.slice(off); // aligned copy
  let data: Float32Array;
  if (descr === '<f4' || descr === '|f4') data = new Float32Array(body.buffer, 0, n);
  else if (descr === '<f8') data = Float32Array.from(new Float64Array(body.buffer, 0, n));
  else if (descr === '<f2') data = toFloat32Array(new TensorData('float16', shape, new Uint16Array(body.buffer, 0, n)));
  else throw new Error(`${what}: dtype '${descr}' is not supported (float16/32/64 little-endian)`);
  if (data.length !== n) throw new Error(`${what}: truncated data`);
  return new TensorData('float32', shape, data);
}

function pickTensor(tensors: Map<string, TensorData>, what: string): TensorData {
  if (tensors.size === 1) return [...tensors.values()][0];
  for (const k of ['latents', 'latent', 'w', 'codes']) { const t = tensors.get(k); if (t) return t; }
  throw new Error(`${what}: holds ${tensors.size} tensors (${[...tensors.keys()].slice(0, 6).join(', ')}); expected one, or one named 'latents'`);
}

/** A latent file as [N, L, D] float32: .pt/.pth (a tensor, or a dict holding one), .npy, .safetensors. */
export function loadLatents(path: string): LatentSet {
  const ext = extname(path).toLowerCase();
  let t: TensorData;
  if (ext === '.npy') t = parseNpy(new Uint8Array(readFileSync(path)), path);
  else if (ext === '.safetensors') t = pickTensor(readSafetensors(path).tensors, path);
  else {
    const root = loadCheckpoint(path);
    t = root instanceof TensorData ? root : isPyDict(root) || Array.isArray(root) ? pickTensor(flattenStateDict(root), path) : (() => { throw new Error(`${path}: not a tensor file`); })();
  }
  const data = toFloat32Array(t);
  const s = t.shape;
  if (s.length === 3) return { data, shape: [s[0], s[1], s[2]] };
  if (s.length === 2) return { data, shape: [1, s[0], s[1]] };
  throw new Error(`${path}: latents must be [N, L, D] (w+ codes, e.g. e4e's), got [${s.join(', ')}]`);
}

// ---------------------------------------------------------------------------------------------
// Latent sources

/** What a sample holds about its latents: file indices, or the z the mapping source drew. */
export type LatentRef = { indices: number[] } | { z: Float32Array };

export interface LatentSource {
  readonly rows: number;
  readonly width: number;
  readonly description: string;
  /** number of distinct latents (Infinity for the mapping source) */
  readonly count: number;
  /** draws a batch (synchronous: only random numbers are taken from `rng`) */
  draw(rng: Rng, batch: number): LatentRef;
  /** the w+ batch [B, L, D] */
  resolve(ref: LatentRef): Promise<Float32Array>;
  /** a fixed batch of the first `n` latents (previews, evaluation) */
  first(n: number): LatentRef;
}

export class FileLatents implements LatentSource {
  readonly rows: number; readonly width: number; readonly count: number;
  constructor(readonly set: LatentSet, readonly description: string) {
    [this.count, this.rows, this.width] = set.shape;
    if (!this.count) throw new Error(`${description}: no latents`);
  }
  static load(path: string): FileLatents { return new FileLatents(loadLatents(path), path); }
  draw(rng: Rng, batch: number): LatentRef { return { indices: Array.from({ length: batch }, () => rng.int(this.count)) }; }
  first(n: number): LatentRef { return { indices: Array.from({ length: n }, (_, i) => i % this.count) }; }
  async resolve(ref: LatentRef): Promise<Float32Array> {
    if (!('indices' in ref)) throw new Error('FileLatents: not a file reference');
    const per = this.rows * this.width;
    const out = new Float32Array(ref.indices.length * per);
    ref.indices.forEach((i, b) => out.set(this.set.data.subarray(i * per, (i + 1) * per), b * per));
    return out;
  }
}

/** w from G's mapping network with truncation, repeated over every w+ row. */
export class MappingLatents implements LatentSource {
  readonly rows: number; readonly width: number; readonly count = Infinity;
  readonly description: string;
  private sessions = new Map<number, Promise<(z: Float32Array) => Promise<Float32Array>>>();
  private constructor(readonly gen: Generator, readonly truncation: number, readonly avg: Float32Array) {
    this.rows = gen.nLatent; this.width = gen.config.styleDim;
    this.description = `G's mapping network, truncation ${truncation}`;
  }
  /** `avg`: the checkpoint's latent_avg, else the mean of 4096 mapped z (seeded, deterministic). */
  static async create(gen: Generator, truncation = 0.7): Promise<MappingLatents> {
    const avg = gen.latentAvg ?? (truncation < 1 ? await meanLatent(gen, 4096, 0) : new Float32Array(gen.config.styleDim));
    return new MappingLatents(gen, truncation, avg);
  }
  draw(rng: Rng, batch: number): LatentRef { return { z: rng.normals(batch * this.width) }; }
  first(n: number): LatentRef {
    // a fixed stream independent of training (xorshift of the index)
    const z = new Float32Array(n * this.width);
    let s = 0x9e3779b9;
    const u = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
    for (let i = 0; i < z.length; i++) z[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    return { z };
  }
  async resolve(ref: LatentRef): Promise<Float32Array> {
    if (!('z' in ref)) throw new Error('MappingLatents: not a z reference');
    const D = this.width; const B = ref.z.length / D;
    let s = this.sessions.get(B);
    if (!s) { s = mappingSession(this.gen, B); this.sessions.set(B, s); }
    const w = await (await s)(ref.z);
    const out = new Float32Array(B * this.rows * D);
    const psi = this.truncation;
    for (let b = 0; b < B; b++) {
      const row = new Float32Array(D);
      for (let j = 0; j < D; j++) row[j] = this.avg[j] + psi * (w[b * D + j] - this.avg[j]);
      for (let l = 0; l < this.rows; l++) out.set(row, (b * this.rows + l) * D);
    }
    return out;
  }
}

/** A file source when `path` is given, else the mapping network. Checks the latent shape against G. */
export async function latentSource(gen: Generator, path?: string, truncation = 0.7): Promise<LatentSource> {
  const src = path ? FileLatents.load(path) : await MappingLatents.create(gen, truncation);
  if (src.rows !== gen.nLatent || src.width !== gen.config.styleDim) {
    throw new Error(`${src.description}: latents are [${src.rows}, ${src.width}] per sample, the generator takes w+ [${gen.nLatent}, ${gen.config.styleDim}]`);
  }
  return src;
}

// ---------------------------------------------------------------------------------------------
// Reference images

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.bmp']);

/** Image files under `dir`, recursively, sorted (the official `make_dataset` + sorted). */
export function listImages(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`not a folder of images: ${dir}`);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (IMAGE_EXT.has(extname(e).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// HairCLIP conditions

export type HairCondition =
  | { kind: 'text'; name: string }
  | { kind: 'image'; path: string; domain: 'in' | 'out' };

export interface HairSample { hairstyle: HairCondition | null; color: HairCondition | null }

export interface HairSamplingOptions {
  hairstyleProb: number;
  colorProb: number;
  bothProb: number;
  hairstyleTextProb: number;
  colorTextProb: number;
  colorInDomainRefProb: number;
}

/** train_options.py defaults. */
export const HAIR_SAMPLING_DEFAULTS: HairSamplingOptions = {
  hairstyleProb: 0.5, colorProb: 0.2, bothProb: 0.27, hairstyleTextProb: 0.5, colorTextProb: 0.5, colorInDomainRefProb: 0.25,
};

export interface HairReferences {
  /** real hairstyle reference images (out-of-domain) */
  hairstyle: string[];
  /** real colour reference images (out-of-domain) */
  color: string[];
  /** in-domain colour references by colour name: `<root>/<colour> hair/*` */
  colorInDomain: Map<string, string[]> | null;
}

/** The in-domain colour reference folder layout of the official code: `<root>/<colour> hair/NNNNN.jpg`. */
export function inDomainColorRefs(root: string, colors: readonly string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const c of colors) {
    const d = join(root, colorPrompt(c));
    if (!existsSync(d)) throw new Error(`in-domain colour references: missing folder '${d}' (expected <root>/<colour> hair/*.jpg for every colour)`);
    const files = listImages(d);
    if (!files.length) throw new Error(`in-domain colour references: '${d}' holds no images`);
    m.set(c, files);
  }
  return m;
}

/** The effective branch probabilities once branches without images are folded away (+ warnings). */
export interface HairSampler {
  readonly options: HairSamplingOptions;
  readonly warnings: string[];
  sample(rng: Rng): HairSample;
  describe(s: HairSample): string;
}

export function hairSampler(o: HairSamplingOptions, refs: HairReferences, hairstyles: readonly string[], colors: readonly string[]): HairSampler {
  const warnings: string[] = [];
  const top = o.hairstyleProb + o.colorProb + o.bothProb;
  if (top > 1 + 1e-9) throw new Error(`hairstyle (${o.hairstyleProb}) + colour (${o.colorProb}) + both (${o.bothProb}) probabilities exceed 1`);
  for (const [k, v] of Object.entries(o)) if (!(v >= 0 && v <= 1)) throw new Error(`sampling probability ${k} = ${v} is not in [0, 1]`);
  if (o.colorTextProb + o.colorInDomainRefProb > 1 + 1e-9) throw new Error(`colour text (${o.colorTextProb}) + in-domain reference (${o.colorInDomainRefProb}) probabilities exceed 1`);

  let hsText = o.hairstyleTextProb;
  if (hsText < 1 && !refs.hairstyle.length) {
    warnings.push(`no hairstyle reference images given (--hairstyle-refs): the hairstyle-image branch (p ${(1 - hsText).toFixed(2)}) is folded into the text branch`);
    hsText = 1;
  }
  let cText = o.colorTextProb;
  let cIn = o.colorInDomainRefProb;
  let cOut = Math.max(0, 1 - cText - cIn);
  if (cIn > 0 && !refs.colorInDomain) {
    warnings.push(`no in-domain colour references given (--color-refs-in-domain): that branch (p ${cIn.toFixed(2)}) is folded into the others`);
    cIn = 0;
  }
  if (cOut > 0 && !refs.color.length) {
    warnings.push(`no colour reference images given (--color-refs): the real-reference colour branch (p ${cOut.toFixed(2)}) is folded into the others`);
    cOut = 0;
  }
  const cs = cText + cIn + cOut;
  if (cs <= 0) throw new Error('no colour branch is left: give --color-text-prob > 0 or reference images');
  cText /= cs; cIn /= cs; cOut /= cs;

  const hairstyle = (rng: Rng): HairCondition => {
    if (rng.random() < hsText) return { kind: 'text', name: rng.choice(hairstyles) };
    return { kind: 'image', path: rng.choice(refs.hairstyle), domain: 'out' };
  };
  const color = (rng: Rng): HairCondition => {
    const c = rng.choice(colors);
    const u = rng.random();
    if (u < cText) return { kind: 'text', name: c };
    if (u < cText + cIn) return { kind: 'image', path: rng.choice(refs.colorInDomain!.get(c)!), domain: 'in' };
    return { kind: 'image', path: rng.choice(refs.color), domain: 'out' };
  };
  return {
    options: { ...o, hairstyleTextProb: hsText, colorTextProb: cText, colorInDomainRefProb: cIn },
    warnings,
    sample(rng) {
      const r = rng.random();
      if (r < o.hairstyleProb) return { hairstyle: hairstyle(rng), color: null };
      if (r < o.hairstyleProb + o.colorProb) return { hairstyle: null, color: color(rng) };
      if (r < top) { const h = hairstyle(rng); return { hairstyle: h, color: color(rng) }; }
      return { hairstyle: null, color: null };
    },
    describe(s) {
      const d = (c: HairCondition | null, what: 'hairstyle' | 'color') => {
        if (!c) return null;
        if (c.kind === 'text') return what === 'hairstyle' ? hairstylePrompt(c.name) : colorPrompt(c.name);
        return `${what}_${c.domain === 'in' ? 'in_domain' : 'out_domain'}_ref(${c.path.split(/[\\/]/).pop()})`;
      };
      return [d(s.hairstyle, 'hairstyle'), d(s.color, 'color')].filter((x) => x).join('-') || 'no_edit';
    },
  };
}
