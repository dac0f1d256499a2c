import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSafetensors } from '../../io/safetensors.ts';
import { toFloat32Array, type TensorData } from '../../io/tensor.ts';
import { compare, formatLine } from '../../verify/compare.ts';
import { fixturePath } from '../testing.ts';
import { ClipModel } from './clip.ts';
import { detect, verify } from './verify.ts';

const DIR = fixturePath('clip');
const io = readSafetensors(fixturePath('clip', 'io.safetensors'));
const grad = readSafetensors(fixturePath('clip', 'grad.safetensors')).tensors;
const heads = (JSON.parse(io.metadata.config) as { transformer_heads: number }).transformer_heads;
const get = (m: Map<string, TensorData>, k: string) => { const t = m.get(k); assert.ok(t, k); return t; };

test('clip: verify() passes on every fixture tensor, for all three weight files', async () => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  for (const l of lines) assert.ok(l.pass, formatLine(l));
  // every output tensor of io.safetensors, for each of the three files, plus two weight-identity lines
  const ioOutputs = [...io.tensors.keys()].filter((k) => k !== 'image' && k !== 'text_tokens');
  for (const f of ['tiny_clip_jit.pt', 'tiny_clip_state.pt', 'tiny_clip.safetensors']) {
    for (const k of ioOutputs) assert.ok(lines.some((l) => l.name === `${f}: ${k}`), `${f}: ${k} compared`);
  }
  assert.equal(lines.filter((l) => l.name.includes(' weights == ')).length, 2);
  // and every output of grad.safetensors
  const gradInputs = /^(image\.(x|t)|text\.(tokens|R|ids)|hairclip_clip_loss\.(x_u8|tokens))$/;
  for (const k of grad.keys()) if (!gradInputs.test(k)) assert.ok(lines.some((l) => l.name === k), `${k} compared`);
});

test('clip: ClipModel helpers (encodeImage, encodeText, logits) match the fixture', async () => {
  const m = ClipModel.load(fixturePath('clip', 'tiny_clip_jit.pt'), { transformerHeads: heads });
  const image = toFloat32Array(get(io.tensors, 'image'));
  const tokens = get(io.tensors, 'text_tokens').data as Int32Array;
  const fi = await m.encodeImage(image);
  assert.deepEqual(fi.shape, get(io.tensors, 'image_features').shape);
  assert.ok(compare('image_features', fi.data as Float32Array, toFloat32Array(get(io.tensors, 'image_features')), { atol: 1e-4, rtol: 1e-4 }).pass);
  // token rows as plain arrays work the same
  const L = m.config.contextLength;
  const rows = Array.from({ length: tokens.length / L }, (_, i) => [...tokens.subarray(i * L, (i + 1) * L)]);
  const ft = await m.encodeText(rows);
  assert.ok(compare('text_features', ft.data as Float32Array, toFloat32Array(get(io.tensors, 'text_features')), { atol: 1e-4, rtol: 1e-4 }).pass);
  // and from the texts themselves, through the tokenizer
  const fromTexts = await m.encodeTexts(JSON.parse(io.metadata.texts) as string[]);
  assert.deepEqual([...(fromTexts.data as Float32Array)], [...(ft.data as Float32Array)]);
  const lg = await m.logits(image, tokens);
  assert.ok(compare('logits_per_image', lg.logitsPerImage.data as Float32Array, toFloat32Array(get(io.tensors, 'logits_per_image')), { atol: 1e-4, rtol: 1e-4 }).pass);
  assert.ok(compare('logits_per_text', lg.logitsPerText.data as Float32Array, toFloat32Array(get(io.tensors, 'logits_per_text')), { atol: 1e-4, rtol: 1e-4 }).pass);
  // bad ids are refused before they reach ONNX Runtime
  const bad = tokens.slice(0, L); bad[3] = m.config.vocabSize;
  await assert.rejects(m.encodeText(bad), /token id \d+ at row 0, position 3 is outside the vocabulary/);
  await assert.rejects(m.encodeText([[1, 2, 3]]), /token row 0 has 3 ids, expected \d+/);
  await assert.rejects(m.encodeImage(new Float32Array(10)), /not a whole number of items/);
});

/** d/df of sum_b (f_b . u_b) / (|f_b| |u_b|), as PyTorch's cosine_similarity (norms clamped at 1e-8) */
function cosineCotangent(f: Float32Array, u: Float32Array, dim: number, scale = 1): Float32Array {
  const out = new Float32Array(f.length);
  for (let b = 0; b < f.length / dim; b++) {
    const fb = f.subarray(b * dim, (b + 1) * dim); const ub = u.subarray(b * dim, (b + 1) * dim);
    let ff = 0; let uu = 0; let fu = 0;
    for (let i = 0; i < dim; i++) { ff += fb[i] * fb[i]; uu += ub[i] * ub[i]; fu += fb[i] * ub[i]; }
    const nf = Math.max(Math.sqrt(ff), 1e-8); const nu = Math.max(Math.sqrt(uu), 1e-8);
    for (let i = 0; i < dim; i++) out[b * dim + i] = scale * (ub[i] / (nf * nu) - (fu * fb[i]) / (nf * nf * nf * nu));
  }
  return out;
}

test('clip: the image VJP pair chains to the fixture gradients (cosine loss, HairCLIP CLIPLoss at 256)', async () => {
  const m = ClipModel.load(fixturePath('clip', 'tiny_clip_state.pt'), { transformerHeads: heads });
  const E = m.config.embedDim;

  // image path: loss = sum(cos(encode_image(x), t))
  const x = toFloat32Array(get(grad, 'image.x'));
  const pair = m.imageVjp(get(grad, 'image.x').shape[0]);
  const [features] = await pair.forward([x]);
  assert.ok(compare('image.features', features.data as Float32Array, toFloat32Array(get(grad, 'image.features')), { atol: 1e-4, rtol: 1e-4 }).pass);
  const cot = cosineCotangent(features.data as Float32Array, toFloat32Array(get(grad, 'image.t')), E);
  const [gx] = await pair.vjp([x], [cot]);
  const l1 = compare('image.grad.x', gx!.data as Float32Array, toFloat32Array(get(grad, 'image.grad.x')), { relMax: 1e-4 });
  assert.ok(l1.pass, formatLine(l1));

  // HairCLIP CLIPLoss: mean(1 - exp(logit_scale) cos(E_I(pool(x)), E_T(t)) / 100), x in [-1, 1] at 256
  const u8 = get(grad, 'hairclip_clip_loss.x_u8');
  const xh = Float32Array.from(u8.data as Uint8Array, (v) => (v - 128) / 128);
  const [N, , S] = u8.shape;
  const hp = m.imageVjp(N, { preprocess: 'clip-loss', size: S });
  const [hf] = await hp.forward([xh]);
  assert.ok(compare('hairclip image_features', hf.data as Float32Array, toFloat32Array(get(grad, 'hairclip_clip_loss.image_features')), { atol: 1e-4, rtol: 1e-4 }).pass);
  const tf = await m.encodeText(get(grad, 'hairclip_clip_loss.tokens').data as Int32Array);
  const scale = Math.exp(m.weights.get('logit_scale')!.data[0]);
  const hcot = cosineCotangent(hf.data as Float32Array, tf.data as Float32Array, E, -scale / 100 / N);
  const [hgx] = await hp.vjp([xh], [hcot]);
  const l2 = compare('hairclip_clip_loss.grad.x', hgx!.data as Float32Array, toFloat32Array(get(grad, 'hairclip_clip_loss.grad.x')), { relMax: 1e-4 });
  assert.ok(l2.pass, formatLine(l2));
});

test('clip: ViT-B/32 at real size runs (image, text, CLIPLoss VJP at 1024 against a finite difference)', { skip: !process.env.CLIPMAPPER_SLOW && 'real-size model: set CLIPMAPPER_SLOW=1 (npm run test:slow)' }, async () => {
  const { VIT_B_32, clipStateSpec } = await import('./model.ts');
  let s = 12345;
  const rand = () => { s = (s * 1103515245 + 12345) >>> 0; return s / 2 ** 32 - 0.5; };
  // init scales as CLIP.initialize_parameters (roughly): keeps activations O(1) through 12 blocks
  const weights = new Map(clipStateSpec(VIT_B_32).map(([k, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const std = k.includes('.ln_') || k.includes('ln_final') || k.endsWith('bias') ? 0.02 : 1 / Math.sqrt(fanIn) / 3;
    const data = Float32Array.from({ length: n }, () => rand() * std * Math.sqrt(12));
    if (/(ln_\d|ln_pre|ln_post|ln_final)\.weight$/.test(k)) data.fill(1);
    return [k, { shape, data }];
  }));
  weights.get('logit_scale')!.data[0] = Math.log(100);
  const m = new ClipModel(VIT_B_32, weights);
  const img = await m.encodeImage(Float32Array.from({ length: 3 * 224 * 224 }, rand));
  assert.deepEqual(img.shape, [1, 512]);
  assert.ok((img.data as Float32Array).every(Number.isFinite));
  const txt = await m.encodeTexts('afro hairstyle');
  assert.deepEqual(txt.shape, [1, 512]);
  assert.ok((txt.data as Float32Array).every(Number.isFinite));

  const pair = m.imageVjp(1, { preprocess: 'clip-loss', size: 1024 });
  const x = Float32Array.from({ length: 3 * 1024 * 1024 }, () => rand() * 1.5);
  const c = Float32Array.from({ length: 512 }, rand);
  const [gx] = await pair.vjp([x], [c]);
  const v = Float32Array.from({ length: x.length }, rand);
  const h = 5e-2; // float32 round-off of the two forwards ~ 1e-4 / h relative; truncation ~ h^2
  const at = async (sgn: number) => (await pair.forward([x.map((xi, i) => xi + sgn * h * v[i])]))[0].data as Float32Array;
  const [fp, fm] = [await at(1), await at(-1)];
  let fd = 0; for (let i = 0; i < 512; i++) fd += (fp[i] - fm[i]) * c[i] / (2 * h);
  let an = 0; const g = gx!.data as Float32Array; for (let i = 0; i < g.length; i++) an += g[i] * v[i];
  assert.ok(Math.abs(fd - an) <= 1e-2 * Math.abs(an) + 1e-4, `directional derivative: analytic ${an}, finite difference ${fd}`);
});
