import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TensorData } from '../io/tensor.ts';
import { saveTorchZip } from '../io/testing.ts';
import { StyleClipMapper, inferStyleClipConfig, styleclipSpecs } from './styleclip.ts';
import { FIXTURES, directionalCheck, officialKeys, specKeys, values } from './testing.ts';

const KEYS = 'mapper/official_styleclip_mapper_keys.json';

test('real-size builders produce exactly the official StyleCLIP mapper keys and shapes', () => {
  const levels = StyleClipMapper.create({ width: 512 }, 0);
  assert.deepEqual(specKeys(levels.params), officialKeys(KEYS, (j) => j['LevelsMapper (all three levels)'].tensors));
  assert.equal(levels.params.numel, 3151872);
  const single = StyleClipMapper.create({ type: 'SingleMapper', width: 512 }, 0);
  assert.deepEqual(specKeys(single.params), officialKeys(KEYS, (j) => j.SingleMapper.tensors));
});

test('the fixture checkpoints load with type, levels, width and depth read off their keys', () => {
  const { mapper, decoder } = StyleClipMapper.load(`${FIXTURES}mapper/tiny_styleclip_levels_mapper.pt`);
  assert.deepEqual(mapper.config, { type: 'LevelsMapper', levels: { coarse: true, medium: true, fine: true }, width: 32, depth: 4 });
  assert.equal(decoder, null);
  assert.equal(mapper.opts.description, 'afro');
  const single = StyleClipMapper.load(`${FIXTURES}mapper/tiny_styleclip_single_mapper.pt`).mapper;
  assert.equal(single.config.type, 'SingleMapper');
  assert.equal(single.params.numel, 4224);
});

test('loader routes decoder.* aside and rejects unknown keys or contradicting opts', () => {
  const m = StyleClipMapper.create({ width: 8 }, 1);
  const sd: Record<string, TensorData> = Object.fromEntries(m.params.toStateDict());
  const dec = new TensorData('float32', [2, 2], Float32Array.of(1, 2, 3, 4));
  const file = saveTorchZip({ state_dict: { ...sd, 'decoder.style.1.weight': dec }, opts: { mapper_type: 'LevelsMapper' } });
  const { mapper, decoder } = StyleClipMapper.load(file);
  assert.deepEqual([...decoder!.keys()], ['style.1.weight']);
  assert.deepEqual(mapper.config, m.config);
  assert.throws(() => StyleClipMapper.load(saveTorchZip({ state_dict: { ...sd, 'latent_avg': dec } })), /unexpected key 'latent_avg'/);
  assert.throws(() => StyleClipMapper.load(saveTorchZip({ state_dict: sd, opts: { mapper_type: 'SingleMapper' } })), /mapper_type is 'SingleMapper'/);
  const broken = new Map(m.params.toStateDict());
  broken.delete('mapper.medium_mapping.mapping.3.bias');
  assert.throws(() => StyleClipMapper.fromStateDict(broken), /missing key 'mapper\.medium_mapping\.mapping\.3\.bias'/);
});

test('other widths and switched-off levels: config inferred, disabled level outputs zeros', async () => {
  const m = StyleClipMapper.create({ width: 16, levels: { coarse: false, medium: true, fine: true }, depth: 3 }, 4);
  const cfg = inferStyleClipConfig(m.params.toStateDict(), m.opts);
  assert.deepEqual(cfg, m.config);
  assert.equal(styleclipSpecs(cfg).length, 2 * 3 * 2);
  const w = { data: values(1 * 18 * 16, 9), shape: [1, 18, 16] };
  const { delta, wHat } = await m.edit(w);
  const d = delta.data as Float32Array;
  assert.ok(d.subarray(0, 4 * 16).every((x) => x === 0), 'coarse rows are zeros');
  assert.ok(d.subarray(4 * 16).some((x) => x !== 0));
  (wHat.data as Float32Array).forEach((x, i) => assert.equal(x, Math.fround(w.data[i] + Math.fround(Math.fround(0.1) * d[i]))));
});

test('VJP agrees with finite differences (LevelsMapper and SingleMapper, width 8)', async () => {
  for (const type of ['LevelsMapper', 'SingleMapper'] as const) {
    const m = StyleClipMapper.create({ type, width: 8 }, 2);
    const err = await directionalCheck(m.session(2, 18), { w: values(2 * 18 * 8, 5) }, 21);
    assert.ok(err < 1e-2, `${type}: relative error ${err}`);
  }
});
