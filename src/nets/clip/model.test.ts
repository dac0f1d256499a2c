import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { readSafetensors } from '../../io/safetensors.ts';
import { fixturePath, officialKeys } from '../testing.ts';
import {
  VIT_B_32, clipStateSpec, convertWeightsDtype, encodeImage, encodeText, inferClipConfig, type ClipConfig, type Params,
} from './model.ts';

/** The OpenAI constructor arguments recorded in the fixture's metadata, as a ClipConfig. */
function fixtureConfig(): ClipConfig {
  const c = JSON.parse(readSafetensors(fixturePath('clip', 'io.safetensors')).metadata.config) as Record<string, number>;
  return {
    embedDim: c.embed_dim, imageResolution: c.image_resolution, visionLayers: c.vision_layers, visionWidth: c.vision_width,
    visionPatchSize: c.vision_patch_size, visionHeads: Math.floor(c.vision_width / 64), contextLength: c.context_length,
    vocabSize: c.vocab_size, transformerWidth: c.transformer_width, transformerHeads: c.transformer_heads, transformerLayers: c.transformer_layers,
  };
}

test('clip: the ViT-B/32 state-dict spec is exactly official_vitb32_keys.json (keys, shapes, order, convert_weights dtypes)', () => {
  const official = JSON.parse(readFileSync(fixturePath('clip', 'official_vitb32_keys.json'), 'utf8')) as {
    tensors: { key: string; shape: number[]; dtype_after_convert_weights: string }[]; num_elements: number; official_jit_archive_extra_keys: Record<string, string>;
  };
  const spec = clipStateSpec(VIT_B_32);
  assert.deepEqual(spec.map(([k, s]) => ({ key: k, shape: s })), official.tensors.map((t) => ({ key: t.key, shape: t.shape })));
  assert.equal(spec.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0), official.num_elements);
  for (const t of official.tensors) assert.equal(convertWeightsDtype(t.key) === 'float16' ? 'F16' : 'F32', t.dtype_after_convert_weights, t.key);
  // build_model's inference on the official layout gives ViT-B/32 back
  assert.deepEqual(inferClipConfig(new Map(official.tensors.map((t) => [t.key, t.shape]))), VIT_B_32);
});

test('clip: the real-size graph builders ask for exactly the official keys with their shapes', () => {
  const official = officialKeys('clip', 'official_vitb32_keys.json');
  const g = new G.Graph('vitb32-keys');
  const used = new Map<string, number[]>();
  // a recording Params: every weight becomes a graph input of the shape the builder demands
  const p: Params = (key, shape) => {
    const prev = used.get(key);
    if (prev) assert.deepEqual(prev, [...shape], `${key} requested with two shapes`);
    used.set(key, [...shape]);
    return prev ? g.inputs.find((t) => t.name === key)! : g.input(key, shape);
  };
  const img = encodeImage(p, VIT_B_32, g.input('image', [1, 3, 224, 224]));
  const txt = encodeText(p, VIT_B_32, g.input('tokens', [1, 77], 'int32'));
  assert.deepEqual(img.shape, [1, 512]);
  assert.deepEqual(txt.shape, [1, 512]);
  // logit_scale is used by CLIP.forward only
  const forwardOnly = new Set(['logit_scale']);
  assert.deepEqual(
    new Map([...used].sort()),
    new Map(official.filter((k) => !forwardOnly.has(k.key)).map((k) => [k.key, k.shape] as [string, number[]]).sort()),
  );
});

test('clip: config inference follows build_model and refuses what it cannot infer', () => {
  const cfg = fixtureConfig();
  const shapes = new Map(clipStateSpec(cfg).map(([k, s]) => [k, s as readonly number[]]));
  // the tiny model's text heads (2 for width 32) are not width // 64: they must be given
  assert.deepEqual(inferClipConfig(shapes, { transformerHeads: cfg.transformerHeads }), cfg);
  if (Math.floor(cfg.transformerWidth / 64) < 1) {
    assert.throws(() => inferClipConfig(shapes), /text width \d+ gives 0 attention heads.*pass it explicitly/);
  }
  assert.throws(() => inferClipConfig(shapes, { transformerHeads: 3 }), /not divisible by 3 heads/);
  // ResNet CLIP is refused by name
  const rn = new Map<string, readonly number[]>([['visual.layer1.0.conv1.weight', [64, 64, 1, 1]], ['visual.attnpool.positional_embedding', [50, 2048]]]);
  assert.throws(() => inferClipConfig(rn), /ResNet CLIP/);
  const badGrid = new Map(shapes); badGrid.set('visual.positional_embedding', [48, cfg.visionWidth]);
  assert.throws(() => inferClipConfig(badGrid, { transformerHeads: cfg.transformerHeads }), /not grid\^2 \+ 1/);
});

test('clip: EOT pooling takes the first largest id and the causal mask hides later tokens', async () => {
  // a tiny random text transformer: features must not change when tokens after the EOT change
  const cfg: ClipConfig = { ...fixtureConfig(), vocabSize: 50, contextLength: 8, transformerLayers: 1, transformerWidth: 16, transformerHeads: 2, embedDim: 4 };
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
  const weights = new Map(clipStateSpec(cfg).map(([k, s]) => [k, Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, rand)]));
  const g = new G.Graph('eot');
  const p: Params = (key, shape) => g.constant(weights.get(key)!, shape);
  const tokens = g.input('tokens', [3, 8], 'int32');
  const f: Tensor = encodeText(p, cfg, tokens);
  const r = await evaluate({ f }, {
    tokens: Int32Array.from([
      3, 9, 49, 4, 0, 0, 0, 0, // EOT (49, the largest id) at position 2
      3, 9, 49, 4, 7, 1, 2, 5, // same prefix, different tokens after it
      3, 49, 9, 49, 0, 0, 0, 0, // two maxima: the first one (position 1) is taken
    ]),
  });
  const row = (i: number) => [...(r.f.data as Float32Array).subarray(i * 4, i * 4 + 4)];
  assert.deepEqual(row(0), row(1));
  assert.notDeepEqual(row(2), row(0));
  const r2 = await evaluate({ f }, { tokens: Int32Array.from([3, 49, 0, 0, 0, 0, 0, 0, 3, 49, 9, 9, 9, 9, 9, 9, 3, 49, 9, 49, 1, 1, 1, 1]) });
  const row2 = (i: number) => [...(r2.f.data as Float32Array).subarray(i * 4, i * 4 + 4)];
  assert.deepEqual(row2(0), row2(1));
  assert.deepEqual(row2(0), row2(2));
});
