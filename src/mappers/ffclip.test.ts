import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TensorData } from '../io/tensor.ts';
import { saveTorchZip } from '../io/testing.ts';
import { FfclipMapper, FFCLIP_PREFIX, ffclipSpecs, inferFfclipConfig } from './ffclip.ts';
import { FIXTURES, directionalCheck, officialKeys, specKeys, values } from './testing.ts';

test('the real-size builder produces exactly the att_mapper part of the official FFCLIP keys', () => {
  const m = FfclipMapper.create({ width: 512 }, 0);
  const official = officialKeys('ffclip/official_ffclip_mapper_keys.json', (j) => j.tensors).filter(([k]) => k.startsWith('module.att_mapper.'));
  assert.deepEqual(specKeys(m.params), official);
  assert.equal(m.params.numel, 10504264);
  const unused = m.params.specs.filter((s) => s.used === false).map((s) => s.name);
  assert.deepEqual(unused, [0, 1, 2, 3].flatMap((i) => [`${FFCLIP_PREFIX}${i}.fc.weight`, `${FFCLIP_PREFIX}${i}.fc.bias`]));
});

test('the fixture loads; generator keys are routed aside; every mapper key layout is accepted', async () => {
  const { mapper, generator } = FfclipMapper.load(`${FIXTURES}ffclip/tiny_ffclip_mapper.pt`);
  assert.deepEqual(mapper.config, { width: 32, embedWidth: 32, layers: 18, blocks: 4 });
  assert.equal(generator, null);

  const sd = mapper.params.toStateDict();
  const gen = new TensorData('float32', [2], Float32Array.of(1, 2));
  const withGen: Record<string, TensorData> = { 'module.generator.style.1.bias': gen, ...Object.fromEntries(sd) };
  const r = FfclipMapper.load(saveTorchZip({ state_dict: withGen, opts: {} }));
  assert.deepEqual([...r.generator!.keys()], ['style.1.bias']);
  for (const prefix of ['att_mapper.att_mapper.', 'att_mapper.']) {
    const renamed = new Map([...sd].map(([k, v]) => [prefix + k.slice(FFCLIP_PREFIX.length), v]));
    const m = FfclipMapper.fromStateDict(renamed);
    assert.deepEqual(m.params.names, mapper.params.names);
  }
  const stray = new Map(sd); stray.set('module.att_mapper.extra', gen);
  assert.throws(() => FfclipMapper.fromStateDict(stray), /unexpected key 'module\.att_mapper\.extra'/);
});

test('text width must equal latent width; layer and block counts are read off the keys', async () => {
  const m = FfclipMapper.create({ width: 8, layers: 16, blocks: 2 }, 3);
  assert.deepEqual(inferFfclipConfig(m.params.toStateDict()), m.config);
  assert.equal(ffclipSpecs(m.config).length, 2 * 20);
  const sd = m.params.toStateDict();
  sd.set(`${FFCLIP_PREFIX}0.q_matrix.weight`, new TensorData('float32', [8, 6], new Float32Array(48)));
  assert.throws(() => inferFfclipConfig(sd), /text width 6 .* differs from latent width 8/);
  const w = { data: values(16 * 8, 1), shape: [1, 16, 8] };
  const { delta, wHat } = await m.edit(w, values(8, 2));
  assert.deepEqual(delta.shape, [1, 16, 8]);
  (wHat.data as Float32Array).forEach((x, i) => assert.equal(x, Math.fround(w.data[i] + (delta.data as Float32Array)[i])));
  await assert.rejects(m.edit({ data: values(18 * 8, 1), shape: [1, 18, 8] }, values(8, 2)), /18 rows, the FFCLIP mapper has 16/);
});

test('VJP agrees with finite differences; the unused fc gets an exact zero gradient', async () => {
  const m = FfclipMapper.create({ width: 8, layers: 6, blocks: 2 }, 4);
  const s = m.session(2);
  assert.ok(!s.used.some((k) => k.includes('.fc.')));
  const err = await directionalCheck(s, { w: values(2 * 6 * 8, 5), e: values(2 * 8, 6) }, 9);
  assert.ok(err < 1e-2, `relative error ${err}`);
  const v = await m.vjp({ data: values(2 * 6 * 8, 5), shape: [2, 6, 8] }, values(16, 6), values(2 * 6 * 8, 7));
  for (const [k, g] of v.params) assert.equal(g.every((x) => x === 0), k.includes('.fc.'), k);
  assert.equal(v.e.length, 16);
});
