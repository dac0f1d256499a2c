// CLIP weights from the files people have: OpenAI's TorchScript archive (`ViT-B-32.pt`), a plain
// `torch.save(model.state_dict())`, safetensors in OpenAI key names, and the Hugging Face
// `openai/clip-vit-base-patch32` layout (safetensors or pytorch_model.bin). Whatever the source,
// the result is the OpenAI state dict in float32 (float16/bfloat16 storages upcast exactly, each
// tensor by its own dtype — the official archive mixes them), checked key by key against the
// layout the config implies: missing, unexpected and mis-shaped keys are all named in one error.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkpointFormat, flattenStateDict, loadCheckpoint } from '../../io/torch.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import { TensorData, isFloatDType, toFloat32Array } from '../../io/tensor.ts';
import { JIT_EXTRA_BUFFERS, checkConfig, clipStateSpec, inferClipConfig, type ClipConfig, type Weight } from './model.ts';

export type ClipFileFormat = 'torchscript' | 'state_dict' | 'safetensors';
export type ClipKeyLayout = 'openai' | 'hf';

export interface ClipLoadOptions {
  /** text attention heads when they are not transformer_width // 64 (they are not in the weights) */
  transformerHeads?: number;
  /** vision attention heads (OpenAI's model.py always uses vision_width // 64) */
  visionHeads?: number;
  /** key prefix to strip, e.g. 'mapper.clip_model.' in a HairCLIP checkpoint; found automatically when unambiguous */
  prefix?: string;
}

export interface ClipWeights {
  config: ClipConfig;
  /** OpenAI state-dict keys -> float32 weights, in state_dict() order */
  weights: Map<string, Weight>;
  layout: ClipKeyLayout;
  format: ClipFileFormat | 'tensors';
}

// ---------------------------------------------------------------------------------------------
// Hugging Face <-> OpenAI key names (transformers' convert_clip_original_pytorch_to_hf.py, reversed).

const HF_LAYER: [RegExp, string][] = [
  [/^self_attn\.out_proj\.(weight|bias)$/, 'attn.out_proj.$1'],
  [/^layer_norm1\.(weight|bias)$/, 'ln_1.$1'],
  [/^layer_norm2\.(weight|bias)$/, 'ln_2.$1'],
  [/^mlp\.fc1\.(weight|bias)$/, 'mlp.c_fc.$1'],
  [/^mlp\.fc2\.(weight|bias)$/, 'mlp.c_proj.$1'],
];

const HF_TOP: Record<string, string> = {
  'logit_scale': 'logit_scale',
  'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
  'text_model.embeddings.position_embedding.weight': 'positional_embedding',
  'text_model.final_layer_norm.weight': 'ln_final.weight',
  'text_model.final_layer_norm.bias': 'ln_final.bias',
  'vision_model.embeddings.class_embedding': 'visual.class_embedding',
  'vision_model.embeddings.patch_embedding.weight': 'visual.conv1.weight',
  'vision_model.embeddings.position_embedding.weight': 'visual.positional_embedding',
  'vision_model.pre_layrnorm.weight': 'visual.ln_pre.weight', // sic: HF's spelling
  'vision_model.pre_layrnorm.bias': 'visual.ln_pre.bias',
  'vision_model.post_layernorm.weight': 'visual.ln_post.weight',
  'vision_model.post_layernorm.bias': 'visual.ln_post.bias',
};
/** HF stores the projections as nn.Linear weights [out, in]; OpenAI multiplies x @ P with P [in, out]. */
const HF_TRANSPOSED: Record<string, string> = {
  'text_projection.weight': 'text_projection',
  'visual_projection.weight': 'visual.proj',
};
/** buffers of the HF checkpoint that carry no weights */
const HF_IGNORED = new Set(['text_model.embeddings.position_ids', 'vision_model.embeddings.position_ids']);

const HF_BLOCKS: [string, string][] = [
  ['text_model.encoder.layers.', 'transformer.resblocks.'],
  ['vision_model.encoder.layers.', 'visual.transformer.resblocks.'],
];

function transpose2d(t: TensorData, key: string): TensorData<'float32'> {
  if (t.shape.length !== 2) throw new Error(`CLIP weights: '${key}' should be a matrix, got shape [${t.shape.join(', ')}]`);
  const [r, c] = t.shape;
  const a = toFloat32Array(t);
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j];
  return new TensorData('float32', [c, r], out);
}

function concatRows(parts: TensorData[]): TensorData<'float32'> {
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const out = new Float32Array(parts.reduce((n, p) => n + p.numel, 0));
  let off = 0;
  for (const p of parts) { out.set(toFloat32Array(p), off); off += p.numel; }
  return new TensorData('float32', [rows, ...parts[0].shape.slice(1)], out);
}

/**
 * HF CLIPModel keys -> OpenAI keys: q/k/v projections concatenated (in that order) into
 * in_proj_weight / in_proj_bias, projections transposed, position_ids dropped. Unknown keys are
 * refused by name.
 */
export function hfToOpenAI(hf: ReadonlyMap<string, TensorData>): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  const unknown: string[] = [];
  const qkv = new Map<string, Partial<Record<'q' | 'k' | 'v', TensorData>>>();
  for (const [key, t] of hf) {
    if (HF_IGNORED.has(key)) continue;
    if (key in HF_TOP) { out.set(HF_TOP[key], t); continue; }
    if (key in HF_TRANSPOSED) { out.set(HF_TRANSPOSED[key], transpose2d(t, key)); continue; }
    const block = HF_BLOCKS.find(([hfp]) => key.startsWith(hfp));
    const m = block && /^(\d+)\.(.*)$/.exec(key.slice(block[0].length));
    if (!block || !m) { unknown.push(key); continue; }
    const prefix = `${block[1]}${m[1]}.`;
    const rest = m[2];
    const proj = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
    if (proj) {
      const target = `${prefix}attn.in_proj_${proj[2]}`;
      const entry = qkv.get(target) ?? {};
      entry[proj[1] as 'q' | 'k' | 'v'] = t;
      qkv.set(target, entry);
      continue;
    }
    const rule = HF_LAYER.find(([re]) => re.test(rest));
    if (!rule) { unknown.push(key); continue; }
    out.set(prefix + rest.replace(rule[0], rule[1]), t);
  }
  if (unknown.length) throw new Error(`CLIP weights (Hugging Face layout): unexpected keys ${listKeys(unknown)}`);
  for (const [target, parts] of qkv) {
    const missing = (['q', 'k', 'v'] as const).filter((s) => !parts[s]);
    if (missing.length) {
      throw new Error(`CLIP weights (Hugging Face layout): ${target} needs q/k/v projections, missing ${missing.map((s) => `${s}_proj`).join(', ')}`);
    }
    const shapes = (['q', 'k', 'v'] as const).map((s) => parts[s]!.shape.join(','));
    if (new Set(shapes).size !== 1) throw new Error(`CLIP weights (Hugging Face layout): q/k/v projections of ${target} differ in shape ([${shapes.join('] [')}])`);
    out.set(target, concatRows([parts.q!, parts.k!, parts.v!]));
  }
  return out;
}

/** OpenAI keys -> HF CLIPModel keys (the inverse of `hfToOpenAI`, with HF's position_ids buffers). */
export function openAIToHF(state: ReadonlyMap<string, TensorData>): Map<string, TensorData> {
  const inv = new Map(Object.entries(HF_TOP).map(([h, o]) => [o, h]));
  const invT = new Map(Object.entries(HF_TRANSPOSED).map(([h, o]) => [o, h]));
  const out = new Map<string, TensorData>();
  for (const [key, t] of state) {
    if ((JIT_EXTRA_BUFFERS as readonly string[]).includes(key)) continue;
    if (inv.has(key)) { out.set(inv.get(key)!, t); continue; }
    if (invT.has(key)) { out.set(invT.get(key)!, transpose2d(t, key)); continue; }
    const block = [...HF_BLOCKS].sort((a, b) => b[1].length - a[1].length).find(([, op]) => key.startsWith(op));
    const m = block && /^(\d+)\.(.*)$/.exec(key.slice(block[1].length));
    if (!block || !m) throw new Error(`openAIToHF: unexpected key '${key}'`);
    const prefix = `${block[0]}${m[1]}.`;
    const rest = m[2];
    const inProj = /^attn\.in_proj_(weight|bias)$/.exec(rest);
    if (inProj) {
      const a = toFloat32Array(t);
      const d = t.shape[0] / 3;
      const per = a.length / 3;
      ['q', 'k', 'v'].forEach((s, i) => {
        out.set(`${prefix}self_attn.${s}_proj.${inProj[1]}`, new TensorData('float32', [d, ...t.shape.slice(1)], a.slice(i * per, (i + 1) * per)));
      });
      continue;
    }
    const back: [RegExp, string][] = [
      [/^attn\.out_proj\.(weight|bias)$/, 'self_attn.out_proj.$1'],
      [/^ln_1\.(weight|bias)$/, 'layer_norm1.$1'],
      [/^ln_2\.(weight|bias)$/, 'layer_norm2.$1'],
      [/^mlp\.c_fc\.(weight|bias)$/, 'mlp.fc1.$1'],
      [/^mlp\.c_proj\.(weight|bias)$/, 'mlp.fc2.$1'],
    ];
    const rule = back.find(([re]) => re.test(rest));
    if (!rule) throw new Error(`openAIToHF: unexpected key '${key}'`);
    out.set(prefix + rest.replace(rule[0], rule[1]), t);
  }
  const ids = (n: number) => new TensorData('int64', [1, n], BigInt64Array.from({ length: n }, (_, i) => BigInt(i)));
  const tp = state.get('positional_embedding'); const vp = state.get('visual.positional_embedding');
  if (tp) out.set('text_model.embeddings.position_ids', ids(tp.shape[0]));
  if (vp) out.set('vision_model.embeddings.position_ids', ids(vp.shape[0]));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Recognising and validating a state dict.

function listKeys(keys: string[], max = 12): string {
  const shown = keys.slice(0, max).map((k) => `'${k}'`).join(', ');
  return keys.length > max ? `${shown} and ${keys.length - max} more` : shown;
}

/** Finds the CLIP inside a bigger state dict (e.g. `mapper.clip_model.` in hairclip.pt) and its layout. */
function locate(state: ReadonlyMap<string, TensorData>, prefix?: string): { layout: ClipKeyLayout; prefix: string } {
  const anchors: [string, ClipKeyLayout][] = [['visual.conv1.weight', 'openai'], ['vision_model.embeddings.patch_embedding.weight', 'hf']];
  const found: { layout: ClipKeyLayout; prefix: string }[] = [];
  for (const key of state.keys()) {
    for (const [anchor, layout] of anchors) {
      if (key === anchor || key.endsWith(`.${anchor}`)) {
        const p = key.slice(0, key.length - anchor.length);
        if (prefix === undefined || p === prefix) found.push({ layout, prefix: p });
      }
    }
  }
  if (found.length === 1) return found[0];
  if (!found.length) {
    if ([...state.keys()].some((k) => k.endsWith('visual.layer1.0.conv1.weight'))) {
      throw new Error('CLIP weights: this is a ResNet CLIP (RN50/RN101/RN50x*); only the ViT variants are supported');
    }
    throw new Error(`CLIP weights: no 'visual.conv1.weight' (OpenAI) or 'vision_model.embeddings.patch_embedding.weight' (Hugging Face)${prefix !== undefined ? ` under prefix '${prefix}'` : ''} among ${state.size} tensors (first keys: ${listKeys([...state.keys()], 5)})`);
  }
  throw new Error(`CLIP weights: several CLIP models in one file (prefixes ${found.map((f) => `'${f.prefix}'`).join(', ')}); pass { prefix }`);
}

/**
 * Turn a state dict of any supported layout into checked float32 OpenAI weights. Every key the
 * config implies must be present with its exact shape, and nothing else may be left over (the
 * TorchScript archive's input_resolution / context_length / vocab_size buffers are checked
 * against the config and dropped, as build_model does).
 */
export function clipWeightsFromStateDict(
  state: ReadonlyMap<string, TensorData>,
  opts: ClipLoadOptions & { format?: ClipWeights['format']; heads?: { transformerHeads?: number; visionHeads?: number } } = {},
): ClipWeights {
  const { layout, prefix } = locate(state, opts.prefix);
  let sd = new Map<string, TensorData>();
  for (const [k, v] of state) if (k.startsWith(prefix)) sd.set(k.slice(prefix.length), v);
  if (layout === 'hf') sd = hfToOpenAI(sd);

  const shapes = new Map([...sd].map(([k, v]) => [k, v.shape]));
  const transformerHeads = opts.transformerHeads ?? opts.heads?.transformerHeads;
  const config = inferClipConfig(shapes, { transformerHeads });
  const visionHeads = opts.visionHeads ?? opts.heads?.visionHeads;
  if (visionHeads !== undefined) { config.visionHeads = visionHeads; checkConfig(config); }

  // the archive's extra scalar buffers must agree with the weights
  const extraValue: Record<string, number> = { input_resolution: config.imageResolution, context_length: config.contextLength, vocab_size: config.vocabSize };
  const res = sd.get('input_resolution');
  if (res?.numel === 1) {
    // the constructor's image_resolution need not be a multiple of the patch size (the weights only
    // fix resolution // patch): the recorded value is the true one when it gives the same grid
    const v = Number(res.data[0]);
    const P = config.visionPatchSize;
    if (Number.isInteger(v) && Math.floor(v / P) === Math.floor(config.imageResolution / P)) {
      config.imageResolution = v;
      extraValue.input_resolution = v;
    }
  }
  for (const name of JIT_EXTRA_BUFFERS) {
    const t = sd.get(name);
    if (!t) continue;
    const v = t.numel === 1 ? Number(t.data[0]) : NaN;
    if (v !== extraValue[name]) throw new Error(`CLIP weights: buffer '${name}' = ${t.numel === 1 ? v : `[${t.shape}]`} disagrees with the weights (${extraValue[name]})`);
    sd.delete(name);
  }

  const spec = clipStateSpec(config);
  const missing: string[] = []; const wrong: string[] = []; const notFloat: string[] = [];
  const weights = new Map<string, Weight>();
  for (const [key, shape] of spec) {
    const t = sd.get(key);
    if (!t) { missing.push(`${key} [${shape.join(', ')}]`); continue; }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      wrong.push(`${key}: [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      continue;
    }
    if (!isFloatDType(t.dtype)) { notFloat.push(`${key} (${t.dtype})`); continue; }
    weights.set(key, { shape: [...shape], data: toFloat32Array(t) });
  }
  const specKeys = new Set(spec.map(([k]) => k));
  const extra = [...sd.keys()].filter((k) => !specKeys.has(k));
  const problems: string[] = [];
  if (missing.length) problems.push(`missing ${listKeys(missing)}`);
  if (extra.length) problems.push(`unexpected ${listKeys(extra)}`);
  if (wrong.length) problems.push(`wrong shape ${listKeys(wrong)}`);
  if (notFloat.length) problems.push(`not floating point ${listKeys(notFloat)}`);
  if (problems.length) {
    const where = prefix ? ` (prefix '${prefix}')` : '';
    throw new Error(`CLIP weights${where}, ${layout === 'hf' ? 'Hugging Face' : 'OpenAI'} layout, config ${describeConfig(config)}: ${problems.join('; ')}`);
  }
  return { config, weights, layout, format: opts.format ?? 'tensors' };
}

export function describeConfig(c: ClipConfig): string {
  return `ViT ${c.imageResolution}px/${c.visionPatchSize} width ${c.visionWidth} x${c.visionLayers} (${c.visionHeads} heads), text width ${c.transformerWidth} x${c.transformerLayers} (${c.transformerHeads} heads), ctx ${c.contextLength}, vocab ${c.vocabSize}, embed ${c.embedDim}`;
}

// ---------------------------------------------------------------------------------------------
// Files.

/** Head counts recorded beside the weights: safetensors metadata `config` (OpenAI constructor args) or an HF config.json. */
function headsFromMetadata(meta: Record<string, string>): { transformerHeads?: number; visionHeads?: number } {
  if (!meta.config) return {};
  let cfg: Record<string, unknown>;
  try { cfg = JSON.parse(meta.config); } catch { return {}; }
  return readHeads(cfg);
}

function readHeads(cfg: Record<string, unknown>): { transformerHeads?: number; visionHeads?: number } {
  const num = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);
  const text = cfg.text_config as Record<string, unknown> | undefined;
  const vision = cfg.vision_config as Record<string, unknown> | undefined;
  for (const [name, c] of [['text_config', text], ['vision_config', vision]] as const) {
    const act = c?.hidden_act;
    if (typeof act === 'string' && act !== 'quick_gelu') {
      throw new Error(`CLIP config.json: ${name}.hidden_act is '${act}'; only OpenAI's QuickGELU CLIP is implemented`);
    }
  }
  return {
    transformerHeads: num(cfg.transformer_heads) ?? num(text?.num_attention_heads),
    visionHeads: num(vision?.num_attention_heads),
  };
}

/** What kind of file `bytes` is (safetensors: anything that is not a PyTorch file). */
export function clipFileFormat(bytes: Uint8Array): ClipFileFormat {
  const f = checkpointFormat(bytes);
  if (f === 'torchscript') return 'torchscript';
  if (f === 'zip' || f === 'legacy') return 'state_dict';
  return 'safetensors';
}

/**
 * Load CLIP weights from a file path or bytes: TorchScript archive, torch.save'd state dict
 * (zip or legacy; a checkpoint dict holding the CLIP under some prefix works too), or
 * safetensors; OpenAI or Hugging Face key names. For a path, an HF `config.json` beside the file
 * supplies head counts.
 */
export function loadClipWeights(source: string | Uint8Array, opts: ClipLoadOptions = {}): ClipWeights {
  const bytes = typeof source === 'string' ? readFileSync(source) : source;
  const what = typeof source === 'string' ? source : 'CLIP weights';
  try {
    const format = clipFileFormat(bytes);
    let state: Map<string, TensorData>;
    let heads: { transformerHeads?: number; visionHeads?: number } = {};
    if (format === 'safetensors') {
      const f = readSafetensors(bytes);
      state = f.tensors;
      heads = headsFromMetadata(f.metadata);
    } else {
      state = flattenStateDict(loadCheckpoint(bytes));
    }
    if (typeof source === 'string') {
      const cfgPath = join(dirname(source), 'config.json');
      if (existsSync(cfgPath)) {
        const fromJson = readHeads(JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>);
        heads = { transformerHeads: heads.transformerHeads ?? fromJson.transformerHeads, visionHeads: heads.visionHeads ?? fromJson.visionHeads };
      }
    }
    return clipWeightsFromStateDict(state, { ...opts, format, heads });
  } catch (e) {
    if (e instanceof Error && typeof source === 'string' && !e.message.startsWith(source)) e.message = `${what}: ${e.message}`;
    throw e;
  }
}
