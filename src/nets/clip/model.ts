// OpenAI CLIP (ViT variants) as graph builders, following openai/CLIP clip/model.py.
//
// Reads top to bottom like model.py: QuickGELU and LayerNorm, the multi-head attention of
// nn.MultiheadAttention (packed in_proj_weight / in_proj_bias, out_proj), ResidualAttentionBlock,
// Transformer, VisionTransformer, the text encoder, and the CLIP forward (logits). Every weight is
// fetched by its OpenAI state-dict key through a `Params` function, which also checks the shape
// the architecture demands — so the keys and shapes this file asks for ARE the state-dict layout
// (see `clipStateSpec`, tested against official_vitb32_keys.json).
//
// Layout: like model.py, the transformers run sequence-first (LND: [tokens, batch, width]) and
// attention splits heads exactly as nn.MultiheadAttention does ([L, N*h, hd] -> [N*h, L, hd]),
// so the intermediate activations line up with PyTorch's hooks. Everything is float32: the
// official checkpoints store most matrices as float16 (convert_weights); loaders upcast them
// exactly, so CLIP's "LayerNorm in fp32" subclass is just LayerNorm here.
//
// ResNet CLIP (RN50, RN101, RN50x4, ...) is not implemented: `inferClipConfig` refuses it.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';

/** CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, context_length, vocab_size, transformer_width, transformer_heads, transformer_layers) */
export interface ClipConfig {
  embedDim: number;
  imageResolution: number;
  visionLayers: number;
  visionWidth: number;
  visionPatchSize: number;
  /** model.py hard-codes vision_width // 64 */
  visionHeads: number;
  contextLength: number;
  vocabSize: number;
  transformerWidth: number;
  transformerHeads: number;
  transformerLayers: number;
}

/** ViT-B/32 as `clip.load("ViT-B/32")` builds it. */
export const VIT_B_32: ClipConfig = {
  embedDim: 512, imageResolution: 224, visionLayers: 12, visionWidth: 768, visionPatchSize: 32, visionHeads: 12,
  contextLength: 77, vocabSize: 49408, transformerWidth: 512, transformerHeads: 8, transformerLayers: 12,
};

/** A weight as the loaders hand it over: float32, row-major. */
export interface Weight { readonly shape: readonly number[]; readonly data: Float32Array }

/**
 * Fetches the tensor for a state-dict key; `shape` is what the architecture needs, and a provider
 * must refuse a weight of any other shape (naming the key).
 */
export type Params = (key: string, shape: readonly number[]) => Tensor;

/** Extra buffers the official TorchScript archives carry; `build_model` deletes exactly these. */
export const JIT_EXTRA_BUFFERS = ['input_resolution', 'context_length', 'vocab_size'] as const;

// ---------------------------------------------------------------------------------------------
// Configuration from the weights, as clip.model.build_model() infers it.

/**
 * build_model(): every size from a tensor shape. Heads are not stored anywhere in the weights:
 * model.py fixes vision heads = vision_width // 64, and build_model sets text heads =
 * transformer_width // 64 — pass `transformerHeads` for a model built with other text heads.
 */
export function inferClipConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  opts: { transformerHeads?: number } = {},
): ClipConfig {
  const need = (k: string): readonly number[] => {
    const s = shapes.get(k);
    if (!s) throw new Error(`CLIP weights: missing '${k}'`);
    return s;
  };
  if (!shapes.has('visual.proj')) {
    if ([...shapes.keys()].some((k) => k.startsWith('visual.layer1.') || k.startsWith('visual.attnpool.'))) {
      throw new Error('CLIP weights: this is a ResNet CLIP (visual.layer1 / visual.attnpool); only the ViT variants (ViT-B/32, ViT-B/16, ViT-L/14) are supported');
    }
    throw new Error("CLIP weights: missing 'visual.proj' (not a ViT CLIP state dict)");
  }
  const conv1 = need('visual.conv1.weight');
  const visionWidth = conv1[0];
  const visionPatchSize = conv1[conv1.length - 1];
  const visionLayers = countBlocks(shapes, 'visual.transformer.resblocks.');
  const nPos = need('visual.positional_embedding')[0];
  const grid = Math.round(Math.sqrt(nPos - 1));
  if (grid * grid + 1 !== nPos) throw new Error(`CLIP weights: visual.positional_embedding has ${nPos} rows, not grid^2 + 1`);
  const transformerWidth = need('ln_final.weight')[0];
  const cfg: ClipConfig = {
    embedDim: need('text_projection')[1],
    imageResolution: visionPatchSize * grid,
    visionLayers,
    visionWidth,
    visionPatchSize,
    visionHeads: Math.floor(visionWidth / 64),
    contextLength: need('positional_embedding')[0],
    vocabSize: need('token_embedding.weight')[0],
    transformerWidth,
    transformerHeads: opts.transformerHeads ?? Math.floor(transformerWidth / 64),
    transformerLayers: countBlocks(shapes, 'transformer.resblocks.'),
  };
  checkConfig(cfg);
  return cfg;
}

function countBlocks(shapes: ReadonlyMap<string, unknown>, prefix: string): number {
  const ids = new Set<string>();
  for (const k of shapes.keys()) if (k.startsWith(prefix)) ids.add(k.slice(prefix.length).split('.')[0]);
  return ids.size;
}

export function checkConfig(c: ClipConfig): void {
  for (const [name, heads, width] of [['vision', c.visionHeads, c.visionWidth], ['text', c.transformerHeads, c.transformerWidth]] as const) {
    if (!Number.isInteger(heads) || heads < 1) {
      throw new Error(`CLIP config: ${name} width ${width} gives ${heads} attention heads (OpenAI uses width // 64); the head count is not stored in the weights — pass it explicitly`);
    }
    if (width % heads !== 0) throw new Error(`CLIP config: ${name} width ${width} is not divisible by ${heads} heads`);
  }
  // VisionTransformer keeps (R // patch)^2 patches: a resolution that is not a multiple of the patch
  // size is legal (conv1's stride drops the remainder), only one below the patch size is not
  if (c.imageResolution < c.visionPatchSize) throw new Error(`CLIP config: resolution ${c.imageResolution} is smaller than patch ${c.visionPatchSize}`);
  if (c.visionLayers < 1 || c.transformerLayers < 1) throw new Error('CLIP config: no transformer blocks found');
}

// ---------------------------------------------------------------------------------------------
// The state-dict layout, in CLIP.state_dict() order.

function blockSpec(prefix: string, d: number): [string, number[]][] {
  return [
    [`${prefix}.attn.in_proj_weight`, [3 * d, d]],
    [`${prefix}.attn.in_proj_bias`, [3 * d]],
    [`${prefix}.attn.out_proj.weight`, [d, d]],
    [`${prefix}.attn.out_proj.bias`, [d]],
    [`${prefix}.ln_1.weight`, [d]],
    [`${prefix}.ln_1.bias`, [d]],
    [`${prefix}.mlp.c_fc.weight`, [4 * d, d]],
    [`${prefix}.mlp.c_fc.bias`, [4 * d]],
    [`${prefix}.mlp.c_proj.weight`, [d, 4 * d]],
    [`${prefix}.mlp.c_proj.bias`, [d]],
    [`${prefix}.ln_2.weight`, [d]],
    [`${prefix}.ln_2.bias`, [d]],
  ];
}

/** Every key of `CLIP(...).state_dict()` with its shape, in the order PyTorch lists them. */
export function clipStateSpec(c: ClipConfig): [string, number[]][] {
  const vw = c.visionWidth; const tw = c.transformerWidth;
  const grid = Math.floor(c.imageResolution / c.visionPatchSize);
  const spec: [string, number[]][] = [
    ['positional_embedding', [c.contextLength, tw]],
    ['text_projection', [tw, c.embedDim]],
    ['logit_scale', []],
    ['visual.class_embedding', [vw]],
    ['visual.positional_embedding', [grid * grid + 1, vw]],
    ['visual.proj', [vw, c.embedDim]],
    ['visual.conv1.weight', [vw, 3, c.visionPatchSize, c.visionPatchSize]],
    ['visual.ln_pre.weight', [vw]],
    ['visual.ln_pre.bias', [vw]],
  ];
  for (let i = 0; i < c.visionLayers; i++) spec.push(...blockSpec(`visual.transformer.resblocks.${i}`, vw));
  spec.push(['visual.ln_post.weight', [vw]], ['visual.ln_post.bias', [vw]]);
  for (let i = 0; i < c.transformerLayers; i++) spec.push(...blockSpec(`transformer.resblocks.${i}`, tw));
  spec.push(['token_embedding.weight', [c.vocabSize, tw]], ['ln_final.weight', [tw]], ['ln_final.bias', [tw]]);
  return spec;
}

/**
 * The dtype `clip.model.convert_weights` leaves a key in (what CUDA-saved checkpoints and the
 * official archive store): float16 for Conv/Linear weights and biases, MHA in_proj_*, `proj` and
 * `text_projection`; float32 for LayerNorms, embeddings and logit_scale.
 */
export function convertWeightsDtype(key: string): 'float16' | 'float32' {
  if (key === 'text_projection' || key === 'visual.proj' || key === 'visual.conv1.weight') return 'float16';
  if (/\.attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$/.test(key)) return 'float16';
  if (/\.mlp\.c_(fc|proj)\.(weight|bias)$/.test(key)) return 'float16';
  return 'float32';
}

// ---------------------------------------------------------------------------------------------
// Binding weights into a graph.

/**
 * A `Params` over float32 weights: frozen keys become graph constants, keys listed in `inputs`
 * become graph inputs of the same name (e.g. `token_embedding.weight` to differentiate w.r.t. it).
 */
export function bindParams(g: G.Graph, weights: ReadonlyMap<string, Weight>, opts: { inputs?: Iterable<string> } = {}): Params {
  const asInput = new Set(opts.inputs ?? []);
  const bound = new Map<string, Tensor>();
  return (key, shape) => {
    const w = weights.get(key);
    if (!w) throw new Error(`CLIP weights: missing '${key}' [${shape.join(', ')}]`);
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`CLIP weights: '${key}' has shape [${w.shape.join(', ')}], the model needs [${shape.join(', ')}]`);
    }
    let t = bound.get(key);
    if (!t) {
      t = asInput.has(key) ? g.input(key, shape) : g.constant(w.data, shape);
      bound.set(key, t);
    }
    return t;
  };
}

// ---------------------------------------------------------------------------------------------
// Blocks (model.py: LayerNorm, QuickGELU, ResidualAttentionBlock, Transformer).

function layerNorm(p: Params, prefix: string, x: Tensor): Tensor {
  const d = x.shape[x.rank - 1];
  return G.layerNorm(x, p(`${prefix}.weight`, [d]), p(`${prefix}.bias`, [d]), 1e-5);
}

/**
 * nn.MultiheadAttention(d, heads)(x, x, x, attn_mask) on x [L, N, d], as PyTorch 1.13's
 * multi_head_attention_forward computes it: one packed projection split into q, k, v; heads
 * folded into the batch ([L, N*h, hd] -> [N*h, L, hd]); q / sqrt(hd); additive mask; softmax;
 * heads unfolded; out_proj.
 */
function multiheadAttention(p: Params, prefix: string, x: Tensor, heads: number, mask: Tensor | null): Tensor {
  const [L, N, d] = x.shape;
  const hd = d / heads;
  const qkv = G.linear(x, p(`${prefix}.in_proj_weight`, [3 * d, d]), p(`${prefix}.in_proj_bias`, [3 * d]));
  const [q, k, v] = G.split(qkv, [d, d, d], -1);
  const toHeads = (t: Tensor) => G.transpose(G.reshape(t, [L, N * heads, hd]), [1, 0, 2]);
  const qs = G.div(toHeads(q), Math.sqrt(hd));
  let scores = G.matmul(qs, G.transpose(toHeads(k), [0, 2, 1])); // [N*h, L, L]
  if (mask) scores = G.add(scores, mask);
  const o = G.matmul(G.softmax(scores, -1), toHeads(v)); // [N*h, L, hd]
  const merged = G.reshape(G.transpose(o, [1, 0, 2]), [L, N, d]);
  return G.linear(merged, p(`${prefix}.out_proj.weight`, [d, d]), p(`${prefix}.out_proj.bias`, [d]));
}

function mlp(p: Params, prefix: string, x: Tensor): Tensor {
  const d = x.shape[x.rank - 1];
  const h = G.linear(x, p(`${prefix}.c_fc.weight`, [4 * d, d]), p(`${prefix}.c_fc.bias`, [4 * d]));
  return G.linear(G.quickGelu(h), p(`${prefix}.c_proj.weight`, [d, 4 * d]), p(`${prefix}.c_proj.bias`, [d]));
}

/** Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
function residualAttentionBlock(p: Params, prefix: string, x: Tensor, heads: number, mask: Tensor | null): Tensor {
  x = G.add(x, multiheadAttention(p, `${prefix}.attn`, layerNorm(p, `${prefix}.ln_1`, x), heads, mask));
  x = G.add(x, mlp(p, `${prefix}.mlp`, layerNorm(p, `${prefix}.ln_2`, x)));
  return x;
}

function transformer(p: Params, prefix: string, x: Tensor, layers: number, heads: number, mask: Tensor | null): Tensor {
  for (let i = 0; i < layers; i++) x = residualAttentionBlock(p, `${prefix}.resblocks.${i}`, x, heads, mask);
  return x;
}

/** CLIP.build_attention_mask: additive causal mask, -inf above the diagonal (token i sees 0..i). */
export function causalMask(g: G.Graph, n: number): Tensor {
  const m = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) m[i * n + j] = -Infinity;
  return g.constant(m, [n, n]);
}

/** Named intermediate activations, as the fixtures hook them (`act.*` in io.safetensors). */
export type Taps = Record<string, Tensor>;

// ---------------------------------------------------------------------------------------------
// Image encoder (VisionTransformer) — CLIP.encode_image.

/** image [N, 3, R, R] (already normalised as CLIP expects) -> features [N, embed_dim] */
export function encodeImage(p: Params, c: ClipConfig, image: Tensor, taps?: Taps): Tensor {
  const [N, C, H, W] = image.shape;
  const R = c.imageResolution; const P = c.visionPatchSize; const w = c.visionWidth;
  const grid = Math.floor(R / P);
  // conv1 (kernel = stride = P, no padding) drops a remainder below P, so any size with the same
  // patch grid gives the same tokens (as in PyTorch, where the positional embedding fixes the grid)
  if (image.rank !== 4 || C !== 3 || Math.floor(H / P) !== grid || Math.floor(W / P) !== grid) {
    throw new Error(`CLIP encodeImage: image must be [N, 3, ${R}, ${R}], got [${image.shape.join(', ')}]`);
  }
  let x = G.conv2d(image, p('visual.conv1.weight', [w, 3, P, P]), null, { stride: P }); // [N, w, grid, grid]
  if (taps) taps.visual_conv1 = x;
  x = G.transpose(G.reshape(x, [N, w, grid * grid]), [0, 2, 1]); // [N, grid^2, w]
  const cls = G.expand(G.reshape(p('visual.class_embedding', [w]), [1, 1, w]), [N, 1, w]);
  x = G.concat([cls, x], 1); // [N, grid^2 + 1, w]
  x = G.add(x, p('visual.positional_embedding', [grid * grid + 1, w]));
  x = layerNorm(p, 'visual.ln_pre', x);
  if (taps) taps.visual_ln_pre = x;

  x = G.transpose(x, [1, 0, 2]); // NLD -> LND
  x = transformer(p, 'visual.transformer', x, c.visionLayers, c.visionHeads, null);
  if (taps) taps.visual_transformer = x;
  x = G.transpose(x, [1, 0, 2]); // LND -> NLD

  x = layerNorm(p, 'visual.ln_post', G.select(x, 1, 0)); // the class token
  if (taps) taps.visual_ln_post = x;
  return G.matmul(x, p('visual.proj', [w, c.embedDim])); // x @ proj (not transposed)
}

// ---------------------------------------------------------------------------------------------
// Text encoder — CLIP.encode_text.

/** tokens [N, context_length] int32 (as clip.tokenize gives) -> features [N, embed_dim] */
export function encodeText(p: Params, c: ClipConfig, text: Tensor, taps?: Taps): Tensor {
  const [N, L] = text.shape;
  const w = c.transformerWidth;
  if (text.rank !== 2 || L !== c.contextLength || (text.dtype !== 'int32' && text.dtype !== 'int64')) {
    throw new Error(`CLIP encodeText: tokens must be int32/int64 [N, ${c.contextLength}], got ${text.dtype} [${text.shape.join(', ')}]`);
  }
  let x = G.gather(p('token_embedding.weight', [c.vocabSize, w]), text, 0); // [N, L, w]
  x = G.add(x, p('positional_embedding', [L, w]));
  x = G.transpose(x, [1, 0, 2]); // NLD -> LND
  x = transformer(p, 'transformer', x, c.transformerLayers, c.transformerHeads, causalMask(text.graph, L));
  if (taps) taps.text_transformer = x;
  x = G.transpose(x, [1, 0, 2]); // LND -> NLD
  x = layerNorm(p, 'ln_final', x);
  if (taps) taps.text_ln_final = x;

  // Features of the EOT token, the largest id of each row: x[arange(N), text.argmax(-1)].
  // Gathered as a one-hot matmul so the cotangent flows back to exactly that position
  // (argmax picks the first maximum, as torch.argmax does).
  const eot = G.argmax(G.cast(text, 'float32'), -1); // [N] int64; ids < 2^24 are exact in float32
  const positions = text.graph.constant(BigInt64Array.from({ length: L }, (_, i) => BigInt(i)), [L]);
  const oneHot = G.cast(G.equal(G.unsqueeze(eot, 1), positions), 'float32'); // [N, L]
  x = G.reshape(G.matmul(G.unsqueeze(oneHot, 1), x), [N, w]); // [N, w]
  return G.matmul(x, p('text_projection', [w, c.embedDim]));
}

// ---------------------------------------------------------------------------------------------
// CLIP.forward

/** exp(logit_scale) * normalised image @ normalised text^T, and its transpose. */
export function clipLogits(p: Params, imageFeatures: Tensor, textFeatures: Tensor): { logitsPerImage: Tensor; logitsPerText: Tensor } {
  const img = G.divNorm(imageFeatures, -1);
  const txt = G.divNorm(textFeatures, -1);
  const scale = G.exp(p('logit_scale', []));
  const logitsPerImage = G.matmul(G.mul(scale, img), G.mT(txt)); // (logit_scale * img) @ txt.t(), as Python parses it
  return { logitsPerImage, logitsPerText: G.mT(logitsPerImage) };
}

export function clipForward(p: Params, c: ClipConfig, image: Tensor, text: Tensor): { logitsPerImage: Tensor; logitsPerText: Tensor } {
  return clipLogits(p, encodeImage(p, c, image), encodeText(p, c, text));
}
