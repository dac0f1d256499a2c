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
import { fixtureTensor, hostF32, readFixture, suggestedAtol } from '../common.ts';
import { loadGenerator, type Generator } from './stylegan2.ts';

/** io.safetensors carries no tolerance metadata: these are its README's "suggested atol" column. */
const IO_ATOL: Record<string, number> = {
  w: 2e-5, w_get_latent: 2e-5, mean_latent: 5e-6, wplus: 2e-5,
  img_wplus: 5e-5, latent_wplus: 2e-5,
  'act_wplus.conv1': 5e-5, 'act_wplus.to_rgb1': 2e-5, 'act_wplus.convs.0': 5e-5, 'act_wplus.convs.1': 5e-5, 'act_wplus.to_rgbs.0': 2e-5,
  img_wplus_noise: 5e-5, img_z: 5e-5, latent_z: 2e-5, img_trunc: 5e-5, latent_trunc: 1e-5, img_mix: 5e-5, latent_mix: 2e-5,
};

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
  return [...(await verifyIo(gen, dir)), ...(await verifyGrad(gen, dir))];
}

async function verifyIo(gen: Generator, dir: string): Promise<CompareLine[]> {
  const io = readFixture(dir, 'io.safetensors');
  const t = (n: string) => fixtureTensor(io, n, 'io.safetensors');
  const lines: CompareLine[] = [];
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

  // z through the mapping: plain, truncated towards the mean latent, and style mixing
  {
    const g = new G.Graph('sg2-z');
    const z = g.input('z', t('z').shape);
    const zb = g.input('z_b', t('z_b').shape);
    const ml = g.input('mean_latent', t('mean_latent').shape);
    const plain = gen.forward([z], { noise: gen.noiseConstants(g) });
    // README: truncation 0.7 towards mean_latent; style mixing with inject_index 3
    const trunc = gen.forward([z], { truncation: Number(io.metadata.truncation ?? 0.7), truncationLatent: ml, noise: gen.noiseConstants(g) });
    const mix = gen.forward([z, zb], { injectIndex: Number(io.metadata.inject_index ?? 3), noise: gen.noiseConstants(g) });
    const outs: Record<string, Tensor> = {
      img_z: plain.image, latent_z: plain.latent, img_trunc: trunc.image, latent_trunc: trunc.latent, img_mix: mix.image, latent_mix: mix.latent,
    };
    check(await evaluate(outs, { z: hostF32(t('z')), z_b: hostF32(t('z_b')), mean_latent: hostF32(t('mean_latent')) }), Object.keys(outs));
  }
  return lines;
}

async function verifyGrad(gen: Generator, dir: string): Promise<CompareLine[]> {
  const gr = readFixture(dir, 'grad.safetensors');
  const t = (n: string) => fixtureTensor(gr, n, 'grad.safetensors');
  const atol = suggestedAtol(gr.metadata);
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

  // loss_trunc = sum(G([z], truncation 0.7, truncation_latent) * R): d/dz and d/dtruncation_latent
  {
    const g = new G.Graph('sg2-grad-trunc');
    const z = g.input('z', t('z').shape);
    const tl = g.input('truncation_latent', t('truncation_latent').shape);
    const R = g.input('R', t('R').shape);
    const { image } = gen.forward([z], { truncation: 0.7, truncationLatent: tl, noise: gen.noiseConstants(g) });
    const loss = G.reshape(G.reduceSum(G.mul(image, R)), [1]);
    const [gz, gtl] = G.grad(loss, [z, tl]);
    const r = await evaluate({ img_trunc: image, loss_trunc: loss, 'grad.z': gz, 'grad.truncation_latent': gtl },
      { z: hostF32(t('z')), truncation_latent: hostF32(t('truncation_latent')), R: hostF32(t('R')) });
    for (const n of ['img_trunc', 'loss_trunc', 'grad.z', 'grad.truncation_latent']) check(n, r[n]);
  }
  return lines;
}
