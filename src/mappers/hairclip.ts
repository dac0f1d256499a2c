// HairCLIP HairMapper (Wei et al., CVPR 2022; wty-ustc/HairCLIP mapper/latent_mappers.py,
// mapper/hairclip_mapper.py): one model for every hairstyle and hair colour, conditioned on CLIP
// embeddings of a text or of a hair-masked reference image.
//
//   w+ rows 0-3  -> course_mapping (hairstyle embedding)     [state-dict typo kept]
//   w+ rows 4-7  -> medium_mapping (hairstyle embedding)
//   w+ rows 8-17 -> fine_mapping   (colour embedding)
//   SubHairMapper(L)   = PixelNorm (over the L rows) -> 5 x ModulationModule(L)
//   ModulationModule   = x = fc(x); x = LayerNorm over [L, D] jointly, no affine;
//                        if the condition is missing (cut flag 1): return x;
//                        gamma = MLP_g(e), beta = MLP_b(e)   (Linear, LayerNorm affine, LeakyReLU 0.01, Linear)
//                        return LeakyReLU_0.01(x * (1 + gamma) + beta)
//   editing:           w_hat = w + 0.1 * mapper(...)   (the 0.1 lives in the callers)
//
// Conditions. This module takes the embeddings themselves, [B, E] each, or null for a missing
// condition; the CLIP encoders live in src/nets/clip. How the official forward makes them:
//   text:  clip_model.encode_text(tokens), tokens = clip.tokenize("<name> hairstyle" | "<colour> hair"),
//          raw (no L2 normalisation), detached;
//   image: clip_model.encode_image(normalize(AdaptiveAvgPool2d(224)(ref * hairmask(ref)) * 0.5 + 0.5))
//          with CLIP's mean/std — `referenceImageInput` below builds that preprocessing;
//   text wins over an image for the same attribute; neither -> cut flag 1 (see below);
//   the CUDA CLIP returns fp16; the mapper casts to float32 (`embedding.float()`).
// A missing condition is NOT a zero offset: its sub-mappers run PixelNorm -> 5 x (fc -> LayerNorm)
// with no modulation and no activation, so that slice of M has zero mean and unit variance. The
// released model was trained with that path (hairstyle-only / colour-only samples), so it is kept.
// The hairstyle flag drives coarse+medium, the colour flag drives fine; a condition variant is a
// graph structure, so each (hairstyle present?, colour present?) pair has its own sessions.
//
// Checkpoint: `{'state_dict': {mapper.clip_model.* (OpenAI ViT-B/32, partly fp16),
// mapper.{course,medium,fine}_mapping.*, decoder.* (StyleGAN2-1024)}, 'opts'}`. The mapper part
// is loaded here (width, module count and which sub-mappers exist are read off its keys); the
// CLIP and decoder parts are returned, prefixes stripped, for their own loaders.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { HostTensor } from '../runtime/session.ts';
import type { PickleValue } from '../io/pickle.ts';
import type { TensorData } from '../io/tensor.ts';
import { ParamSet, splitByPrefix, stripPrefix, torchLayerNorm, torchLinear as linearSpecs, type ParamRefs, type ParamSpec, type TensorLike } from './params.ts';
import { conditionMlp, pixelNorm, torchLinear } from './layers.ts';
import { addScaled, embeddingData, latentShape, readCheckpoint } from './checkpoint.ts';
import { SessionCache, type MapperSession } from './session.ts';

export type SubMapper = 'coarse' | 'medium' | 'fine';

export interface HairClipConfig {
  /** latent width D (512) */
  width: number;
  /** condition (CLIP embedding) width E (512) */
  embedWidth: number;
  /** ModulationModules per sub-mapper (5) */
  modules: number;
  /** which sub-mappers exist (--no_*_mapper removes one: its slice of M is zeros) */
  subMappers: Record<SubMapper, boolean>;
}

/** w_hat = w + 0.1 * M: hard-coded in HairCLIP's coach, inference and predict. */
export const HAIRCLIP_ALPHA = 0.1;

const SUBS: { sub: SubMapper; module: string; cond: 'hair' | 'color'; rows: (L: number) => [number, number] }[] = [
  { sub: 'coarse', module: 'course_mapping', cond: 'hair', rows: () => [0, 4] },
  { sub: 'medium', module: 'medium_mapping', cond: 'hair', rows: () => [4, 8] },
  { sub: 'fine', module: 'fine_mapping', cond: 'color', rows: (L) => [8, L] },
];

/** The parameter specs: official keys and shapes, PyTorch default init (Linear uniform, LayerNorm 1/0). */
export function hairclipSpecs(cfg: HairClipConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  const D = cfg.width; const E = cfg.embedWidth;
  for (const s of SUBS) {
    if (!cfg.subMappers[s.sub]) continue;
    for (let i = 0; i < cfg.modules; i++) {
      const m = `mapper.${s.module}.modulation_module_list.${i}`;
      specs.push(...linearSpecs(`${m}.fc`, D, D));
      for (const f of ['gamma_function', 'beta_function']) {
        specs.push(...linearSpecs(`${m}.${f}.0`, E, D), ...torchLayerNorm(`${m}.${f}.1`, D), ...linearSpecs(`${m}.${f}.3`, D, D));
      }
    }
  }
  return specs;
}

/** Width, embedding width, module count and sub-mappers from the `mapper.*_mapping.*` keys. */
export function inferHairClipConfig(sd: Map<string, TensorLike>, opts?: Record<string, unknown> | null): HairClipConfig {
  const subMappers = Object.fromEntries(SUBS.map((s) => [s.sub, [...sd.keys()].some((k) => k.startsWith(`mapper.${s.module}.`))])) as Record<SubMapper, boolean>;
  const first = SUBS.find((s) => subMappers[s.sub]);
  if (!first) throw new Error('HairCLIP checkpoint: no mapper.{course,medium,fine}_mapping.* keys');
  for (const s of SUBS) {
    const flag = opts?.[`no_${s.sub}_mapper`];
    if (typeof flag === 'boolean' && flag === subMappers[s.sub]) {
      throw new Error(`HairCLIP checkpoint: opts.no_${s.sub}_mapper is ${flag} but the ${s.module} keys are ${subMappers[s.sub] ? 'present' : 'absent'}`);
    }
  }
  const base = `mapper.${first.module}.modulation_module_list`;
  const fc = sd.get(`${base}.0.fc.weight`);
  if (!fc) throw new Error(`HairCLIP checkpoint: missing key '${base}.0.fc.weight'`);
  const g0 = sd.get(`${base}.0.gamma_function.0.weight`);
  if (!g0) throw new Error(`HairCLIP checkpoint: missing key '${base}.0.gamma_function.0.weight'`);
  let modules = 0;
  while (sd.has(`${base}.${modules}.fc.weight`)) modules++;
  return { width: fc.shape[0], embedWidth: g0.shape[1], modules, subMappers };
}

/** One ModulationModule; `e` is [B, 1, E] (null: cut flag 1, no modulation). */
export function modulationModule(x: Tensor, e: Tensor | null, p: ParamRefs, name: string): Tensor {
  let h = torchLinear(x, p, `${name}.fc`);
  h = G.layerNorm(h, null, null, 1e-5, 2);
  if (!e) return h;
  const gamma = conditionMlp(e, p, `${name}.gamma_function`);
  const beta = conditionMlp(e, p, `${name}.beta_function`);
  return G.leakyRelu(G.add(G.mul(h, G.add(gamma, 1)), beta), 0.01);
}

/** One SubHairMapper over its rows x [B, L, D]. */
export function subHairMapper(x: Tensor, e: Tensor | null, p: ParamRefs, name: string, modules: number): Tensor {
  let h = pixelNorm(x);
  for (let i = 0; i < modules; i++) h = modulationModule(h, e, p, `${name}.modulation_module_list.${i}`);
  return h;
}

export interface HairConditions {
  /** hairstyle embedding [B, E], or null when no hairstyle is given */
  hair: Tensor | null;
  /** colour embedding [B, E], or null when no colour is given */
  color: Tensor | null;
}

/** The mapper's output M(w, e_hair, e_color) for a w+ batch [B, L, D]. */
export function hairclipDelta(w: Tensor, cond: HairConditions, p: ParamRefs, cfg: HairClipConfig): Tensor {
  const L = w.shape[1];
  if (L <= 8) throw new Error(`HairMapper: w has ${L} rows; the coarse/medium/fine split needs more than 8`);
  // The official forward repeats each embedding over the 18 rows and slices it; every row is the
  // same vector, so one [B, 1, E] row broadcast over the rows is the same computation.
  const rowOf = (e: Tensor | null) => (e ? G.unsqueeze(e, 1) : null);
  const conds = { hair: rowOf(cond.hair), color: rowOf(cond.color) };
  return G.concat(SUBS.map(({ sub, module, cond: c, rows }) => {
    const [a, b] = rows(L);
    const x = G.slice(w, [a], [b], [1]);
    return cfg.subMappers[sub] ? subHairMapper(x, conds[c], p, `mapper.${module}`, cfg.modules) : x.graph.zeros(x.shape);
  }), 1);
}

/** The text prompts HairCLIP encodes (no template, no "a photo of"): "afro hairstyle", "purple hair". */
export const hairstylePrompt = (name: string): string => `${name} hairstyle`;
export const colorPrompt = (color: string): string => `${color} hair`;

/** CLIP's input normalisation constants (OpenAI preprocess), used by HairCLIP's image condition. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/**
 * The image-condition preprocessing of HairMapper.gen_image_embedding, before encode_image: the
 * hair-masked reference [B, 3, H, W] in [-1, 1] -> AdaptiveAvgPool2d(224) -> * 0.5 + 0.5 ->
 * per-channel (x - mean) / std. (Masking with the parser's hair mask happens before this.)
 */
export function referenceImageInput(masked: Tensor, size = 224): Tensor {
  const g = masked.graph;
  const x = G.add(G.mul(G.adaptiveAvgPool2d(masked, [size, size]), 0.5), 0.5);
  const mean = g.constant(Float32Array.from(CLIP_MEAN), [1, 3, 1, 1]);
  const std = g.constant(Float32Array.from(CLIP_STD), [1, 3, 1, 1]);
  return G.div(G.sub(x, mean), std);
}

/** Embeddings fed to the mapper: [B, E] float32 (or a HostTensor [B, E] / [B, 1, E]); omit a missing one. */
export interface HairConditionValues {
  hair?: Float32Array | HostTensor | null;
  color?: Float32Array | HostTensor | null;
}

export interface HairClipVjp {
  /** d loss / d parameter, by state_dict key (zeros for the gamma/beta of a cut sub-mapper) */
  params: Map<string, Float32Array>;
  /** d loss / d w through the mapper only (add the cotangent of w_hat for the identity path) */
  w: Float32Array;
  /** d loss / d e_hair, e_color (the official forward detaches them; given for chaining into CLIP) */
  hair: Float32Array | null;
  color: Float32Array | null;
}

export class HairClipMapper {
  private readonly sessions: SessionCache;

  constructor(readonly config: HairClipConfig, readonly params: ParamSet, readonly opts: Record<string, unknown> = {}) {
    this.sessions = new SessionCache(params);
  }

  /** A fresh mapper with the official (PyTorch default) init, seeded. Defaults: 512/512, 5 modules, all sub-mappers. */
  static create(cfg: Partial<HairClipConfig> = {}, seed = 0): HairClipMapper {
    const config: HairClipConfig = {
      width: cfg.width ?? 512, embedWidth: cfg.embedWidth ?? cfg.width ?? 512, modules: cfg.modules ?? 5,
      subMappers: cfg.subMappers ?? { coarse: true, medium: true, fine: true },
    };
    return new HairClipMapper(config, ParamSet.init(hairclipSpecs(config), seed), {
      no_coarse_mapper: !config.subMappers.coarse, no_medium_mapper: !config.subMappers.medium, no_fine_mapper: !config.subMappers.fine,
    });
  }

  /** From the `mapper.{course,medium,fine}_mapping.*` keys of a state dict. */
  static fromStateDict(sd: Map<string, TensorLike>, opts: Record<string, unknown> | null = null): HairClipMapper {
    const config = inferHairClipConfig(sd, opts);
    return new HairClipMapper(config, ParamSet.fromStateDict(hairclipSpecs(config), sd, { what: 'HairCLIP mapper' }), opts ?? {});
  }

  /**
   * An official HairCLIP checkpoint (path, bytes or parsed tree). Returns the mapper, and the two
   * other networks saved in it for their own loaders: `clip` = the `mapper.clip_model.*` tensors
   * as an OpenAI CLIP state dict (prefix stripped; fp16 tensors left as stored), `decoder` = the
   * `decoder.*` StyleGAN2 generator (prefix stripped). Either is null when the file lacks it.
   */
  static load(src: string | Uint8Array | PickleValue): { mapper: HairClipMapper; clip: Map<string, TensorData> | null; decoder: Map<string, TensorData> | null } {
    const { stateDict, opts } = readCheckpoint(src);
    const prefixes = ['mapper.clip_model.', ...SUBS.map((s) => `mapper.${s.module}.`), 'decoder.'];
    const { parts, rest } = splitByPrefix(stateDict, prefixes);
    if (rest.size) throw new Error(`HairCLIP checkpoint: unexpected key '${[...rest.keys()][0]}' (expected mapper.clip_model.*, mapper.{course,medium,fine}_mapping.*, decoder.*)`);
    const mapperSd = new Map<string, TensorData>();
    for (const s of SUBS) for (const [k, v] of parts.get(`mapper.${s.module}.`)!) mapperSd.set(k, v);
    const clip = parts.get('mapper.clip_model.')!;
    const decoder = parts.get('decoder.')!;
    return {
      mapper: HairClipMapper.fromStateDict(mapperSd, opts),
      clip: clip.size ? stripPrefix(clip, 'mapper.clip_model.') : null,
      decoder: decoder.size ? stripPrefix(decoder, 'decoder.') : null,
    };
  }

  /** The graph builder bound to this mapper's config: M(w, e_hair, e_color). */
  delta(w: Tensor, cond: HairConditions, p: ParamRefs): Tensor { return hairclipDelta(w, cond, p, this.config); }

  /** `{state_dict, opts}` with the official mapper keys (the real file also holds mapper.clip_model.* and decoder.*). */
  checkpoint(): { state_dict: Map<string, TensorData>; opts: Record<string, unknown> } {
    return { state_dict: this.params.toStateDict(), opts: this.opts };
  }

  /** The session pair for a [B, L, D] batch and a condition variant (compiled on first use). */
  session(B: number, L: number, hair: boolean, color: boolean): MapperSession {
    const E = this.config.embedWidth;
    return this.sessions.get(`${B}x${L}:${hair ? 'h' : '-'}${color ? 'c' : '-'}`, () => ({
      name: `hairclip_mapper_${hair ? 'hair' : 'nohair'}_${color ? 'color' : 'nocolor'}`,
      inputs: [
        { name: 'w', shape: [B, L, this.config.width] },
        ...(hair ? [{ name: 'e_hair', shape: [B, E] }] : []),
        ...(color ? [{ name: 'e_color', shape: [B, E] }] : []),
      ],
      build: (x, p) => this.delta(x.w, { hair: x.e_hair ?? null, color: x.e_color ?? null }, p),
    }));
  }

  private feeds(w: HostTensor, cond: HairConditionValues): { B: number; L: number; feeds: Record<string, Float32Array> } {
    const [B, L] = latentShape(w, this.config.width);
    const feeds: Record<string, Float32Array> = { w: w.data as Float32Array };
    if (cond.hair) feeds.e_hair = embeddingData(cond.hair, B, this.config.embedWidth, 'hairstyle embedding');
    if (cond.color) feeds.e_color = embeddingData(cond.color, B, this.config.embedWidth, 'colour embedding');
    return { B, L, feeds };
  }

  /** M and w_hat = w + alpha * M (alpha defaults to HairCLIP's 0.1) with the current parameters. */
  async edit(w: HostTensor, cond: HairConditionValues, opts: { alpha?: number } = {}): Promise<{ delta: HostTensor; wHat: HostTensor }> {
    const { B, L, feeds } = this.feeds(w, cond);
    const delta = await this.session(B, L, !!feeds.e_hair, !!feeds.e_color).forward(feeds);
    return { delta, wHat: { data: addScaled(feeds.w, delta.data as Float32Array, opts.alpha ?? HAIRCLIP_ALPHA), shape: [...w.shape] } };
  }

  /** Cotangent of M -> cotangents of every parameter, of w and of the given embeddings (forward recomputed inside). */
  async vjp(w: HostTensor, cond: HairConditionValues, gDelta: Float32Array): Promise<HairClipVjp> {
    const { B, L, feeds } = this.feeds(w, cond);
    const r = await this.session(B, L, !!feeds.e_hair, !!feeds.e_color).vjp(feeds, gDelta);
    return { params: r.params, w: r.inputs.w, hair: r.inputs.e_hair ?? null, color: r.inputs.e_color ?? null };
  }
}
