// `clipmapper verify` for a stylegan2/ fixture folder: the mapping network, the mean latent, every
// image of io.safetensors (w+, explicit noise, z, truncation, style mixing) with its latent and the
// recorded intermediate activations, and the gradients of grad.safetensors (w.r.t. w+ and the
// noise buffers; w.r.t. z and the truncation latent through the mapping network).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { evaluate, type HostTensor } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import { fixtureTensor, hostF32, readFixture, readmeAtol, suggestedAtol } from '../common.ts';
import { loadGenerator, type Generator } from './stylegan2.ts';

/**
 * io.safetensors carries no tolerance metadata: its README's "suggested atol" column is read when
 * the folder has one, else these values (that column for the published fixture).
 */
const IO_ATOL_DEFAULT: Record<string, number> = {
  w: 2e-5, w_get_latent: 2e-5, mean_latent: 5e-6, wplus: 2e-5,
  img_wplus: 5e-5, latent_wplus: 2e-5,
  'act_wplus.conv1': 5e-5, 'act_wplus.to_rgb1': 2e-5, 'act_wplus.convs.0': 5e-5, 'act_wplus.convs.1': 5e-5, 'act_wplus.to_rgbs.0': 2e-5,
  img_wplus_noise: 5e-5, img_z: 5e-5, latent_z: 2e-5, img_trunc: 5e-5, latent_trunc: 1e-5, img_mix: 5e-5, latent_mix: 2e-5,
};

/** Style-mixing index and truncation psi of the published fixture (its README), the last fallback. */
const DEFAULT_INJECT_INDEX = 3;
const DEFAULT_TRUNCATION = 0.7;

/** A number recorded in a fixture file's metadata, top-level or inside its `config` JSON. */
function metadataNumber(metadata: Record<string, string>, key: string): number | undefined {
  let v: unknown = metadata[key];
  if (v === undefined && metadata.config) {
    try { v = (JSON.parse(metadata.config) as Record<string, unknown>)[key]; } catch { /* not JSON */ }
  }
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The inject index of a style-mixing latent [B, L, D]: rows [0, k) are style(z) (= io `w` [B, D]),
 * rows [k, L) style(z_b). Undefined unless 1 <= k <= L-1 (not a style mix of two distinct styles).
 */
export function injectIndexOf(latentMix: Float32Array, w: Float32Array, B: number, L: number, D: number): number | undefined {
  const rowIsW = (b: number, r: number) => {
    for (let d = 0; d < D; d++) {
      const ref = w[b * D + d];
      if (Math.abs(latentMix[(b * L + r) * D + d] - ref) > 1e-5 * (1 + Math.abs(ref))) return false;
    }
    return true;
  };
  let k = 0;
  while (k < L && Array.from({ length: B }, (_, b) => b).every((b) => rowIsW(b, k))) k++;
  return k >= 1 && k <= L - 1 ? k : undefined;
}

/**
 * The truncation psi of a truncated latent [B, L, D] = ml + psi (w - ml): least squares over the
 * first row of every sample in float64, rounded to 1e-6. Undefined when w equals the mean latent.
 */
export function truncationOf(latentTrunc: Float32Array, w: Float32Array, ml: Float32Array, B: number, L: number, D: number): number | undefined {
  let num = 0; let den = 0;
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) {
      const a = w[b * D + d] - ml[d];
      num += a * (latentTrunc[b * L * D + d] - ml[d]); den += a * a;
    }
  }
  return den > 0 ? Math.round((num / den) * 1e6) / 1e6 : undefined;
}

/** psi of a loss description such as `sum(g([z], truncation=0.7, ...) * R)`. */
function truncationInText(s: string | undefined): number | undefined {
  const m = s ? /truncation\s*=\s*([0-9.eE+-]+)/.exec(s) : null;
  const n = m ? Number(m[1]) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** The generator checkpoint of a fixture folder (the zip file when both formats are there). */
function checkpointIn(dir: string): string | undefined {
  const pts = readdirSync(dir).filter((f) => /\.(pt|pth)$/i.test(f)).sort();
  return pts.find((f) => !/legacy/i.test(f)) ?? pts[0];
}

export function detect(dir: string): boolean {
  try {
    if (!checkpointIn(dir) || !existsSync(join(dir, 'io.safetensors'))) return false;
    const keys = readSafetensors(join(dir, 'io.safetensors')).tensors;
    return keys.has('img_wplus') && keys.has('wplus') && keys.has('z_mean_samples');
  } catch {
    return false;
  }
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ckpt = checkpointIn(dir);
  if (!ckpt) throw new Error(`verify stylegan2: no generator checkpoint (*.pt) in ${dir}`);
  const gen = loadGenerator(join(dir, ckpt));
  const io = await verifyIo(gen, dir);
  return [...io.lines, ...(await verifyGrad(gen, dir, io.truncation))];
}

async function verifyIo(gen: Generator, dir: string): Promise<{ lines: CompareLine[]; truncation: number }> {
  const io = readFixture(dir, 'io.safetensors');
  const t = (n: string) => fixtureTensor(io, n, 'io.safetensors');
  const lines: CompareLine[] = [];
  const IO_ATOL = { ...IO_ATOL_DEFAULT, ...readmeAtol(dir, 'io.safetensors') };
  // README column where listed; otherwise its pattern: 5e-5 for features and images, 2e-5 for RGB skips
  const atolOf = (n: string) => IO_ATOL[n] ?? (/to_rgb/.test(n) ? 2e-5 : 5e-5);
  const check = (r: Record<string, HostTensor>, names: string[]) => {
    for (const n of names) lines.push(compare(`io.${n}`, r[n].data as Float32Array, t(n).data as Float32Array, { atol: atolOf(n), rtol: 0 }));
  };
  const L = gen.nLatent; const D = gen.config.styleDim;

  // mapping: w = style(z) (= get_latent), the mean latent of 256 samples, w+ from 2*L samples
  {
    const g = new G.Graph('sg2-mapping');
    const z = g.input('z', t('z').shape);
    const zm = g.input('z_mean_samples', t('z_mean_samples').shape);
    const zw = g.input('z_wplus_samples', t('z_wplus_samples').shape);
    const w = gen.mapping(z);
    const outs: Record<string, Tensor> = {
      w, w_get_latent: G.identity(w),
      mean_latent: G.reduceMean(gen.mapping(zm), [0], true),
      wplus: G.reshape(gen.mapping(zw), [-1, L, D]),
    };
    const r = await evaluate(outs, { z: hostF32(t('z')), z_mean_samples: hostF32(t('z_mean_samples')), z_wplus_samples: hostF32(t('z_wplus_samples')) });
    check(r, Object.keys(outs));
  }

  // w+ input with the registered noise buffers, its latent and the hooked activations
  {
    const g = new G.Graph('sg2-wplus');
    const wp = g.input('wplus', t('wplus').shape);
    const taps = new Map<string, Tensor>();
    const { image, latent } = gen.forward([wp], { inputIsLatent: true, noise: gen.noiseConstants(g), taps });
    const outs: Record<string, Tensor> = { img_wplus: image, latent_wplus: G.identity(latent) };
    // every hooked module the file records (conv1, to_rgb1, convs.i, to_rgbs.j)
    for (const n of io.tensors.keys()) {
      if (!n.startsWith('act_wplus.')) continue;
      const tapped = taps.get(n.slice('act_wplus.'.length));
      if (!tapped) throw new Error(`verify stylegan2: io.safetensors records '${n}', which is not a module of this generator`);
      outs[n] = tapped;
    }
    check(await evaluate(outs, { wplus: hostF32(t('wplus')) }), Object.keys(outs));
  }

  // w+ with an explicit noise list
  {
    const g = new G.Graph('sg2-wplus-noise');
    const wp = g.input('wplus', t('wplus').shape);
    const noise = gen.noiseInputs(g);
    const { image } = gen.forward([wp], { inputIsLatent: true, noise });
    const feeds: Record<string, ReturnType<typeof hostF32>> = { wplus: hostF32(t('wplus')) };
    noise.forEach((_, k) => { feeds[`noise_${k}`] = hostF32(t(`noise_in.${k}`)); });
    check(await evaluate({ img_wplus_noise: image }, feeds), ['img_wplus_noise']);
  }

  // truncation psi (towards mean_latent) and style-mixing index of this fixture: from its metadata
  // when recorded there, else read off its own latents (latent_trunc = ml + psi (w - ml); latent_mix
  // = k rows of w, then style(z_b)), else the published fixture's 0.7 / 3
  const B = t('w').shape[0];
  const f32 = (n: string) => t(n).data as Float32Array;
  const truncation = metadataNumber(io.metadata, 'truncation')
    ?? truncationOf(f32('latent_trunc'), f32('w'), f32('mean_latent'), B, L, D) ?? DEFAULT_TRUNCATION;
  const injectIndex = metadataNumber(io.metadata, 'inject_index')
    ?? injectIndexOf(f32('latent_mix'), f32('w'), B, L, D) ?? DEFAULT_INJECT_INDEX;

  // z through the mapping: plain, truncated towards the mean latent, and style mixing
  {
    const g = new G.Graph('sg2-z');
    const z = g.input('z', t('z').shape);
    const zb = g.input('z_b', t('z_b').shape);
    const ml = g.input('mean_latent', t('mean_latent').shape);
    const plain = gen.forward([z], { noise: gen.noiseConstants(g) });
    const trunc = gen.forward([z], { truncation, truncationLatent: ml, noise: gen.noiseConstants(g) });
    const mix = gen.forward([z, zb], { injectIndex, noise: gen.noiseConstants(g) });
    const outs: Record<string, Tensor> = {
      img_z: plain.image, latent_z: plain.latent, img_trunc: trunc.image, latent_trunc: trunc.latent, img_mix: mix.image, latent_mix: mix.latent,
    };
    check(await evaluate(outs, { z: hostF32(t('z')), z_b: hostF32(t('z_b')), mean_latent: hostF32(t('mean_latent')) }), Object.keys(outs));
  }
  return { lines, truncation };
}

async function verifyGrad(gen: Generator, dir: string, ioTruncation: number): Promise<CompareLine[]> {
  const gr = readFixture(dir, 'grad.safetensors');
  const t = (n: string) => fixtureTensor(gr, n, 'grad.safetensors');
  // metadata `suggested_atol`, else the folder README's column for grad.safetensors
  const atol = { ...readmeAtol(dir, 'grad.safetensors'), ...suggestedAtol(gr.metadata) };
  // psi of loss_trunc: its metadata (config key or the loss description), else the io fixture's
  const truncation = metadataNumber(gr.metadata, 'truncation') ?? truncationInText(gr.metadata.loss_trunc) ?? ioTruncation;
  const lines: CompareLine[] = [];
  const check = (name: string, got: HostTensor) => {
    const ref = t(name).data as Float32Array;
    // the scalar losses are float32 sums over a whole image of products with R, whose order of
    // summation alone moves them by ~1e-7 relative: their tolerance also scales with |loss|
    const rtol = name.startsWith('loss') ? 1e-6 : 0;
    lines.push(compare(name.startsWith('grad.') ? name : `grad.${name}`, got.data as Float32Array, ref, { atol: atol[name] ?? 1e-5, rtol }));
  };

  // loss_wplus = sum(G(w+) * R) with the noise buffers as inputs: d/dw+ and d/dnoise_k
  {
    const g = new G.Graph('sg2-grad-wplus');
    const wp = g.input('wplus', t('wplus').shape);
    const R = g.input('R', t('R').shape);
    const noise = gen.noiseInputs(g);
    const { image } = gen.forward([wp], { inputIsLatent: true, noise });
    const loss = G.reshape(G.reduceSum(G.mul(image, R)), [1]);
    const grads = G.grad(loss, [wp, ...noise]);
    const outs: Record<string, Tensor> = { img_wplus: image, loss_wplus: loss, 'grad.wplus': grads[0] };
    noise.forEach((_, k) => { outs[`grad.noises.noise_${k}`] = grads[k + 1]; });
    const feeds: Record<string, ReturnType<typeof hostF32>> = { wplus: hostF32(t('wplus')), R: hostF32(t('R')) };
    noise.forEach((_, k) => { feeds[`noise_${k}`] = hostF32(t(`noises.noise_${k}`)); });
    const r = await evaluate(outs, feeds);
    for (const n of Object.keys(outs)) check(n, r[n]);
  }

  // loss_trunc = sum(G([z], truncation psi, truncation_latent) * R): d/dz and d/dtruncation_latent
  {
    const g = new G.Graph('sg2-grad-trunc');
    const z = g.input('z', t('z').shape);
    const tl = g.input('truncation_latent', t('truncation_latent').shape);
    const R = g.input('R', t('R').shape);
    const { image } = gen.forward([z], { truncation, truncationLatent: tl, noise: gen.noiseConstants(g) });
    const loss = G.reshape(G.reduceSum(G.mul(image, R)), [1]);
    const [gz, gtl] = G.grad(loss, [z, tl]);
    const r = await evaluate({ img_trunc: image, loss_trunc: loss, 'grad.z': gz, 'grad.truncation_latent': gtl },
      { z: hostF32(t('z')), truncation_latent: hostF32(t('truncation_latent')), R: hostF32(t('R')) });
    for (const n of ['img_trunc', 'loss_trunc', 'grad.z', 'grad.truncation_latent']) check(n, r[n]);
  }
  return lines;
}
