import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { readSafetensors, serializeSafetensors } from '../../io/safetensors.ts';
import { loadStateDict } from '../../io/weights.ts';
import { selectPrefix } from '../../io/torch.ts';
import { f32, toFloat32Array, type TensorData } from '../../io/tensor.ts';
import { compare, formatLine } from '../../verify/compare.ts';
import { validateStateDict } from '../common.ts';
import { editStateDict, fixturePath, officialKeys, shapeOnlyStateDict, specAsKeys } from '../testing.ts';
import {
  Synthesis, derived, generatorConfig, generatorFromStateDict, generatorSpec, inferGeneratorConfig, loadGenerator, meanLatent,
  mappingSession, noiseResolution, randomGenerator, synthesisFlops,
} from './stylegan2.ts';
import { detect, injectIndexOf, truncationOf, verify } from './verify.ts';

const DIR = fixturePath('stylegan2');
const io = readSafetensors(fixturePath('stylegan2', 'io.safetensors'));
const gradFile = readSafetensors(fixturePath('stylegan2', 'grad.safetensors'));
const fixtureConfig = JSON.parse(io.metadata.config) as { size: number; style_dim: number; n_mlp: number; channels: number; n_latent: number; num_layers: number };
const tio = (n: string) => { const t = io.tensors.get(n); assert.ok(t, n); return t; };
const gEma = () => selectPrefix(loadStateDict(fixturePath('stylegan2', 'tiny_g.pt')).tensors, 'g_ema.');

/** Inputs of the fixture files (everything else is an output that verify() must compare). */
const IO_INPUTS = /^(z|z_b|z_mean_samples|z_wplus_samples|noise_in\.\d+)$/;
const GRAD_INPUTS = /^(wplus|R|z|truncation_latent|noises\.noise_\d+)$/;

test('stylegan2: verify() matches every output of io.safetensors and grad.safetensors', async (t) => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  for (const l of lines) t.diagnostic(formatLine(l));
  for (const l of lines) assert.ok(l.pass, formatLine(l));
  const names = new Set(lines.map((l) => l.name));
  for (const k of io.tensors.keys()) if (!IO_INPUTS.test(k)) assert.ok(names.has(`io.${k}`), `io.safetensors '${k}' is not compared`);
  for (const k of gradFile.tensors.keys()) {
    if (!GRAD_INPUTS.test(k)) assert.ok(names.has(k.startsWith('grad.') ? k : `grad.${k}`), `grad.safetensors '${k}' is not compared`);
  }
});

test('stylegan2: inject index and truncation psi are read off the fixture latents (README: 3, 0.7)', () => {
  const L = fixtureConfig.n_latent; const D = fixtureConfig.style_dim;
  const w = toFloat32Array(tio('w')); const B = w.length / D;
  assert.equal(injectIndexOf(toFloat32Array(tio('latent_mix')), w, B, L, D), 3);
  assert.equal(truncationOf(toFloat32Array(tio('latent_trunc')), w, toFloat32Array(tio('mean_latent')), B, L, D), 0.7);
  // synthetic latents with another index / psi; a latent without a mix has no index
  const ml = new Float32Array(D).map((_, d) => 0.1 * d);
  const zb = new Float32Array(B * D).map((_, i) => Math.cos(i) + 2);
  const mix = new Float32Array(B * L * D); const trunc = new Float32Array(B * L * D); const plain = new Float32Array(B * L * D);
  for (let b = 0; b < B; b++) for (let r = 0; r < L; r++) for (let d = 0; d < D; d++) {
    const i = (b * L + r) * D + d;
    mix[i] = r < 5 ? w[b * D + d] : zb[b * D + d];
    trunc[i] = ml[d] + 0.5 * (w[b * D + d] - ml[d]);
    plain[i] = w[b * D + d];
  }
  assert.equal(injectIndexOf(mix, w, B, L, D), 5);
  assert.equal(truncationOf(trunc, w, ml, B, L, D), 0.5);
  assert.equal(injectIndexOf(plain, w, B, L, D), undefined);
});

test('stylegan2: detect() recognises only a stylegan2 fixture folder', () => {
  assert.ok(detect(DIR));
  assert.equal(detect(fixturePath('arcface')), false);
  assert.equal(detect(fixturePath('ops')), false);
});

test('stylegan2: the tiny config is inferred from the keys (README: size 32, every resolution 32 channels)', () => {
  const g = loadGenerator(fixturePath('stylegan2', 'tiny_g.pt'));
  const c = g.config;
  assert.equal(c.size, fixtureConfig.size);
  assert.equal(c.styleDim, fixtureConfig.style_dim);
  assert.equal(c.nMlp, fixtureConfig.n_mlp);
  for (let r = 4; r <= c.size; r *= 2) assert.equal(c.channels[r], fixtureConfig.channels, `channels at ${r}`);
  assert.equal(g.nLatent, fixtureConfig.n_latent);
  assert.equal(g.numLayers, fixtureConfig.num_layers);
  assert.equal(c.blurSize, 4);
  // latent_avg of the checkpoint is the fixture's mean latent
  assert.deepEqual(g.latentAvg, toFloat32Array(tio('mean_latent')));
});

test('stylegan2: the legacy (non-zip) checkpoint gives the same generator', async () => {
  const zip = loadGenerator(fixturePath('stylegan2', 'tiny_g.pt'));
  const legacy = loadGenerator(fixturePath('stylegan2', 'tiny_g_legacy.pt'));
  assert.deepEqual(legacy.config, zip.config);
  for (const s of generatorSpec(zip.config)) assert.deepEqual(legacy.P.data(s.key), zip.P.data(s.key), s.key);
  assert.deepEqual(legacy.latentAvg, zip.latentAvg);
});

test('stylegan2: other checkpoint layouts — bare state dict, a prefix (decoder.*), training checkpoints with g/d', () => {
  const sd = gEma();
  const asFile = (m: Map<string, TensorData>) => serializeSafetensors(m);
  // bare state dict: no latent_avg
  const bare = loadGenerator(asFile(sd));
  assert.equal(bare.latentAvg, null);
  assert.equal(bare.config.size, fixtureConfig.size);
  // e4e / HairCLIP keep the generator under decoder.* beside other networks
  const pSp = new Map<string, TensorData>([['encoder.conv.weight', f32([2, 2])]]);
  for (const [k, v] of sd) pSp.set(`decoder.${k}`, v);
  assert.equal(loadGenerator(asFile(pSp), { prefix: 'decoder.' }).config.nMlp, fixtureConfig.n_mlp);
  // a rosinality training checkpoint: g, d, g_ema (only g_ema is read)
  const train = new Map<string, TensorData>([['d.convs.0.0.weight', f32([1])], ['latent_avg', tio('mean_latent')]]);
  for (const [k, v] of sd) { train.set(`g_ema.${k}`, v); train.set(`g.${k}`, v); }
  const g = loadGenerator(asFile(train));
  assert.deepEqual(g.latentAvg, toFloat32Array(tio('mean_latent')).slice());
  assert.throws(() => loadGenerator(asFile(train), { prefix: 'generator.' }), /no tensors under 'generator\.'/);
});

test('stylegan2: state-dict validation names missing, unexpected and mis-shaped keys', () => {
  const sd = gEma();
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { drop: ['convs.3.noise.weight'] })), /missing 'convs\.3\.noise\.weight'/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { drop: ['to_rgbs.1.upsample.kernel'] })), /missing 'to_rgbs\.1\.upsample\.kernel'/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { set: { 'convs.1.extra': f32([2]) } })), /unexpected key 'convs\.1\.extra'/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { set: { 'noises.noise_9': f32([1, 1, 64, 64]) } })), /unexpected key 'noises\.noise_9'/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { set: { 'to_rgb1.conv.weight': f32([1, 3, 31, 1, 1]) } })),
    /'to_rgb1\.conv\.weight' has shape \[1, 3, 31, 1, 1\], the architecture needs \[1, 3, 32, 1, 1\]/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { set: { 'conv1.activate.bias': f32([31]) } })), /'conv1\.activate\.bias' has shape \[31\]/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { drop: ['input.input'] })), /missing 'input\.input'/);
  assert.throws(() => generatorFromStateDict(editStateDict(sd, { drop: ['style.1.weight', 'style.1.bias', 'style.2.weight', 'style.2.bias'] })), /missing 'style\.1\.weight'/);
  assert.throws(() => generatorFromStateDict(sd, { latentAvg: new Float32Array(3) }), /latent_avg has 3 values, style_dim is 64/);
});

test('stylegan2: the real-size builder gives exactly official_1024_keys.json (keys, shapes, order), also from random init', () => {
  const official = officialKeys('stylegan2', 'official_1024_keys.json');
  const c = generatorConfig({ size: 1024, styleDim: 512, nMlp: 8, channelMultiplier: 2 });
  assert.deepEqual(specAsKeys(generatorSpec(c)), official);
  const json = JSON.parse(readFileSync(fixturePath('stylegan2', 'official_1024_keys.json'), 'utf8')) as { num_elements: number; derived: { n_latent: number; 'num_layers(noise buffers)': number; channels: Record<string, number> } };
  assert.equal(generatorSpec(c).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0), json.num_elements);
  assert.equal(derived(c).nLatent, json.derived.n_latent);
  assert.equal(derived(c).numLayers, json.derived['num_layers(noise buffers)']);
  assert.deepEqual(Object.fromEntries(Object.entries(c.channels).map(([r, ch]) => [String(r), ch])), json.derived.channels);
  // inference from the official layout gives the config back, and it validates
  const shapes = shapeOnlyStateDict(official);
  assert.deepEqual(inferGeneratorConfig(shapes), c);
  validateStateDict('official', shapes, generatorSpec(c));
  // the random-init generator holds exactly those tensors, with the constructor's values where they are fixed
  const g = randomGenerator(c, 7);
  const sd = (g.P as unknown as { sd: Map<string, TensorData> }).sd;
  assert.deepEqual([...sd.entries()].map(([k, t]) => ({ key: k, shape: [...t.shape], dtype: 'F32' })), official);
  validateStateDict('random', sd, generatorSpec(c));
  assert.ok(g.P.data('conv1.conv.modulation.bias').every((v) => v === 1));
  assert.ok(g.P.data('convs.3.noise.weight').every((v) => v === 0));
  const k = g.P.data('convs.0.conv.blur.kernel');
  assert.ok(Math.abs(k.reduce((a, b) => a + b, 0) - 4) < 1e-6, 'Blur(upsample_factor=2) kernel sums to factor^2');
  assert.equal(noiseResolution(16), 1024);
});

test('stylegan2: counted synthesis FLOPs at 1024 agree with the reference (≈74.3 GMAC of convs, formats.md §7)', () => {
  const f = synthesisFlops(generatorConfig());
  assert.ok(Math.abs(f.convs / 2 / 1e9 - 74.3) < 0.4, `conv GMAC ${f.convs / 2e9}`);
  assert.ok(f.total > f.convs && f.total < 1.02 * f.convs);
});

test('stylegan2: Synthesis sessions — forward with buffers / given noise, VJP to w+ and noise, seeded noise', async (t) => {
  const gen = loadGenerator(fixturePath('stylegan2', 'tiny_g.pt'));
  const wplus = toFloat32Array(tio('wplus'));
  const batch = tio('wplus').shape[0];
  const s = new Synthesis(gen, batch, { noiseGrad: true });
  const check = (name: string, got: ArrayLike<number>, ref: TensorData, tol: { atol?: number; rtol?: number; relMax?: number }) => {
    const l = compare(name, got as Float32Array, toFloat32Array(ref), tol);
    t.diagnostic(formatLine(l));
    assert.ok(l.pass, formatLine(l));
  };
  check('img_wplus', (await s.forward(wplus)).data as Float32Array, tio('img_wplus'), { atol: 5e-5, rtol: 0 });
  const given = gen.noiseShapes().map((_, k) => toFloat32Array(tio(`noise_in.${k}`)));
  check('img_wplus_noise', (await s.forward(wplus, given)).data as Float32Array, tio('img_wplus_noise'), { atol: 5e-5, rtol: 0 });
  // the VJP session: d sum(G(w+) * R) / d w+ and / d noise_k (the buffers), as grad.safetensors
  const gref = (n: string) => { const x = gradFile.tensors.get(n); assert.ok(x, n); return x; };
  const r = await s.vjp(wplus, toFloat32Array(gref('R')));
  check('vjp image', r.image.data as Float32Array, gref('img_wplus'), { atol: 5e-5, rtol: 0 });
  check('grad.wplus', r.grads.wplus.data as Float32Array, gref('grad.wplus'), { relMax: 1e-5 });
  for (let k = 0; k < gen.numLayers; k++) check(`grad.noises.noise_${k}`, r.grads[`noise_${k}`].data as Float32Array, gref(`grad.noises.noise_${k}`), { relMax: 1e-5 });
  // seeded random noise: reproducible, and different from the buffers
  const a = (await s.forward(wplus, { seed: 5 })).data as Float32Array;
  const b = (await s.forward(wplus, { seed: 5 })).data as Float32Array;
  const c = (await s.forward(wplus, { seed: 6 })).data as Float32Array;
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // per-sample noise maps: [batch, 1, r, r]
  const ps = new Synthesis(gen, batch, { perSampleNoise: true });
  assert.deepEqual(ps.pair.inputs.find((i) => i.name === 'noise_0')!.shape, [batch, 1, 4, 4]);
  assert.throws(() => ps.noiseFeeds('buffers'), /shared by the batch/);
  await assert.rejects(s.forward(new Float32Array(3)), /w\+ has 3 values/);
  assert.throws(() => s.noiseFeeds(given.slice(1)), /noise maps needed/);
});

test('stylegan2: mean latent is the mapping averaged over seeded z (deterministic), forward() options are checked', async () => {
  const gen = loadGenerator(fixturePath('stylegan2', 'tiny_g.pt'));
  const D = gen.config.styleDim;
  const m1 = await meanLatent(gen, 100, 3, 32);
  assert.deepEqual(await meanLatent(gen, 100, 3, 32), m1);
  assert.notDeepEqual(await meanLatent(gen, 100, 4, 32), m1);
  // the same z through one mapping batch gives the same mean
  const { Rng } = await import('../../train/rng.ts');
  const z = new Rng(3).normals(100 * D);
  const w = await (await mappingSession(gen, 100))(z);
  const direct = new Float32Array(D);
  for (let j = 0; j < D; j++) { let s = 0; for (let i = 0; i < 100; i++) s += w[i * D + j]; direct[j] = s / 100; }
  const l = compare('mean latent', m1, direct, { atol: 1e-6, rtol: 0 });
  assert.ok(l.pass, formatLine(l));

  const g = new G.Graph();
  const zt = g.input('z', [2, D]);
  const noise = gen.noiseConstants(g);
  assert.throws(() => gen.forward([zt, zt], { noise }), /style mixing needs injectIndex in \[1, 7\]/);
  assert.throws(() => gen.forward([zt], { truncation: 0.5, noise }), /needs a truncationLatent/);
  assert.throws(() => gen.synthesis(g.input('bad_wplus', [2, 5, D]), noise), /w\+ must be \[N, 8, 64\]/);
  assert.throws(() => gen.forward([zt], { noise: noise.slice(1) }), /7 noise tensors needed/);
  // w given as [N, D] with input_is_latent repeats it to every layer
  const wi = g.input('w', [2, D]);
  const { latent } = gen.forward([wi], { inputIsLatent: true, noise });
  const wv = toFloat32Array(tio('w'));
  const r = await evaluate({ latent }, { w: wv });
  check2(r.latent.data as Float32Array, toFloat32Array(tio('latent_z')));
});

function check2(got: Float32Array, ref: Float32Array) {
  const l = compare('latent from w', got, ref, { atol: 2e-5, rtol: 0 });
  assert.ok(l.pass, formatLine(l));
}
