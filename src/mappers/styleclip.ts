// StyleCLIP latent mapper (Patashnik et al., ICCV 2021; orpatashnik/StyleCLIP
// mapper/latent_mappers.py), one model per text prompt:
//
//   Mapper       = PixelNorm (over the layer axis) -> 4 x EqualLinear(D, D, lr_mul 0.01, fused_lrelu)
//   LevelsMapper = w+ rows 0-3 -> course_mapping, 4-7 -> medium_mapping, 8-17 -> fine_mapping
//                  (a level switched off by --no_{coarse,medium,fine}_mapper has no weights and
//                  outputs zeros), concatenated back
//   SingleMapper = one Mapper over all rows (`mapping`)
//   editing:       w_hat = w + 0.1 * mapper(w)   (the 0.1 lives in the callers, coach/inference)
//
// Checkpoint: `{'state_dict': {'mapper.<...>', 'decoder.<...>'}, 'opts'}`; the mapper type, the
// levels present, the width D and the depth are all read off the `mapper.*` keys (the official
// `course_mapping` typo is part of the key names). The lr_mul of 0.01 is a constant of the code.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { HostTensor } from '../runtime/session.ts';
import { ParamSet, splitByPrefix, stripPrefix, type ParamRefs, type ParamSpec, type TensorLike } from './params.ts';
import { equalLinearLrelu, pixelNorm } from './layers.ts';
import { addScaled, latentShape, readCheckpoint } from './checkpoint.ts';
import { SessionCache, type MapperSession } from './session.ts';
import type { PickleValue } from '../io/pickle.ts';
import type { TensorData } from '../io/tensor.ts';

export type StyleClipMapperType = 'LevelsMapper' | 'SingleMapper';
export type Level = 'coarse' | 'medium' | 'fine';

export interface StyleClipConfig {
  type: StyleClipMapperType;
  /** LevelsMapper: which sub-mappers exist (the others output zeros) */
  levels: Record<Level, boolean>;
  /** latent width D (512 for StyleGAN2-FFHQ) */
  width: number;
  /** EqualLinear layers per Mapper (4) */
  depth: number;
}

/** EqualLinear lr_mul in StyleCLIP's Mapper (hard-coded in the code, not an option). */
export const LR_MUL = 0.01;
/** The residual scale StyleCLIP's coach and inference apply: w_hat = w + 0.1 * mapper(w). */
export const STYLECLIP_ALPHA = 0.1;

/** Module names of the levels (state_dict spelling) and the w+ rows each one maps. */
const LEVELS: { level: Level; module: string; rows: (L: number) => [number, number] }[] = [
  { level: 'coarse', module: 'course_mapping', rows: () => [0, 4] },
  { level: 'medium', module: 'medium_mapping', rows: () => [4, 8] },
  { level: 'fine', module: 'fine_mapping', rows: (L) => [8, L] },
];

function mapperPrefixes(cfg: StyleClipConfig): string[] {
  if (cfg.type === 'SingleMapper') return ['mapper.mapping'];
  return LEVELS.filter((l) => cfg.levels[l.level]).map((l) => `mapper.${l.module}`);
}

/** The parameter specs (official keys, shapes, EqualLinear init: weight randn / lr_mul, bias 0). */
export function styleclipSpecs(cfg: StyleClipConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (const m of mapperPrefixes(cfg)) {
    for (let i = 1; i <= cfg.depth; i++) {
      specs.push({ name: `${m}.mapping.${i}.weight`, shape: [cfg.width, cfg.width], init: { kind: 'normal', std: 1 / LR_MUL } });
      specs.push({ name: `${m}.mapping.${i}.bias`, shape: [cfg.width], init: { kind: 'constant', value: 0 } });
    }
  }
  return specs;
}

/** Reads the mapper type, levels, width and depth off the `mapper.*` keys of a state dict. */
export function inferStyleClipConfig(sd: Map<string, TensorLike>, opts?: Record<string, unknown> | null): StyleClipConfig {
  const keys = [...sd.keys()].filter((k) => k.startsWith('mapper.'));
  if (!keys.length) throw new Error('StyleCLIP checkpoint: no mapper.* keys');
  const single = keys.some((k) => k.startsWith('mapper.mapping.'));
  const levels = Object.fromEntries(LEVELS.map((l) => [l.level, keys.some((k) => k.startsWith(`mapper.${l.module}.`))])) as Record<Level, boolean>;
  const anyLevel = Object.values(levels).some(Boolean);
  if (single && anyLevel) throw new Error('StyleCLIP checkpoint: has both SingleMapper (mapper.mapping.*) and LevelsMapper keys');
  if (!single && !anyLevel) throw new Error(`StyleCLIP checkpoint: unrecognised mapper keys (e.g. '${keys[0]}')`);
  const type: StyleClipMapperType = single ? 'SingleMapper' : 'LevelsMapper';
  if (opts && typeof opts.mapper_type === 'string' && opts.mapper_type !== type) {
    throw new Error(`StyleCLIP checkpoint: opts.mapper_type is '${opts.mapper_type}' but the keys are a ${type}`);
  }
  const first = single ? 'mapper.mapping' : `mapper.${LEVELS.find((l) => levels[l.level])!.module}`;
  const w1 = sd.get(`${first}.mapping.1.weight`);
  if (!w1) throw new Error(`StyleCLIP checkpoint: missing key '${first}.mapping.1.weight'`);
  if (w1.shape.length !== 2 || w1.shape[0] !== w1.shape[1]) throw new Error(`StyleCLIP checkpoint: '${first}.mapping.1.weight' has shape [${w1.shape.join(', ')}], expected [D, D]`);
  let depth = 0;
  while (sd.has(`${first}.mapping.${depth + 1}.weight`)) depth++;
  return { type, levels: single ? { coarse: false, medium: false, fine: false } : levels, width: w1.shape[0], depth };
}

/** One StyleCLIP Mapper: PixelNorm then `depth` EqualLinear + fused leaky ReLU. */
export function mapperMlp(x: Tensor, p: ParamRefs, prefix: string, depth: number): Tensor {
  let h = pixelNorm(x);
  for (let i = 1; i <= depth; i++) h = equalLinearLrelu(h, p, `${prefix}.mapping.${i}`, LR_MUL);
  return h;
}

/** The mapper's output M(w) for a w+ batch [B, L, D]. */
export function styleclipDelta(w: Tensor, p: ParamRefs, cfg: StyleClipConfig): Tensor {
  if (cfg.type === 'SingleMapper') return mapperMlp(w, p, 'mapper.mapping', cfg.depth);
  const L = w.shape[1];
  if (L <= 8) throw new Error(`LevelsMapper: w has ${L} rows; the coarse/medium/fine split needs more than 8`);
  return G.concat(LEVELS.map(({ level, module, rows }) => {
    const [a, b] = rows(L);
    const x = G.slice(w, [a], [b], [1]);
    return cfg.levels[level] ? mapperMlp(x, p, `mapper.${module}`, cfg.depth) : x.graph.zeros(x.shape);
  }), 1);
}

export interface StyleClipVjp {
  /** d loss / d parameter, by state_dict key */
  params: Map<string, Float32Array>;
  /** d loss / d w through the mapper only (add the cotangent of w_hat for the identity path) */
  w: Float32Array;
}

export class StyleClipMapper {
  private readonly sessions: SessionCache;

  constructor(readonly config: StyleClipConfig, readonly params: ParamSet, readonly opts: Record<string, unknown> = {}) {
    this.sessions = new SessionCache(params);
  }

  /** A fresh mapper with the official init (seeded). Defaults: LevelsMapper, all levels, 512, depth 4. */
  static create(cfg: Partial<StyleClipConfig> = {}, seed = 0): StyleClipMapper {
    const config: StyleClipConfig = {
      type: cfg.type ?? 'LevelsMapper', levels: cfg.levels ?? { coarse: true, medium: true, fine: true },
      width: cfg.width ?? 512, depth: cfg.depth ?? 4,
    };
    if (config.type === 'SingleMapper') config.levels = { coarse: false, medium: false, fine: false };
    return new StyleClipMapper(config, ParamSet.init(styleclipSpecs(config), seed), {
      mapper_type: config.type,
      no_coarse_mapper: config.type === 'LevelsMapper' && !config.levels.coarse,
      no_medium_mapper: config.type === 'LevelsMapper' && !config.levels.medium,
      no_fine_mapper: config.type === 'LevelsMapper' && !config.levels.fine,
    });
  }

  /** From the `mapper.*` keys of a state dict (other keys must not be passed). */
  static fromStateDict(sd: Map<string, TensorLike>, opts: Record<string, unknown> | null = null): StyleClipMapper {
    const config = inferStyleClipConfig(sd, opts);
    return new StyleClipMapper(config, ParamSet.fromStateDict(styleclipSpecs(config), sd, { what: 'StyleCLIP mapper' }), opts ?? {});
  }

  /**
   * An official StyleCLIP checkpoint (path, bytes or parsed tree). The `decoder.*` part (the
   * StyleGAN2 generator saved beside the mapper) is returned, prefix stripped, for the generator's
   * loader (null when the file has none).
   */
  static load(src: string | Uint8Array | PickleValue): { mapper: StyleClipMapper; decoder: Map<string, TensorData> | null } {
    const { stateDict, opts } = readCheckpoint(src);
    const { parts, rest } = splitByPrefix(stateDict, ['mapper.', 'decoder.']);
    if (rest.size) throw new Error(`StyleCLIP checkpoint: unexpected key '${[...rest.keys()][0]}' (expected mapper.* and decoder.*)`);
    const decoder = parts.get('decoder.')!;
    return { mapper: StyleClipMapper.fromStateDict(parts.get('mapper.')!, opts), decoder: decoder.size ? stripPrefix(decoder, 'decoder.') : null };
  }

  /** The graph builder bound to this mapper's config: M(w). */
  delta(w: Tensor, p: ParamRefs): Tensor { return styleclipDelta(w, p, this.config); }

  /** `{state_dict, opts}` in the official layout (mapper keys only; add `decoder.*` to run it in StyleCLIP). */
  checkpoint(): { state_dict: Map<string, TensorData>; opts: Record<string, unknown> } {
    return { state_dict: this.params.toStateDict(), opts: this.opts };
  }

  /** The forward/VJP session pair for a [B, L, D] batch (compiled on first use, then reused). */
  session(B: number, L: number): MapperSession {
    return this.sessions.get(`${B}x${L}`, () => ({
      name: 'styleclip_mapper',
      inputs: [{ name: 'w', shape: [B, L, this.config.width] }],
      build: (x, p) => this.delta(x.w, p),
    }));
  }

  /** M(w) and w_hat = w + alpha * M(w) (alpha defaults to StyleCLIP's 0.1), with the current parameters. */
  async edit(w: HostTensor, opts: { alpha?: number } = {}): Promise<{ delta: HostTensor; wHat: HostTensor }> {
    const [B, L] = latentShape(w, this.config.width);
    const delta = await this.session(B, L).forward({ w: w.data as Float32Array });
    return { delta, wHat: { data: addScaled(w.data as Float32Array, delta.data as Float32Array, opts.alpha ?? STYLECLIP_ALPHA), shape: [...w.shape] } };
  }

  /** Cotangent of M(w) -> cotangents of every parameter and of w (the forward is recomputed inside). */
  async vjp(w: HostTensor, gDelta: Float32Array): Promise<StyleClipVjp> {
    const [B, L] = latentShape(w, this.config.width);
    const r = await this.session(B, L).vjp({ w: w.data as Float32Array }, gDelta);
    return { params: r.params, w: r.inputs.w };
  }
}
