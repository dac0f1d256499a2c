import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { evaluate } from '../runtime/session.ts';
import { flattenStateDict, loadCheckpoint } from '../io/torch.ts';
import { TensorData } from '../io/tensor.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { saveTorchZip } from '../io/testing.ts';
import { clipWeightsFromStateDict } from '../nets/clip/weights.ts';
import { CLIP_MEAN, CLIP_STD, HairClipMapper, hairclipSpecs, inferHairClipConfig, referenceImageInput } from './hairclip.ts';
import { FIXTURES, directionalCheck, officialKeys, specKeys, values } from './testing.ts';

test('the real-size builder produces exactly the mapper part of the official HairCLIP keys', () => {
  const m = HairClipMapper.create({ width: 512 }, 0);
  const official = officialKeys('mapper/official_hairclip_mapper_keys.json', (j) => j.tensors)
    .filter(([k]) => k.startsWith('mapper.') && !k.startsWith('mapper.clip_model.'));
  assert.deepEqual(specKeys(m.params), official);
  assert.equal(m.params.numel, 19729920);
});

test('an official-layout file: the mapper loads, mapper.clip_model.* goes to the CLIP loader, decoder.* aside', () => {
  // a HairCLIP checkpoint assembled from the fixtures: the tiny CLIP, the tiny mapper and a decoder tensor
  const clipSd = flattenStateDict(loadCheckpoint(`${FIXTURES}clip/tiny_clip_state.pt`));
  const tiny = loadCheckpoint(`${FIXTURES}mapper/tiny_hairclip_mapper.pt`) as { state_dict: object; opts: object };
  const state: Record<string, TensorData> = {};
  for (const [k, v] of clipSd) state[`mapper.clip_model.${k}`] = v;
  for (const [k, v] of flattenStateDict(tiny.state_dict as never)) state[k] = v;
  state['decoder.noises.noise_0'] = new TensorData('float32', [1, 1, 4, 4], new Float32Array(16));
  const { mapper, clip, decoder } = HairClipMapper.load(saveTorchZip({ state_dict: state, opts: { no_fine_mapper: false } }));
  assert.deepEqual(mapper.config, { width: 32, embedWidth: 32, modules: 5, subMappers: { coarse: true, medium: true, fine: true } });
  assert.deepEqual([...clip!.keys()], [...clipSd.keys()]);
  // the tiny CLIP's text heads (2) are not width // 64, so they are given, as for any tiny CLIP
  const heads = (JSON.parse(readSafetensors(`${FIXTURES}clip/io.safetensors`).metadata.config) as { transformer_heads: number }).transformer_heads;
  assert.equal(clipWeightsFromStateDict(clip!, { transformerHeads: heads }).weights.size, clipSd.size);
  assert.deepEqual([...decoder!.keys()], ['noises.noise_0']);

  state['mapper.extra.weight'] = state['decoder.noises.noise_0'];
  assert.throws(() => HairClipMapper.load(saveTorchZip({ state_dict: state })), /unexpected key 'mapper\.extra\.weight'/);
});

test('a missing condition is the cut path: fc + LayerNorm only, a zero-mean unit-variance slice, no gradient to gamma/beta', async () => {
  const m = HairClipMapper.create({ width: 8 }, 3);
  const B = 2; const L = 18; const D = 8;
  const w = { data: values(B * L * D, 1), shape: [B, L, D] };
  const hair = values(B * D, 2);
  const { delta } = await m.edit(w, { hair });
  const d = delta.data as Float32Array;
  for (let b = 0; b < B; b++) {
    const fine = d.subarray(b * L * D + 8 * D, (b + 1) * L * D); // rows 8..17 of sample b
    const mean = fine.reduce((a, x) => a + x, 0) / fine.length;
    const variance = fine.reduce((a, x) => a + (x - mean) ** 2, 0) / fine.length;
    assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, `sample ${b}: mean ${mean}, variance ${variance}`);
  }
  const v = await m.vjp(w, { hair }, values(B * L * D, 3));
  assert.equal(v.color, null);
  assert.equal(v.hair!.length, B * D);
  for (const [k, g] of v.params) {
    const cut = k.startsWith('mapper.fine_mapping.') && !k.includes('.fc.');
    assert.equal(g.every((x) => x === 0), cut, `${k}: ${cut ? 'no' : 'a'} gradient expected`);
  }
  await assert.rejects(m.edit(w, { hair: values(B * D + 1, 1) }), /hairstyle embedding: 17 values, expected \[2, 8\]/);
});

test('other widths: embedding width and module count are read off the keys; --no_*_mapper outputs zeros', async () => {
  const m = HairClipMapper.create({ width: 12, embedWidth: 6, modules: 2, subMappers: { coarse: true, medium: false, fine: true } }, 5);
  assert.deepEqual(inferHairClipConfig(m.params.toStateDict(), m.opts), m.config);
  assert.equal(hairclipSpecs(m.config).length, 2 * 2 * 14);
  const w = { data: values(18 * 12, 4), shape: [1, 18, 12] };
  const { delta } = await m.edit(w, { hair: values(6, 5), color: values(6, 6) });
  const d = delta.data as Float32Array;
  assert.ok(d.subarray(4 * 12, 8 * 12).every((x) => x === 0), 'medium rows are zeros');
  const err = await directionalCheck(m.session(1, 18, true, true), { w: w.data, e_hair: values(6, 5), e_color: values(6, 6) }, 8);
  assert.ok(err < 1e-2, `relative error ${err}`);
});

test('referenceImageInput: adaptive average pool, [-1,1] -> [0,1], CLIP mean/std', async () => {
  const g = new G.Graph();
  const img = values(3 * 8 * 8, 7);
  const y = referenceImageInput(g.constant(img, [1, 3, 8, 8]), 4);
  const r = (await evaluate({ y })).y.data as Float32Array;
  for (let c = 0; c < 3; c++) for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
    let s = 0;
    for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) s += img[c * 64 + (2 * i + a) * 8 + 2 * j + b];
    const want = ((s / 4) * 0.5 + 0.5 - CLIP_MEAN[c]) / CLIP_STD[c];
    assert.ok(Math.abs(r[c * 16 + i * 4 + j] - want) < 1e-5);
  }
});
