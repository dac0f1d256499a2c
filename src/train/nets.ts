// Loading the frozen networks of a training / evaluation run from what the user names: a local
// file or a registry name (src/weights: cache, else download with a progress bar).
//   generator  default 'stylegan2-ffhq-config-f' (rosinality format; any Generator checkpoint)
//   clip       default 'clip-vit-b-32' (OpenAI archive, state dict or safetensors)
//   arcface    default 'ir-se50' (TreB1eN model_ir_se50.pth) — only when a loss needs it
//   parser     default 'parsenet' (HairCLIP's U-Net) — only when a loss needs it
import { ClipModel } from '../nets/clip/clip.ts';
import { loadIrse, type IrseNet } from '../nets/arcface/irse.ts';
import { loadParsenet, type UnetNet } from '../nets/parsenet/unet.ts';
import { generatorFromStateDict, loadGenerator, type Generator } from '../nets/stylegan2/stylegan2.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import { StyleClipMapper } from '../mappers/styleclip.ts';
import { FfclipMapper } from '../mappers/ffclip.ts';
import type { TensorData } from '../io/tensor.ts';
import { DownloadError, resolveWeights } from '../weights/download.ts';
import { findWeights } from '../weights/registry.ts';
import type { TrainNets } from './common.ts';

export interface NetFlags {
  generator?: string; clip?: string; arcface?: string; parser?: string;
  offline?: boolean; cacheDir?: string;
}

export const DEFAULT_NETS = { generator: 'stylegan2-ffhq-config-f', clip: 'clip-vit-b-32', arcface: 'ir-se50', parser: 'parsenet', mapper: 'hairclip' } as const;

/** A local path for a name or path; a clear error naming the flag when it cannot be had. */
export async function resolveNet(role: keyof typeof DEFAULT_NETS, name: string | undefined, f: NetFlags, log: (m: string) => void): Promise<string> {
  const n = name ?? DEFAULT_NETS[role];
  try {
    return await resolveWeights(n, { offline: f.offline, cacheDir: f.cacheDir, progress: 'auto', log });
  } catch (e) {
    if (e instanceof DownloadError) {
      const entry = findWeights(n);
      throw new Error(`cannot get the ${role} weights '${n}': ${e.message}; `
        + (entry ? `fetch them with \`clipmapper weights fetch ${entry.name}\` or pass a local file with --${role} <path>` : `pass an existing file or a registry name with --${role}`));
    }
    throw e;
  }
}

/** Loads the networks; ArcFace / the parser only when `need` says a loss uses them. */
export async function loadTrainNets(f: NetFlags, need: { arcface: boolean; parser: boolean }, log: (m: string) => void = () => {}): Promise<TrainNets> {
  const gPath = await resolveNet('generator', f.generator, f, log);
  log(`generator ${gPath}`);
  const generator = loadGenerator(gPath);
  const cPath = await resolveNet('clip', f.clip, f, log);
  log(`CLIP ${cPath}`);
  const clip = ClipModel.load(cPath);
  let arcface = null;
  if (need.arcface) {
    const p = await resolveNet('arcface', f.arcface, f, log);
    log(`ArcFace ${p}`);
    arcface = loadIrse(p);
  }
  let parser = null;
  if (need.parser) {
    const p = await resolveNet('parser', f.parser, f, log);
    log(`face parser ${p}`);
    parser = loadParsenet(p);
  }
  return { generator, clip, arcface, parser };
}

export type MapperMethod = 'styleclip' | 'hairclip' | 'ffclip';
export type AnyMapper = StyleClipMapper | HairClipMapper | FfclipMapper;

/** A trained mapper and the networks to run / evaluate it. */
export interface MapperNets {
  method: MapperMethod;
  mapper: AnyMapper;
  generator: Generator;
  clip: ClipModel | null;
  arcface: IrseNet | null;
  parser: UnetNet | null;
}

/**
 * A mapper checkpoint (path or registry name: 'hairclip', 'ffclip-ffhq', 'styleclip-<name>'; our
 * training's mapper.pt included) and the networks beside it. The generator / CLIP saved inside the
 * mapper file are used unless --generator / --clip name others.
 */
export async function loadMapperNets(
  method: MapperMethod, f: NetFlags & { mapper?: string }, need: { clip: boolean; arcface: boolean; parser: boolean }, log: (m: string) => void = () => {},
): Promise<MapperNets> {
  if (!f.mapper && method === 'styleclip') throw new Error('StyleCLIP: pass the trained mapper with --mapper <file|styleclip-name>');
  const mName = f.mapper ?? (method === 'hairclip' ? 'hairclip' : 'ffclip-ffhq');
  const mPath = await resolveWeights(mName, { offline: f.offline, cacheDir: f.cacheDir, progress: 'auto', log }).catch((e) => {
    throw new Error(`cannot get the mapper '${mName}': ${(e as Error).message}; pass a local file with --mapper`);
  });
  log(`${method} mapper ${mPath}`);
  let mapper: AnyMapper;
  let decoder: Map<string, TensorData> | null = null;
  let clipSd: Map<string, TensorData> | null = null;
  if (method === 'styleclip') ({ mapper, decoder } = StyleClipMapper.load(mPath));
  else if (method === 'hairclip') ({ mapper, decoder, clip: clipSd } = HairClipMapper.load(mPath));
  else { const r = FfclipMapper.load(mPath); mapper = r.mapper; decoder = r.generator; }
  let generator: Generator;
  if (!f.generator && decoder && decoder.size) { generator = generatorFromStateDict(decoder, { what: `generator inside ${mPath}` }); log('generator: inside the mapper checkpoint'); } else {
    const p = await resolveNet('generator', f.generator, f, log);
    log(`generator ${p}`);
    generator = loadGenerator(p);
  }
  let clip: ClipModel | null = null;
  if (need.clip) {
    if (!f.clip && clipSd && clipSd.size) { clip = ClipModel.fromStateDict(clipSd); log('CLIP: inside the mapper checkpoint'); } else {
      const p = await resolveNet('clip', f.clip, f, log);
      log(`CLIP ${p}`);
      clip = ClipModel.load(p);
    }
  }
  let arcface: IrseNet | null = null;
  if (need.arcface) { const p = await resolveNet('arcface', f.arcface, f, log); log(`ArcFace ${p}`); arcface = loadIrse(p); }
  let parser: UnetNet | null = null;
  if (need.parser) { const p = await resolveNet('parser', f.parser, f, log); log(`face parser ${p}`); parser = loadParsenet(p); }
  const D = generator.config.styleDim;
  if (mapper.config.width !== D) throw new Error(`the mapper is ${mapper.config.width} wide, the generator's w is ${D}`);
  if (mapper instanceof FfclipMapper && mapper.config.layers !== generator.nLatent) throw new Error(`the FFCLIP mapper has ${mapper.config.layers} rows, the generator ${generator.nLatent}`);
  const E = mapper instanceof StyleClipMapper ? null : mapper.config.embedWidth;
  if (E !== null && clip && clip.config.embedDim !== E) throw new Error(`CLIP embeddings are ${clip.config.embedDim} wide, the mapper takes ${E}`);
  return { method, mapper, generator, clip, arcface, parser };
}
