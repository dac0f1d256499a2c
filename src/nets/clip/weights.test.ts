import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { flattenStateDict, loadCheckpoint } from '../../io/torch.ts';
import { readSafetensors, serializeSafetensors } from '../../io/safetensors.ts';
import { TensorData, f32, float32ToFloat16Bits, toFloat32Array } from '../../io/tensor.ts';
import { editStateDict, fixturePath } from '../testing.ts';
import { clipStateSpec, convertWeightsDtype } from './model.ts';
import { clipFileFormat, clipWeightsFromStateDict, hfToOpenAI, loadClipWeights, openAIToHF, type ClipWeights } from './weights.ts';

const path = (f: string) => fixturePath('clip', f);
const heads = (): number => (JSON.parse(readSafetensors(path('io.safetensors')).metadata.config) as { transformer_heads: number }).transformer_heads;
const stateDict = () => flattenStateDict(loadCheckpoint(path('tiny_clip_state.pt')));

function assertSameWeights(a: ClipWeights, b: ClipWeights): void {
  assert.deepEqual(a.config, b.config);
  assert.deepEqual([...a.weights.keys()], [...b.weights.keys()]);
  for (const [k, w] of a.weights) {
    const v = b.weights.get(k)!;
    assert.deepEqual(v.shape, w.shape, k);
    assert.ok(v.data.every((x, i) => Object.is(x, w.data[i])), `${k} differs`);
  }
}

test('clip weights: TorchScript archive, state dict and safetensors give the same float32 weights', () => {
  const jit = loadClipWeights(path('tiny_clip_jit.pt'), { transformerHeads: heads() });
  const state = loadClipWeights(path('tiny_clip_state.pt'), { transformerHeads: heads() });
  const st = loadClipWeights(path('tiny_clip.safetensors')); // heads from its metadata
  assert.equal(jit.format, 'torchscript');
  assert.equal(state.format, 'state_dict');
  assert.equal(st.format, 'safetensors');
  assertSameWeights(jit, state);
  assertSameWeights(jit, st);
  assert.deepEqual([...jit.weights.keys()], clipStateSpec(jit.config).map(([k]) => k));
  // the archive mixes float16 and float32 storages exactly as convert_weights leaves them
  const anatomy = JSON.parse(readFileSync(path('tiny_clip_jit_anatomy.json'), 'utf8')) as { tensors_in_attribute_tree_order: { name: string; storage_type: string }[] };
  const raw = flattenStateDict(loadCheckpoint(path('tiny_clip_jit.pt')));
  for (const t of anatomy.tensors_in_attribute_tree_order) {
    const expected = t.storage_type === 'torch.HalfStorage' ? 'float16' : t.storage_type === 'torch.FloatStorage' ? 'float32' : 'int64';
    assert.equal(raw.get(t.name)!.dtype, expected, t.name);
    if (expected !== 'int64') assert.equal(convertWeightsDtype(t.name), expected, t.name);
  }
  // and the config is the one the fixture was built with
  const meta = JSON.parse(readSafetensors(path('io.safetensors')).metadata.config) as Record<string, number>;
  assert.equal(jit.config.embedDim, meta.embed_dim);
  assert.equal(jit.config.visionWidth, meta.vision_width);
  assert.equal(jit.config.visionLayers, meta.vision_layers);
  assert.equal(jit.config.transformerLayers, meta.transformer_layers);
  assert.equal(jit.config.imageResolution, meta.image_resolution);
});

test('clip weights: file kinds are told apart by content', () => {
  assert.equal(clipFileFormat(readFileSync(path('tiny_clip_jit.pt'))), 'torchscript');
  assert.equal(clipFileFormat(readFileSync(path('tiny_clip_state.pt'))), 'state_dict');
  assert.equal(clipFileFormat(readFileSync(path('tiny_clip.safetensors'))), 'safetensors');
});

test('clip weights: the Hugging Face layout maps onto OpenAI keys (q/k/v packed, projections transposed, position_ids ignored)', () => {
  const sd = stateDict();
  const hf = openAIToHF(sd);
  const ref = clipWeightsFromStateDict(sd, { transformerHeads: heads() });
  const { config } = ref;
  // every OpenAI tensor has an HF counterpart; in_proj_* split in three; two position_ids buffers
  const blocks = config.visionLayers + config.transformerLayers;
  assert.equal(hf.size, clipStateSpec(config).length + 4 * blocks + 2);
  assert.ok(hf.has('vision_model.pre_layrnorm.weight'));
  assert.ok(hf.has('text_model.encoder.layers.0.self_attn.v_proj.bias'));
  assert.deepEqual(hf.get('visual_projection.weight')!.shape, [config.embedDim, config.visionWidth]);
  assert.deepEqual(hf.get('text_projection.weight')!.shape, [config.embedDim, config.transformerWidth]);

  // through a real safetensors file, as HF ships it (float32), then as float16
  const fromHf = loadClipWeights(serializeSafetensors(hf), { transformerHeads: heads() });
  assert.equal(fromHf.layout, 'hf');
  assertSameWeights(ref, fromHf);
  const half = new Map([...hf].map(([k, t]) => [k, t.dtype === 'int64' ? t : new TensorData('float16', t.shape, float32ToFloat16Bits(toFloat32Array(t)))]));
  assertSameWeights(ref, loadClipWeights(serializeSafetensors(half), { transformerHeads: heads() }));

  // q, k, v rows land in that order inside in_proj_weight
  const d = config.transformerWidth;
  const packed = hfToOpenAI(hf).get('transformer.resblocks.1.attn.in_proj_weight')!;
  const k = toFloat32Array(hf.get('text_model.encoder.layers.1.self_attn.k_proj.weight')!);
  assert.deepEqual([...toFloat32Array(packed).subarray(d * d, 2 * d * d)], [...k]);
});

test('clip weights: HF config.json heads and hidden_act are honoured', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'clip-hf-'));
  const file = join(dir, 'model.safetensors');
  writeFileSync(file, serializeSafetensors(openAIToHF(stateDict())));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ text_config: { num_attention_heads: heads(), hidden_act: 'quick_gelu' }, vision_config: { hidden_act: 'quick_gelu' } }));
  assert.equal(loadClipWeights(file).config.transformerHeads, heads());
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ text_config: { num_attention_heads: heads(), hidden_act: 'gelu' } }));
  assert.throws(() => loadClipWeights(file), /hidden_act is 'gelu'/);
});

test('clip weights: missing, unexpected, mis-shaped and inconsistent keys are named', () => {
  const sd = stateDict();
  const opts = { transformerHeads: heads() };
  assert.throws(() => clipWeightsFromStateDict(editStateDict(sd, { drop: ['visual.transformer.resblocks.1.mlp.c_fc.bias'] }), opts),
    /missing 'visual\.transformer\.resblocks\.1\.mlp\.c_fc\.bias \[\d+\]'/);
  assert.throws(() => clipWeightsFromStateDict(editStateDict(sd, { set: { 'visual.extra': f32([2]) } }), opts), /unexpected 'visual\.extra'/);
  assert.throws(() => clipWeightsFromStateDict(editStateDict(sd, { set: { 'ln_final.bias': f32([5]) } }), opts), /wrong shape 'ln_final\.bias: \[5\], expected \[\d+\]'/);
  assert.throws(() => clipWeightsFromStateDict(editStateDict(sd, { set: { 'visual.ln_pre.bias': new TensorData('int64', sd.get('visual.ln_pre.bias')!.shape, new BigInt64Array(sd.get('visual.ln_pre.bias')!.numel)) } }), opts),
    /not floating point 'visual\.ln_pre\.bias \(int64\)'/);
  // the TorchScript buffers must agree with the weights
  const jit = flattenStateDict(loadCheckpoint(path('tiny_clip_jit.pt')));
  assert.throws(() => clipWeightsFromStateDict(editStateDict(jit, { set: { context_length: new TensorData('int64', [], BigInt64Array.of(76n)) } }), opts),
    /buffer 'context_length' = 76 disagrees/);
  // HF: a missing v projection is named
  const hf = openAIToHF(sd);
  hf.delete('vision_model.encoder.layers.0.self_attn.v_proj.weight');
  assert.throws(() => clipWeightsFromStateDict(hf, opts), /visual\.transformer\.resblocks\.0\.attn\.in_proj_weight needs q\/k\/v projections, missing v_proj/);
  const hf2 = openAIToHF(sd); hf2.set('text_model.encoder.layers.0.self_attn.rotary.weight', f32([1]));
  assert.throws(() => clipWeightsFromStateDict(hf2, opts), /unexpected keys 'text_model\.encoder\.layers\.0\.self_attn\.rotary\.weight'/);
  // a ResNet CLIP is refused
  assert.throws(() => clipWeightsFromStateDict(new Map([['visual.layer1.0.conv1.weight', f32([1])]])), /ResNet CLIP/);
});

test('clip weights: a CLIP inside a bigger checkpoint (HairCLIP mapper.clip_model.*) is found by its prefix', () => {
  const sd = stateDict();
  const wrapped = new Map<string, TensorData>([['mapper.mapper.coarse.weight', f32([2, 2])]]);
  for (const [k, v] of sd) wrapped.set(`mapper.clip_model.${k}`, v);
  const w = clipWeightsFromStateDict(wrapped, { transformerHeads: heads() });
  assertSameWeights(w, clipWeightsFromStateDict(sd, { transformerHeads: heads() }));
  const two = new Map(wrapped);
  for (const [k, v] of sd) two.set(`other.${k}`, v);
  assert.throws(() => clipWeightsFromStateDict(two, { transformerHeads: heads() }), /several CLIP models.*'mapper\.clip_model\.'.*'other\.'/);
  assert.doesNotThrow(() => clipWeightsFromStateDict(two, { transformerHeads: heads(), prefix: 'other.' }));
});
