// FFCLIP DynamicMapper (Zhu et al., "One Model to Edit Them All", NeurIPS 2022; official code
// kristen-rang/FFCLIP edit/dynamic_mapper.py + edit/modules.py): one model for free-form text.
//
//   Δw = block_3 ∘ block_2 ∘ block_1 ∘ block_0 (w ; e),   w_hat = w + Δw      (no 0.1 factor)
//
// Each semantic modulation block (`att_module`), on x [B, L, D] and the text embedding e [B, 1, E]:
//   x_n   = PixelNorm(x)                          over the L layer rows (StyleGAN2 PixelNorm on dim 1)
//   -- semantic alignment --
//   A: K = x_n W_k^T, V = x_n W_v^T, Q = e W_q^T   text = query, latent = key and value (no biases)
//      a = softmax_L(K Q^T)                        one score per layer row, no 1/sqrt(d)
//      h = a * V                                   rows gated by their weight, not summed
//   B: (`attention_layer`, the code's channel attention)
//      q2 = x_n A_q^T, v2 = x_n A_v^T              [B, L, D] (named q, but from the latent)
//      k2 = e^T α^T                                [B, E, L]: Linear(1 -> L) of each text channel
//      P  = softmax_D(k2 q2 / sqrt(dk))            [B, E, D], rank one, softmax over latent channels
//      t  = LN(mean_L(v2 P))                       [B, 1, D], LayerNorm without affine
//   align = LN(h + t)                              over the D channels, no affine
//   -- semantic injection --
//   out = LeakyReLU_0.01(align * (1 + γ(e)) + β(e))   γ, β: Linear, LayerNorm (affine), LeakyReLU 0.01, Linear
//
// Checkpoint: Coach.py saves `{'state_dict': DDP(EditModel).state_dict(), 'opts'}`:
// `module.generator.*` (the frozen StyleGAN2-1024) then `module.att_mapper.att_mapper.<i>.*`.
// The mapper keys load here; the generator keys are returned, prefix stripped, for its loader.
//
// Where the paper (only its abstract and third-party notes could be read) and the code leave room,
// these are the choices made, with the reason:
//  1. The code is the specification, quirks included — branch B (absent from what could be read of
//     the paper), PixelNorm over the layer axis at the start of every block, no 1/sqrt(d) in
//     branch A, LN(h + t) without affine, the LeakyReLU after the last block, w_hat = w + Δw with
//     no scale: the released weights were trained on exactly this function.
//  2. dk = the latent width D, read off the checkpoint. The code hard-codes `self.dk = 512`, which
//     is D at real size; tying it to D is the only reading that also fits other widths (the
//     reduced-width fixture was generated with dk = D).
//  3. Layer count L from `attention_layer.k_matrix.weight` [L, 1] and block count from the keys.
//     The code hard-codes 18 rows (FFHQ-1024) and 4 blocks; LSUN car/church generators have 16/14
//     rows, and reading both off the checkpoint lets such a mapper load without a code change.
//  4. The text embedding is the raw CLIP `encode_text` output (no template, no L2 normalisation),
//     taken as [B, E]; the official model needs [B, 1, E] and we add that axis inside. E must
//     equal D: branch B contracts the latent channels of v2 with the text channels of P.
//  5. `fc` (Linear(D, D), built but never called) is kept as a parameter so checkpoints round-trip
//     and strict loading holds; its gradient is exactly zero (Adam then never moves it, as in the
//     official training).
//  6. Init for training from scratch: PyTorch defaults of every module (Linear U(±1/sqrt(fan_in)),
//     so the L scalars of Linear(1, L) are U(-1, 1); LayerNorm weight 1, bias 0), seeded.
//  7. Edit strength: `alpha` scales Δw (default 1 = the official function); values other than 1
//     are outside what the model was trained for, offered as a user-facing slider only.
//  8. Numerics are float32 as in the official model. The block stack is ill-conditioned (rows
//     nearly equal after LN(h + t), channels crushed by the LeakyReLU, then re-expanded by the
//     next PixelNorm): we do not add epsilons or clamps, which would change the trained function.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { HostTensor } from '../runtime/session.ts';
import type { PickleValue } from '../io/pickle.ts';
import type { TensorData } from '../io/tensor.ts';
import { ParamSet, torchLayerNorm, torchLinear as linearSpecs, type ParamRefs, type ParamSpec, type TensorLike } from './params.ts';
import { conditionMlp, pixelNorm, torchLinear } from './layers.ts';
import { addScaled, embeddingData, latentShape, readCheckpoint } from './checkpoint.ts';
import { SessionCache, type MapperSession } from './session.ts';

export interface FfclipConfig {
  /** latent width D (512) */
  width: number;
  /** text embedding width E (= D) */
  embedWidth: number;
  /** w+ rows L (18 for a 1024 generator) */
  layers: number;
  /** semantic modulation blocks (4) */
  blocks: number;
}

/** The canonical key prefix: Coach.py saves the DDP-wrapped EditModel. */
export const FFCLIP_PREFIX = 'module.att_mapper.att_mapper.';
/** Layouts a mapper state dict may come in (DDP EditModel, plain EditModel, Dynamic_mapper alone). */
const ACCEPTED_PREFIXES = ['module.att_mapper.att_mapper.', 'att_mapper.att_mapper.', 'att_mapper.'];
/** FFCLIP applies Δw unscaled. */
export const FFCLIP_ALPHA = 1;

/** The parameter specs of block i, in the official state_dict order, with PyTorch default init. */
function blockSpecs(i: number, cfg: FfclipConfig): ParamSpec[] {
  const b = `${FFCLIP_PREFIX}${i}`;
  const D = cfg.width; const E = cfg.embedWidth;
  const mlp = (n: string) => [...linearSpecs(`${b}.${n}.0`, E, D), ...torchLayerNorm(`${b}.${n}.1`, D), ...linearSpecs(`${b}.${n}.3`, D, D)];
  return [
    ...linearSpecs(`${b}.q_matrix`, E, D, false),
    ...linearSpecs(`${b}.k_matrix`, D, D, false),
    ...linearSpecs(`${b}.v_matrix`, D, D, false),
    ...mlp('gamma_'),
    ...mlp('beta_'),
    ...linearSpecs(`${b}.fc`, D, D, true, false),
    ...linearSpecs(`${b}.attention_layer.q_matrix`, D, D, false),
    ...linearSpecs(`${b}.attention_layer.k_matrix`, 1, cfg.layers, false),
    ...linearSpecs(`${b}.attention_layer.v_matrix`, D, D, false),
  ];
}

export function ffclipSpecs(cfg: FfclipConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (let i = 0; i < cfg.blocks; i++) specs.push(...blockSpecs(i, cfg));
  return specs;
}

/** Width, text width, layer and block counts from a state dict with canonical keys. */
export function inferFfclipConfig(sd: Map<string, TensorLike>): FfclipConfig {
  const need = (k: string) => {
    const t = sd.get(k);
    if (!t) throw new Error(`FFCLIP checkpoint: missing key '${k}'`);
    return t;
  };
  let blocks = 0;
  while (sd.has(`${FFCLIP_PREFIX}${blocks}.q_matrix.weight`)) blocks++;
  if (!blocks) throw new Error(`FFCLIP checkpoint: no '${FFCLIP_PREFIX}0.q_matrix.weight'`);
  const k = need(`${FFCLIP_PREFIX}0.k_matrix.weight`);
  const q = need(`${FFCLIP_PREFIX}0.q_matrix.weight`);
  const a = need(`${FFCLIP_PREFIX}0.attention_layer.k_matrix.weight`);
  if (a.shape.length !== 2 || a.shape[1] !== 1) throw new Error(`FFCLIP checkpoint: '${FFCLIP_PREFIX}0.attention_layer.k_matrix.weight' has shape [${a.shape.join(', ')}], expected [L, 1]`);
  const cfg = { width: k.shape[0], embedWidth: q.shape[1], layers: a.shape[0], blocks };
  if (cfg.embedWidth !== cfg.width) {
    throw new Error(`FFCLIP checkpoint: text width ${cfg.embedWidth} ('q_matrix.weight' [${q.shape.join(', ')}]) differs from latent width ${cfg.width}; the channel attention needs them equal`);
  }
  return cfg;
}

/** Named intermediates of a block, for verification (`<prefix>pixelnorm`, `<prefix>K`, ...). */
export type Taps = Record<string, Tensor>;

/** One semantic modulation block (`att_module`): x [B, L, D], e [B, 1, E] -> [B, L, D]. */
export function semanticModulationBlock(x: Tensor, e: Tensor, p: ParamRefs, name: string, taps?: Taps, tap = ''): Tensor {
  const D = x.shape[2];
  const keep = (k: string, t: Tensor) => { if (taps) taps[tap + k] = t; return t; };
  const xn = keep('pixelnorm', pixelNorm(x));

  // Semantic alignment, branch A: which layer rows does this text concern?
  const K = keep('K', torchLinear(xn, p, `${name}.k_matrix`, false));
  const V = keep('V', torchLinear(xn, p, `${name}.v_matrix`, false));
  const Q = keep('Q', torchLinear(e, p, `${name}.q_matrix`, false));
  const score = keep('layer_score', G.matmul(K, G.transpose(Q, [0, 2, 1])));
  const a = keep('layer_attn', G.softmax(score, 1));
  const h = keep('h_layer', G.mul(a, V));

  // Branch B (`attention_mapping`): a text-conditioned mix of the latent channels, shared by all rows.
  const c = `${name}.attention_layer`;
  const q2 = keep('chan.q', torchLinear(xn, p, `${c}.q_matrix`, false));
  const k2 = keep('chan.k', torchLinear(G.transpose(e, [0, 2, 1]), p, `${c}.k_matrix`, false));
  const v2 = keep('chan.v', torchLinear(xn, p, `${c}.v_matrix`, false));
  const logits = keep('chan.logits', G.div(G.matmul(k2, q2), Math.sqrt(D)));
  const P = keep('chan.attn', G.softmax(logits, -1));
  const vP = keep('chan.vP', G.matmul(v2, P));
  const pool = keep('chan.pool', G.reduceMean(vP, [1], true));
  const t = keep('t', G.layerNorm(pool, null, null, 1e-5));

  const pre = keep('pre_ln', G.add(h, t));
  const align = keep('align', G.layerNorm(pre, null, null, 1e-5));

  // Semantic injection: FiLM from the text, the same for every row.
  const gamma = keep('gamma', conditionMlp(e, p, `${name}.gamma_`));
  const beta = keep('beta', conditionMlp(e, p, `${name}.beta_`));
  const film = keep('film', G.add(G.mul(align, G.add(gamma, 1)), beta));
  return keep('out', G.leakyRelu(film, 0.01));
}

/** Δw for w [B, L, D] and text embeddings e [B, E]. Taps get `block<i>.<name>`. */
export function ffclipDelta(w: Tensor, e: Tensor, p: ParamRefs, cfg: FfclipConfig, taps?: Taps): Tensor {
  if (w.shape[1] !== cfg.layers) throw new Error(`FFCLIP mapper: w has ${w.shape[1]} rows, the checkpoint's ${cfg.layers}`);
  const e3 = G.unsqueeze(e, 1);
  let x = w;
  for (let i = 0; i < cfg.blocks; i++) x = semanticModulationBlock(x, e3, p, `${FFCLIP_PREFIX}${i}`, taps, `block${i}.`);
  return x;
}

export interface FfclipVjp {
  /** d loss / d parameter, by state_dict key (exact zeros for the unused fc.*) */
  params: Map<string, Float32Array>;
  /** d loss / d w through the mapper only (add the cotangent of w_hat for the identity path) */
  w: Float32Array;
  /** d loss / d e, [B, E] (the official training computes e under no_grad; given for chaining into CLIP) */
  e: Float32Array;
}

/** Rename a mapper state dict's keys to the canonical `module.att_mapper.att_mapper.<i>.*`. */
export function canonicalFfclipKeys<T>(sd: Map<string, T>): Map<string, T> {
  const prefix = ACCEPTED_PREFIXES.find((pre) => [...sd.keys()].some((k) => k.startsWith(`${pre}0.`)));
  if (!prefix) throw new Error(`FFCLIP checkpoint: no mapper keys (expected '${FFCLIP_PREFIX}0.*')`);
  const out = new Map<string, T>();
  for (const [k, v] of sd) {
    if (!k.startsWith(prefix)) throw new Error(`FFCLIP checkpoint: unexpected key '${k}' (mapper keys start with '${prefix}')`);
    out.set(FFCLIP_PREFIX + k.slice(prefix.length), v);
  }
  return out;
}

export class FfclipMapper {
  private readonly sessions: SessionCache;

  constructor(readonly config: FfclipConfig, readonly params: ParamSet, readonly opts: Record<string, unknown> = {}) {
    this.sessions = new SessionCache(params);
  }

  /** A fresh mapper with the official (PyTorch default) init, seeded. Defaults: 512 wide, 18 rows, 4 blocks. */
  static create(cfg: Partial<FfclipConfig> = {}, seed = 0): FfclipMapper {
    const width = cfg.width ?? 512;
    const config: FfclipConfig = { width, embedWidth: cfg.embedWidth ?? width, layers: cfg.layers ?? 18, blocks: cfg.blocks ?? 4 };
    if (config.embedWidth !== config.width) throw new Error('FFCLIP mapper: text width must equal latent width');
    return new FfclipMapper(config, ParamSet.init(ffclipSpecs(config), seed));
  }

  /** From a mapper state dict in any accepted layout (DDP `module.att_mapper.att_mapper.*`, `att_mapper.att_mapper.*`, `att_mapper.*`). */
  static fromStateDict(sd: Map<string, TensorLike>, opts: Record<string, unknown> | null = null): FfclipMapper {
    const canon = canonicalFfclipKeys(sd);
    const config = inferFfclipConfig(canon);
    return new FfclipMapper(config, ParamSet.fromStateDict(ffclipSpecs(config), canon, { what: 'FFCLIP mapper' }), opts ?? {});
  }

  /**
   * An official FFCLIP checkpoint (path, bytes or parsed tree): the mapper, and the generator
   * saved beside it (`module.generator.*` / `generator.*`, prefix stripped; null when absent).
   */
  static load(src: string | Uint8Array | PickleValue): { mapper: FfclipMapper; generator: Map<string, TensorData> | null } {
    const { stateDict, opts } = readCheckpoint(src);
    const mapperSd = new Map<string, TensorData>();
    const generator = new Map<string, TensorData>();
    for (const [k, v] of stateDict) {
      const gen = ['module.generator.', 'generator.'].find((pre) => k.startsWith(pre));
      if (gen) generator.set(k.slice(gen.length), v);
      else mapperSd.set(k, v);
    }
    return { mapper: FfclipMapper.fromStateDict(mapperSd, opts), generator: generator.size ? generator : null };
  }

  /** The graph builder bound to this mapper's config: Δw(w, e). */
  delta(w: Tensor, e: Tensor, p: ParamRefs, taps?: Taps): Tensor { return ffclipDelta(w, e, p, this.config, taps); }

  /** `{state_dict, opts}` with the official mapper keys (the real file also holds module.generator.*). */
  checkpoint(): { state_dict: Map<string, TensorData>; opts: Record<string, unknown> } {
    return { state_dict: this.params.toStateDict(), opts: this.opts };
  }

  /** The session pair for a batch of B (compiled on first use). */
  session(B: number): MapperSession {
    const { width, embedWidth, layers } = this.config;
    return this.sessions.get(`${B}`, () => ({
      name: 'ffclip_mapper',
      inputs: [{ name: 'w', shape: [B, layers, width] }, { name: 'e', shape: [B, embedWidth] }],
      build: (x, p) => this.delta(x.w, x.e, p),
    }));
  }

  private feeds(w: HostTensor, e: Float32Array | HostTensor): { B: number; feeds: Record<string, Float32Array> } {
    const [B, L] = latentShape(w, this.config.width);
    if (L !== this.config.layers) throw new Error(`w: ${L} rows, the FFCLIP mapper has ${this.config.layers}`);
    return { B, feeds: { w: w.data as Float32Array, e: embeddingData(e, B, this.config.embedWidth, 'text embedding') } };
  }

  /** Δw and w_hat = w + alpha * Δw (alpha defaults to 1, the official edit). */
  async edit(w: HostTensor, e: Float32Array | HostTensor, opts: { alpha?: number } = {}): Promise<{ delta: HostTensor; wHat: HostTensor }> {
    const { B, feeds } = this.feeds(w, e);
    const delta = await this.session(B).forward(feeds);
    return { delta, wHat: { data: addScaled(feeds.w, delta.data as Float32Array, opts.alpha ?? FFCLIP_ALPHA), shape: [...w.shape] } };
  }

  /** Cotangent of Δw -> cotangents of every parameter, of w and of e (forward recomputed inside). */
  async vjp(w: HostTensor, e: Float32Array | HostTensor, gDelta: Float32Array): Promise<FfclipVjp> {
    const { B, feeds } = this.feeds(w, e);
    const r = await this.session(B).vjp(feeds, gDelta);
    return { params: r.params, w: r.inputs.w, e: r.inputs.e };
  }
}
