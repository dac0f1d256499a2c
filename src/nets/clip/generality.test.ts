// CLIP at a second configuration, without PyTorch: random weights for a config unlike the fixture's
// (vision heads > 1, patch 16, a resolution that is not a multiple of the patch, explicit text
// heads, short context, small vocabulary), written as a torch.save zip, a TorchScript archive
// (mixed float16/float32 storages and the input_resolution / context_length / vocab_size buffers)
// and safetensors, then loaded through the public loader. Checks the inferred config, that the three
// files agree, and the forward shapes. (The same code was compared with PyTorch's clip/model.py
// at configurations like this one: see the report of the generality review.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serializeSafetensors } from '../../io/safetensors.ts';
import { TensorData, float32ToFloat16Bits, toFloat32Array } from '../../io/tensor.ts';
import { ScriptModule, rng, saveTorchScript, saveTorchZip, type Writable } from '../../io/testing.ts';
import { ClipModel } from './clip.ts';
import { clipStateSpec, convertWeightsDtype, type ClipConfig } from './model.ts';

/** CLIP(embed_dim=24, image_resolution=72, vision_layers=2, vision_width=128, vision_patch_size=16,
 *  context_length=16, vocab_size=600, transformer_width=48, transformer_heads=3, transformer_layers=2) */
const CFG: ClipConfig = {
  embedDim: 24, imageResolution: 72, visionLayers: 2, visionWidth: 128, visionPatchSize: 16, visionHeads: 2,
  contextLength: 16, vocabSize: 600, transformerWidth: 48, transformerHeads: 3, transformerLayers: 2,
};

function randomWeights(c: ClipConfig): Map<string, TensorData> {
  const r = rng(2024);
  const out = new Map<string, TensorData>();
  for (const [key, shape] of clipStateSpec(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    const fanIn = shape.length > 1 ? n / shape[0] : 1;
    const isLn = /(ln_\w+|ln_final)\.weight$/.test(key);
    for (let i = 0; i < n; i++) {
      const u = 2 * r() - 1;
      d[i] = key === 'logit_scale' ? Math.log(1 / 0.07) : isLn ? 1 + 0.1 * u : shape.length > 1 ? u * Math.sqrt(3 / fanIn) : 0.05 * u;
    }
    // stored as float16, so every encoding below holds the same numbers
    out.set(key, new TensorData('float16', shape, float32ToFloat16Bits(d)));
  }
  return out;
}

/** The flat state dict as a TorchScript module tree (dotted keys -> nested modules). */
function scriptTree(flat: Map<string, TensorData>): ScriptModule {
  interface Node { [name: string]: TensorData | Node }
  const root: Node = {};
  for (const [key, t] of flat) {
    const parts = key.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Node;
    node[parts[parts.length - 1]] = t;
  }
  const build = (name: string, n: Node): ScriptModule => new ScriptModule(`__torch__.clip.model.${name}`, Object.fromEntries(
    Object.entries(n).map(([k, v]): [string, Writable] => [k, v instanceof TensorData ? v : build(k, v)]),
  ));
  return build('CLIP', root);
}

const weights = randomWeights(CFG);
const asF32 = (t: TensorData) => new TensorData('float32', t.shape, toFloat32Array(t));

test('clip generality: a second config loads from zip, TorchScript and safetensors with the right config', async () => {
  // torch.save(state_dict) with every tensor float16 (as tiny_clip_state.pt)
  const zip = saveTorchZip(Object.fromEntries(weights), { root: 'alt_clip_state' });
  // TorchScript: the official mixed layout (float16 where convert_weights casts) + the three buffers
  const mixed = new Map<string, TensorData>();
  for (const [k, t] of weights) mixed.set(k, convertWeightsDtype(k) === 'float16' ? t : asF32(t));
  mixed.set('input_resolution', new TensorData('int64', [], BigInt64Array.of(72n)));
  mixed.set('context_length', new TensorData('int64', [], BigInt64Array.of(16n)));
  mixed.set('vocab_size', new TensorData('int64', [], BigInt64Array.of(600n)));
  const jit = saveTorchScript(scriptTree(mixed), { root: 'alt_clip_jit' });
  const st = serializeSafetensors(weights, { format: 'pt', config: JSON.stringify({ transformer_heads: 3 }) });

  const fromZip = ClipModel.load(zip, { transformerHeads: 3 });
  const fromJit = ClipModel.load(jit, { transformerHeads: 3 });
  const fromSt = ClipModel.load(st); // heads from the metadata
  // the weights fix resolution // patch = 4 only; the archive's input_resolution buffer gives the constructor's 72
  assert.deepEqual(fromJit.config, CFG);
  assert.deepEqual(fromZip.config, { ...CFG, imageResolution: 64 });
  assert.deepEqual(fromSt.config, { ...CFG, imageResolution: 64 });
  for (const m of [fromZip, fromSt]) {
    for (const [k, w] of fromJit.weights) assert.ok(m.weights.get(k)!.data.every((v, i) => Object.is(v, w.data[i])), k);
  }
  // without the metadata or an explicit count, width 48 // 64 = 0 text heads is refused by name
  assert.throws(() => ClipModel.load(zip), /text width 48 gives 0 attention heads/);

  // forward: a 72px image and its 64px top-left crop give the same features (conv1 drops the remainder)
  const N = 2; const R = 72; const C = 64;
  const r = rng(7);
  const img72 = Float32Array.from({ length: N * 3 * R * R }, () => 2 * r() - 1);
  const img64 = new Float32Array(N * 3 * C * C);
  for (let p = 0; p < N * 3; p++) for (let y = 0; y < C; y++) img64.set(img72.subarray((p * R + y) * R, (p * R + y) * R + C), (p * C + y) * C);
  const f72 = await fromJit.encodeImage({ data: img72, shape: [N, 3, R, R] });
  const f64 = await fromZip.encodeImage({ data: img64, shape: [N, 3, C, C] });
  assert.deepEqual(f72.shape, [N, CFG.embedDim]);
  assert.deepEqual([...(f72.data as Float32Array)], [...(f64.data as Float32Array)]);
  assert.ok((f72.data as Float32Array).every(Number.isFinite));

  // text: context 16, ids inside the small vocabulary, EOT = the largest id of each row
  const rows = [[1, 5, 7, 599, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [3, 598, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12, 13, 14, 15, 500]];
  const ft = await fromSt.encodeText(rows);
  assert.deepEqual(ft.shape, [3, CFG.embedDim]);
  const lg = await fromJit.logits(img72, rows);
  assert.deepEqual(lg.logitsPerImage.shape, [N, 3]);
  assert.deepEqual(lg.logitsPerText.shape, [3, N]);
  await assert.rejects(fromSt.encodeText([[1, 600, ...new Array(14).fill(0)]]), /token id 600 .* outside the vocabulary \[0, 600\)/);
});
