// Loading the networks of a photo edit from what the user names: a local path, a registry name
// (resolved through src/weights: the cache, else a download), or an already loaded object.
//
// Defaults per method (what the official projects use):
//   mapper     hairclip -> 'hairclip', ffclip -> 'ffclip-ffhq', styleclip -> 'styleclip-<text>'
//              (one StyleCLIP mapper per prompt: --text "purple hair" -> styleclip-purple-hair)
//   generator  the StyleGAN2 saved inside the mapper checkpoint, else the e4e checkpoint's decoder,
//              else 'stylegan2-ffhq-config-f' (so the default HairCLIP set needs no separate G)
//   e4e        'e4e-ffhq'
//   clip       HairCLIP: the CLIP saved inside hairclip.pt, else 'clip-vit-b-32'; FFCLIP:
//              'clip-vit-b-32'; StyleCLIP needs none
//   parser     'parsenet' (HairCLIP's U-Net); a BiSeNet file (79999_iter.pth) works too
//
// A weight that is neither a file nor in the cache, when downloads are off or fail, is reported
// by MissingWeightsError: which role, which name, where to get it, which flag takes a path.
import { existsSync } from 'node:fs';
import { ClipModel } from '../nets/clip/clip.ts';
import { e4eInputSize, loadE4e, type E4eNet } from '../nets/e4e/e4e.ts';
import { Generator, generatorFromStateDict, loadGenerator } from '../nets/stylegan2/stylegan2.ts';
import { loadParsenet, type UnetNet } from '../nets/parsenet/unet.ts';
import { loadBisenet, type BisenetNet } from '../nets/bisenet/bisenet.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import { StyleClipMapper } from '../mappers/styleclip.ts';
import { FfclipMapper } from '../mappers/ffclip.ts';
import { loadCheckpoint } from '../io/torch.ts';
import { bareStateDict } from '../nets/common.ts';
import { findWeights, REGISTRY } from '../weights/registry.ts';
import { DownloadError, resolveWeights } from '../weights/download.ts';
import type { TensorData } from '../io/tensor.ts';

export type EditMethod = 'hairclip' | 'styleclip' | 'ffclip';
export const METHODS: readonly EditMethod[] = ['hairclip', 'styleclip', 'ffclip'];

export type Mapper = HairClipMapper | StyleClipMapper | FfclipMapper;
export type WeightRole = 'generator' | 'e4e' | 'mapper' | 'clip' | 'parser';

/** A face parser of either family, with the label sets the blend mask uses. */
export type FaceParser =
  | { kind: 'parsenet'; net: UnetNet }
  | { kind: 'bisenet'; net: BisenetNet };

/** Where each network comes from: a path, a registry name, or a loaded object. */
export interface WeightsSpec {
  generator?: string | Generator;
  e4e?: string | E4eNet;
  mapper?: string | Mapper;
  clip?: string | ClipModel;
  /** null: no parser (the blend mask is then the whole aligned crop, feathered) */
  parser?: string | UnetNet | BisenetNet | null;
}

export interface LoadOptions {
  /** download registry weights that are not cached (default true) */
  download?: boolean;
  /** show download progress bars (true), never (false), or on a terminal ('auto', default) */
  progressBars?: boolean | 'auto';
  cacheDir?: string;
  /** one line per loading step */
  log?: (msg: string) => void;
  /** StyleCLIP: the prompt that picks a registry mapper when none is given */
  text?: string;
}

export interface LoadedNets {
  method: EditMethod;
  generator: Generator;
  e4e: E4eNet;
  mapper: Mapper;
  clip: ClipModel | null;
  parser: FaceParser | null;
  /** where each came from (paths / names / 'object' / 'inside <file>'), for messages and manifests */
  sources: Partial<Record<WeightRole, string>>;
}

const FLAG: Record<WeightRole, string> = { generator: '--generator', e4e: '--e4e', mapper: '--mapper', clip: '--clip', parser: '--parser' };

/** A weight file the edit needs is not available (not a file, not cached, download off or failed). */
export class MissingWeightsError extends Error {
  override name = 'MissingWeightsError';
  constructor(readonly role: WeightRole, readonly weights: string, detail: string) {
    const entry = findWeights(weights);
    const how = entry
      ? `get it with \`clipmapper weights fetch ${entry.name}\` (from ${entry.page}), or pass a local file with ${FLAG[role]} <path>`
      : `pass an existing file with ${FLAG[role]} <path> or a registry name (clipmapper weights list)`;
    super(`missing ${role} weights '${weights}': ${detail}; ${how}`);
  }
}

/** The registry name of StyleCLIP's mapper for a prompt ('purple hair' -> 'styleclip-purple-hair'), or null. */
export function styleclipMapperName(text: string): string | null {
  const slug = text.trim().toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  const names = [`styleclip-${slug}`, `styleclip-${slug.replace(/-hairstyle$|-hair$/, '')}`];
  for (const n of names) if (findWeights(n)) return n;
  return null;
}

const styleclipNames = () => REGISTRY.filter((e) => e.name.startsWith('styleclip-')).map((e) => e.name.slice('styleclip-'.length));

async function resolvePath(role: WeightRole, name: string, o: LoadOptions): Promise<string> {
  if (existsSync(name)) return name;
  try {
    return await resolveWeights(name, { offline: o.download === false, progress: o.progressBars ?? 'auto', cacheDir: o.cacheDir, log: o.log });
  } catch (e) {
    if (e instanceof DownloadError) {
      const detail = e.code === 'offline' ? 'not in the weights cache and downloads are off'
        : e.code === 'not-found' ? (findWeights(name) ? e.message : `no such file or registry name`) : `download failed (${e.message})`;
      throw new MissingWeightsError(role, name, detail);
    }
    throw e;
  }
}

function loadMapperFile(method: EditMethod, path: string): { mapper: Mapper; decoder: Map<string, TensorData> | null; clip: Map<string, TensorData> | null } {
  if (method === 'hairclip') { const r = HairClipMapper.load(path); return { mapper: r.mapper, decoder: r.decoder, clip: r.clip }; }
  if (method === 'styleclip') { const r = StyleClipMapper.load(path); return { mapper: r.mapper, decoder: r.decoder, clip: null }; }
  const r = FfclipMapper.load(path);
  return { mapper: r.mapper, decoder: r.generator, clip: null };
}

function mapperMatches(method: EditMethod, m: Mapper): boolean {
  return (method === 'hairclip' && m instanceof HairClipMapper) || (method === 'styleclip' && m instanceof StyleClipMapper) || (method === 'ffclip' && m instanceof FfclipMapper);
}

function isUnet(p: UnetNet | BisenetNet): p is UnetNet {
  return 'filters' in p.config;
}

/** A parser file: HairCLIP's U-Net (parsenet.pth) or BiSeNet (79999_iter.pth), told apart by its keys. */
export function loadFaceParser(path: string): FaceParser {
  const sd = bareStateDict(loadCheckpoint(path), path);
  if ([...sd.keys()].some((k) => k.startsWith('cp.'))) return { kind: 'bisenet', net: loadBisenet(sd, path) };
  return { kind: 'parsenet', net: loadParsenet(sd, path) };
}

/** Loads (or takes) every network the method needs and checks that they fit together. */
export async function loadNets(method: EditMethod, spec: WeightsSpec, o: LoadOptions = {}): Promise<LoadedNets> {
  if (!METHODS.includes(method)) throw new Error(`unknown method '${method}' (choose ${METHODS.join(', ')})`);
  const log = o.log ?? (() => {});
  const sources: Partial<Record<WeightRole, string>> = {};

  // mapper first: its checkpoint may carry the generator and CLIP
  let mapper: Mapper;
  let decoder: Map<string, TensorData> | null = null;
  let clipSd: Map<string, TensorData> | null = null;
  if (spec.mapper && typeof spec.mapper !== 'string') {
    if (!mapperMatches(method, spec.mapper)) throw new Error(`the mapper object given is not a ${method} mapper`);
    mapper = spec.mapper;
    sources.mapper = 'object';
  } else {
    let name = spec.mapper;
    if (!name) {
      if (method === 'hairclip') name = 'hairclip';
      else if (method === 'ffclip') name = 'ffclip-ffhq';
      else {
        const n = o.text ? styleclipMapperName(o.text) : null;
        if (!n) {
          throw new Error(`StyleCLIP uses one trained mapper per prompt: pass --mapper <file>, or --text naming a released one (${styleclipNames().join(', ')})`
            + (o.text ? `; there is none for '${o.text}'` : ''));
        }
        name = n;
      }
    }
    const path = await resolvePath('mapper', name, o);
    log(`loading ${method} mapper ${path}`);
    ({ mapper, decoder, clip: clipSd } = loadMapperFile(method, path));
    sources.mapper = path;
  }

  // e4e
  let e4e: E4eNet;
  if (spec.e4e && typeof spec.e4e !== 'string') { e4e = spec.e4e; sources.e4e = 'object'; } else {
    const path = await resolvePath('e4e', spec.e4e ?? 'e4e-ffhq', o);
    log(`loading e4e ${path}`);
    e4e = loadE4e(path);
    sources.e4e = path;
  }

  // generator
  let generator: Generator;
  if (spec.generator && typeof spec.generator !== 'string') { generator = spec.generator; sources.generator = 'object'; } else if (spec.generator) {
    const path = await resolvePath('generator', spec.generator, o);
    log(`loading generator ${path}`);
    generator = loadGenerator(path);
    sources.generator = path;
  } else if (decoder && decoder.size) {
    generator = generatorFromStateDict(decoder, { what: `generator inside ${sources.mapper}` });
    sources.generator = `inside ${sources.mapper}`;
  } else if (e4e.decoder.size) {
    generator = generatorFromStateDict(e4e.decoder, { what: `generator inside ${sources.e4e}` });
    sources.generator = `inside ${sources.e4e}`;
  } else {
    const path = await resolvePath('generator', 'stylegan2-ffhq-config-f', o);
    log(`loading generator ${path}`);
    generator = loadGenerator(path);
    sources.generator = path;
  }

  // CLIP (text / reference image embeddings)
  let clip: ClipModel | null = null;
  if (method !== 'styleclip') {
    if (spec.clip && typeof spec.clip !== 'string') { clip = spec.clip; sources.clip = 'object'; } else if (!spec.clip && clipSd && clipSd.size) {
      clip = ClipModel.fromStateDict(clipSd);
      sources.clip = `inside ${sources.mapper}`;
    } else {
      const path = await resolvePath('clip', spec.clip ?? 'clip-vit-b-32', o);
      log(`loading CLIP ${path}`);
      clip = ClipModel.load(path);
      sources.clip = path;
    }
  }

  // parser
  let parser: FaceParser | null = null;
  if (spec.parser === null) parser = null;
  else if (spec.parser && typeof spec.parser !== 'string') { parser = isUnet(spec.parser) ? { kind: 'parsenet', net: spec.parser } : { kind: 'bisenet', net: spec.parser }; sources.parser = 'object'; } else {
    const path = await resolvePath('parser', spec.parser ?? 'parsenet', o);
    log(`loading face parser ${path}`);
    parser = loadFaceParser(path);
    sources.parser = path;
  }

  const nets: LoadedNets = { method, generator, e4e, mapper, clip, parser, sources };
  checkCompatible(nets);
  return nets;
}

/** The sizes that must agree between e4e, G, the mapper and CLIP; one error listing what does not. */
export function checkCompatible(n: LoadedNets): void {
  const L = n.generator.nLatent, D = n.generator.config.styleDim;
  const problems: string[] = [];
  const e = n.e4e.config;
  if (e.styleCount !== L || e.styleDim !== D) problems.push(`e4e gives w+ [${e.styleCount}, ${e.styleDim}] but the generator takes [${L}, ${D}]`);
  const m = n.mapper;
  if (m.config.width !== D) problems.push(`the mapper is ${m.config.width} wide, the generator's w is ${D}`);
  if (m instanceof FfclipMapper && m.config.layers !== L) problems.push(`the FFCLIP mapper has ${m.config.layers} rows, the generator ${L}`);
  if ((m instanceof HairClipMapper || (m instanceof StyleClipMapper && m.config.type === 'LevelsMapper')) && L <= 8) {
    problems.push(`a ${m instanceof HairClipMapper ? 'HairCLIP' : 'StyleCLIP levels'} mapper splits w+ at rows 4 and 8, the generator has only ${L} rows`);
  }
  const E = m instanceof HairClipMapper || m instanceof FfclipMapper ? m.config.embedWidth : null;
  if (E !== null && n.clip && n.clip.config.embedDim !== E) problems.push(`CLIP embeddings are ${n.clip.config.embedDim} wide, the mapper takes ${E}`);
  if (problems.length) throw new Error(`the networks do not fit together:\n  ${problems.join('\n  ')}`);
}

export { e4eInputSize };
