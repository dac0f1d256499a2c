// `clipmapper verify <dir>` for a folder laid out like shared/fixtures/clip/: every weight file in
// it (TorchScript archive, state dict, safetensors) is loaded and run on io.safetensors' inputs;
// the three losses of grad.safetensors are rebuilt and differentiated; tokens.json is
// re-tokenised (with the folder's vocabulary when it has one).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import { toFloat32Array, type TensorData } from '../../io/tensor.ts';
import { compile, type HostTensor } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { ClipModel } from './clip.ts';
import { encodeImage, encodeText, clipLogits, type Taps } from './model.ts';
import { clipLossResize } from './preprocess.ts';
import { SimpleTokenizer, defaultTokenizer, tokenize } from './tokenizer.ts';

const FORWARD = { atol: 1e-4, rtol: 1e-4 };
/** gradients: max |g - ref| <= 1e-4 * max |ref| (the fixtures' float32-vs-float64 floor is ~1e-6 of max |ref|) */
const GRADIENT = { relMax: 1e-4 };

const WEIGHT_FILE = /\.(pt|pth|bin|safetensors)$/;
const NOT_WEIGHTS = new Set(['io.safetensors', 'grad.safetensors']);

/** Does `dir` look like a CLIP fixture folder? (io.safetensors with CLIP's feature and token tensors) */
export function detect(dir: string): boolean {
  const io = join(dir, 'io.safetensors');
  if (!existsSync(io)) return false;
  try {
    const t = readSafetensors(io).tensors;
    return t.has('image_features') && t.has('text_features') && t.has('text_tokens');
  } catch {
    return false;
  }
}

function f32(t: TensorData | undefined, name: string): Float32Array {
  if (!t) throw new Error(`CLIP verify: fixture tensor '${name}' is missing`);
  return toFloat32Array(t);
}
function i32(t: TensorData | undefined, name: string): Int32Array {
  if (!t) throw new Error(`CLIP verify: fixture tensor '${name}' is missing`);
  return t.data instanceof Int32Array ? t.data : Int32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

/** Text heads from the fixture's recorded constructor arguments (they are not in the weights). */
function headsFromMetadata(meta: Record<string, string>): number | undefined {
  if (!meta.config) return undefined;
  const h = (JSON.parse(meta.config) as Record<string, unknown>).transformer_heads;
  return typeof h === 'number' ? h : undefined;
}

const missingLine = (name: string, why: string): CompareLine => ({ name, maxAbs: NaN, maxRel: NaN, pass: false, rule: why });

export async function verify(dir: string): Promise<CompareLine[]> {
  const ioFile = readSafetensors(join(dir, 'io.safetensors'));
  const io = ioFile.tensors;
  const files = readdirSync(dir).filter((f) => WEIGHT_FILE.test(f) && !NOT_WEIGHTS.has(f)).sort();
  if (!files.length) throw new Error(`CLIP verify: no weight file (*.pt, *.safetensors) in ${dir}`);
  // text heads: recorded in io.safetensors' metadata, else in a safetensors weight file's
  let transformerHeads = headsFromMetadata(ioFile.metadata);
  for (const f of files) if (transformerHeads === undefined && f.endsWith('.safetensors')) transformerHeads = headsFromMetadata(readSafetensors(join(dir, f)).metadata);

  const lines: CompareLine[] = [];
  const models: { file: string; model: ClipModel }[] = [];
  for (const file of files) {
    const model = ClipModel.load(join(dir, file), { transformerHeads });
    models.push({ file, model });
    lines.push(...await verifyForward(file, model, io));
  }
  // the files are encodings of the same values: every weight must be bit-identical
  const [first, ...others] = models;
  for (const { file, model } of others) {
    let n = 0; let differ = 0; let maxAbs = 0;
    for (const [k, w] of first.model.weights) {
      const v = model.weights.get(k);
      if (!v || v.data.length !== w.data.length) { differ += w.data.length; maxAbs = Infinity; continue; }
      n += w.data.length;
      for (let i = 0; i < w.data.length; i++) {
        if (!Object.is(w.data[i], v.data[i])) { differ++; maxAbs = Math.max(maxAbs, Math.abs(w.data[i] - v.data[i])); }
      }
    }
    lines.push({ name: `${file} weights == ${first.file} weights (${n} values)`, maxAbs, maxRel: maxAbs, pass: differ === 0, rule: `bit-identical (${differ} differ)` });
  }

  const gradPath = join(dir, 'grad.safetensors');
  if (existsSync(gradPath)) lines.push(...await verifyGrad(first.model, readSafetensors(gradPath)));
  lines.push(...await verifyTokenizer(dir));
  return lines;
}

async function verifyForward(file: string, model: ClipModel, io: Map<string, TensorData>): Promise<CompareLine[]> {
  const c = model.config;
  const image = io.get('image'); const tokens = io.get('text_tokens');
  if (!image || !tokens) throw new Error("CLIP verify: io.safetensors needs 'image' and 'text_tokens'");
  const [Nt] = tokens.shape;
  const g = new G.Graph('clip-verify');
  const p = model.params(g);
  const taps: Taps = {};
  // the fixture's own image size (the weights fix only resolution // patch)
  const img = encodeImage(p, c, g.input('image', image.shape), taps);
  const txt = encodeText(p, c, g.input('tokens', [Nt, c.contextLength], 'int32'), taps);
  const { logitsPerImage, logitsPerText } = clipLogits(p, img, txt);
  const outs: Record<string, Tensor> = { image_features: img, text_features: txt, logits_per_image: logitsPerImage, logits_per_text: logitsPerText };
  for (const [k, t] of Object.entries(taps)) outs[`act.${k}`] = t;
  const r = await (await compile(outs, { name: 'clip-verify' })).run({ image: f32(image, 'image'), tokens: model.tokenFeed(i32(tokens, 'text_tokens')) });

  const lines: CompareLine[] = [];
  for (const [name, ref] of io) {
    if (name === 'image' || name === 'text_tokens') continue;
    const got = r[name];
    if (!got) { lines.push(missingLine(`${file}: ${name}`, 'no such output in this port')); continue; }
    if (got.shape.join(',') !== ref.shape.join(',')) { lines.push(missingLine(`${file}: ${name}`, `shape [${got.shape}] vs fixture [${ref.shape}]`)); continue; }
    lines.push(compare(`${file}: ${name}`, got.data as Float32Array, toFloat32Array(ref), FORWARD));
  }
  return lines;
}

async function verifyGrad(model: ClipModel, file: { tensors: Map<string, TensorData>; metadata: Record<string, string> }): Promise<CompareLine[]> {
  const t = file.tensors;
  const c = model.config;
  const lines: CompareLine[] = [];
  const check = (name: string, got: HostTensor | undefined, tol: { atol?: number; rtol?: number; relMax?: number }) => {
    const ref = t.get(name);
    if (!ref) return;
    if (!got) { lines.push(missingLine(name, 'not computed')); return; }
    lines.push(compare(name, got.data as Float32Array, toFloat32Array(ref), tol));
  };

  // image path: sum(cosine_similarity(encode_image(x), t, dim=1)), d/dx
  if (t.has('image.x')) {
    const x = t.get('image.x')!; const target = t.get('image.t');
    const g = new G.Graph('clip-grad-image');
    const xi = g.input('x', x.shape);
    const features = encodeImage(model.params(g), c, xi);
    const cos = G.cosineSimilarity(features, g.constant(f32(target, 'image.t'), target!.shape), 1);
    const loss = G.reshape(G.reduceSum(cos), [1]);
    const [gx] = G.grad(loss, [xi]);
    const r = await (await compile({ features, cos, loss, gx })).run({ x: f32(x, 'image.x') });
    check('image.features', r.features, FORWARD);
    check('image.cos', r.cos, FORWARD);
    check('image.loss', r.loss, FORWARD);
    check('image.grad.x', r.gx, GRADIENT);
  }

  // text path: sum(encode_text(tokens) * R), d/d token_embedding.weight (rows text.ids; all others exactly 0)
  if (t.has('text.tokens')) {
    const tokens = t.get('text.tokens')!; const R = t.get('text.R')!;
    const ids = i32(t.get('text.ids'), 'text.ids');
    const g = new G.Graph('clip-grad-text');
    const p = model.params(g, { inputs: ['token_embedding.weight'] });
    const tok = g.input('tokens', tokens.shape, 'int32');
    const features = encodeText(p, c, tok);
    const loss = G.reshape(G.reduceSum(G.mul(features, g.constant(f32(R, 'text.R'), R.shape))), [1]);
    const emb = p('token_embedding.weight', [c.vocabSize, c.transformerWidth]);
    const [gE] = G.grad(loss, [emb]);
    const r = await (await compile({ features, loss, gE })).run({ tokens: model.tokenFeed(i32(tokens, 'text.tokens')), 'token_embedding.weight': model.weights.get('token_embedding.weight')!.data });
    check('text.features', r.features, FORWARD);
    check('text.loss', r.loss, FORWARD);
    const W = c.transformerWidth;
    const full = r.gE.data as Float32Array;
    const rows = new Float32Array(ids.length * W);
    ids.forEach((id, i) => rows.set(full.subarray(id * W, (id + 1) * W), i * W));
    check('text.grad.token_embedding.weight_rows', { data: rows, shape: [ids.length, W] }, GRADIENT);
    // every row not in text.ids must be exactly zero (PyTorch's embedding backward writes nothing there)
    const listed = new Set(ids);
    let nonzero = 0; let maxAbs = 0;
    for (let v = 0; v < c.vocabSize; v++) {
      if (listed.has(v)) continue;
      for (let j = 0; j < W; j++) { const a = Math.abs(full[v * W + j]); if (a !== 0) { nonzero++; maxAbs = Math.max(maxAbs, a); } }
    }
    lines.push({ name: 'text.grad.token_embedding.weight (rows not in text.ids)', maxAbs, maxRel: maxAbs, pass: nonzero === 0, rule: `exactly 0 (${nonzero} nonzero)` });
  }

  // HairCLIP CLIPLoss: mean(1 - model(AvgPool(S/32)(Upsample(7)(x)), tokens)[0] / 100), x = (u8 - 128) / 128
  if (t.has('hairclip_clip_loss.x_u8')) {
    const u8 = t.get('hairclip_clip_loss.x_u8')!; const tokens = t.get('hairclip_clip_loss.tokens')!;
    const x = Float32Array.from(u8.data as Uint8Array, (v) => (v - 128) / 128);
    const g = new G.Graph('clip-grad-hairclip');
    const p = model.params(g);
    const xi = g.input('x', u8.shape);
    const imageFeatures = encodeImage(p, c, clipLossResize(xi));
    const textFeatures = encodeText(p, c, g.input('tokens', tokens.shape, 'int32'));
    const { logitsPerImage } = clipLogits(p, imageFeatures, textFeatures);
    const similarity = G.sub(1, G.div(logitsPerImage, 100));
    const loss = G.reshape(G.reduceMean(similarity), [1]);
    const [gx] = G.grad(loss, [xi]);
    const r = await (await compile({ imageFeatures, textFeatures, logitsPerImage, similarity, loss, gx })).run({ x, tokens: model.tokenFeed(i32(tokens, 'hairclip_clip_loss.tokens')) });
    check('hairclip_clip_loss.image_features', r.imageFeatures, FORWARD);
    check('hairclip_clip_loss.text_features', r.textFeatures, FORWARD);
    check('hairclip_clip_loss.logits_per_image', r.logitsPerImage, FORWARD);
    check('hairclip_clip_loss.similarity', r.similarity, FORWARD);
    check('hairclip_clip_loss.loss', r.loss, FORWARD);
    check('hairclip_clip_loss.grad.x', r.gx, GRADIENT);
  }

  // every stored output must have been compared
  const inputs = /^(image\.(x|t)|text\.(tokens|R|ids)|hairclip_clip_loss\.(x_u8|tokens))$/;
  const done = new Set(lines.map((l) => l.name));
  for (const name of t.keys()) if (!inputs.test(name) && !done.has(name)) lines.push(missingLine(name, 'not compared by this port'));
  return lines;
}

/**
 * tokens.json against the tokenizer (tokenizer.ts), with the folder's own vocabulary when it has
 * one: clip.tokenize rows (one line over all prompts) and SimpleTokenizer.encode ids.
 */
async function verifyTokenizer(dir: string): Promise<CompareLine[]> {
  const path = join(dir, 'tokens.json');
  if (!existsSync(path)) return [];
  const fix = JSON.parse(readFileSync(path, 'utf8')) as { context_length: number; items: { text: string; truncate: boolean; ids: number[]; bpe: number[] }[] };
  const vocab = join(dir, 'bpe_simple_vocab_16e6.txt.gz');
  const tokenizer = existsSync(vocab) ? SimpleTokenizer.fromFile(vocab) : defaultTokenizer();
  const lines: CompareLine[] = [];
  for (const [what, field] of [['clip.tokenize ids', 'ids'], ['SimpleTokenizer.encode bpe', 'bpe']] as const) {
    const got: number[] = []; const ref: number[] = []; const bad: string[] = [];
    for (const item of fix.items) {
      const want = item[field];
      let ids: number[] = [];
      let why = '';
      try {
        ids = field === 'ids' ? [...tokenize(item.text, fix.context_length, item.truncate, { tokenizer }).data] : tokenizer.encode(item.text);
      } catch (e) {
        why = ` (${(e as Error).message})`;
      }
      if (why || ids.length !== want.length || ids.some((v, i) => v !== want[i])) bad.push(JSON.stringify(item.text) + why);
      want.forEach((v, i) => { got.push(ids[i] ?? -1); ref.push(v); });
    }
    const l = compare(`tokens.json: ${what} (${fix.items.length} prompts)`, got, ref, { atol: 0, rtol: 0 });
    lines.push({ ...l, pass: bad.length === 0, rule: bad.length ? `exact; ${bad.length} prompts differ: ${bad.slice(0, 3).join(', ')}` : 'exact, every prompt' });
  }
  return lines;
}
