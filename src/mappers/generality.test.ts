// Second configurations of the three mappers, without PyTorch: built with our builders at other
// widths / row counts / level sets / block counts, written in the official checkpoint layout
// (torch.save zip), loaded back through the public loaders, config inferred from the keys, run.
// (The same configurations were checked against the official PyTorch modules with alternate
// fixtures: StyleCLIP widths 16-48 with no_coarse/no_medium/no_fine and 10-18 rows, HairCLIP
// widths 16-48, FFCLIP widths 16-48 with 12-18 rows and 2-5 blocks.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serializeCheckpoint } from './checkpoint.ts';
import { StyleClipMapper } from './styleclip.ts';
import { HairClipMapper } from './hairclip.ts';
import { FfclipMapper, FFCLIP_PREFIX } from './ffclip.ts';
import { values } from './testing.ts';

const rows = (x: Float32Array, L: number, D: number, r0: number, r1: number, b = 0) => x.subarray((b * L + r0) * D, (b * L + r1) * D);
const allZero = (x: Float32Array) => x.every((v) => v === 0);

test('StyleCLIP LevelsMapper, width 48, no_medium_mapper, 14 rows: round trip through the official layout', async () => {
  const m = StyleClipMapper.create({ width: 48, levels: { coarse: true, medium: false, fine: true } }, 7);
  const bytes = serializeCheckpoint(m.checkpoint());
  const { mapper } = StyleClipMapper.load(bytes);
  assert.deepEqual(mapper.config, { type: 'LevelsMapper', levels: { coarse: true, medium: false, fine: true }, width: 48, depth: 4 });
  assert.equal(mapper.opts.no_medium_mapper, true);
  assert.ok(![...mapper.params.toStateDict().keys()].some((k) => k.startsWith('mapper.medium_mapping.')));
  const B = 2; const L = 14; const D = 48;
  const w = { data: values(B * L * D, 3), shape: [B, L, D] };
  const r = await mapper.edit(w);
  assert.deepEqual(r.delta.shape, [B, L, D]);
  const d = r.delta.data as Float32Array;
  for (let b = 0; b < B; b++) {
    assert.ok(allZero(rows(d, L, D, 4, 8, b)), 'medium rows are zeros');
    assert.ok(!allZero(rows(d, L, D, 0, 4, b)) && !allZero(rows(d, L, D, 8, L, b)));
  }
  // identical to the mapper before the round trip
  assert.deepEqual(Array.from(d), Array.from((await m.edit(w)).delta.data as Float32Array));
});

test('StyleCLIP SingleMapper, width 16, 10 rows', async () => {
  const m = StyleClipMapper.create({ type: 'SingleMapper', width: 16 }, 8);
  const { mapper } = StyleClipMapper.load(serializeCheckpoint(m.checkpoint()));
  assert.deepEqual(mapper.config, { type: 'SingleMapper', levels: { coarse: false, medium: false, fine: false }, width: 16, depth: 4 });
  const r = await mapper.edit({ data: values(10 * 16, 4), shape: [1, 10, 16] });
  assert.deepEqual(r.delta.shape, [1, 10, 16]);
  await assert.rejects(mapper.edit({ data: values(10 * 32, 4), shape: [1, 10, 32] }), /expected a \[B, L, 16\] latent/);
});

test('HairCLIP HairMapper, width 24, no_fine_mapper: round trip, condition variants, zero fine rows', async () => {
  const m = HairClipMapper.create({ width: 24, subMappers: { coarse: true, medium: true, fine: false } }, 9);
  const { mapper, clip, decoder } = HairClipMapper.load(serializeCheckpoint(m.checkpoint()));
  assert.deepEqual(mapper.config, { width: 24, embedWidth: 24, modules: 5, subMappers: { coarse: true, medium: true, fine: false } });
  assert.equal(clip, null);
  assert.equal(decoder, null);
  const B = 3; const L = 18; const D = 24;
  const w = { data: values(B * L * D, 5), shape: [B, L, D] };
  const hair = values(B * D, 6);
  for (const cond of [{ hair }, { hair, color: values(B * D, 7) }, {}]) {
    const r = await mapper.edit(w, cond);
    assert.deepEqual(r.delta.shape, [B, L, D]);
    for (let b = 0; b < B; b++) assert.ok(allZero(rows(r.delta.data as Float32Array, L, D, 8, L, b)));
  }
  // a missing hairstyle is not a zero offset (the cut path still runs fc + LayerNorm)
  const none = (await mapper.edit(w, {})).delta.data as Float32Array;
  assert.ok(!allZero(rows(none, L, D, 0, 8)));
});

test('FFCLIP DynamicMapper, width 16, 14 rows, 3 blocks: round trip (DDP prefix), shapes, row check', async () => {
  const m = FfclipMapper.create({ width: 16, layers: 14, blocks: 3 }, 10);
  const bytes = serializeCheckpoint(m.checkpoint());
  const { mapper, generator } = FfclipMapper.load(bytes);
  assert.deepEqual(mapper.config, { width: 16, embedWidth: 16, layers: 14, blocks: 3 });
  assert.equal(generator, null);
  const keys = [...mapper.params.toStateDict().keys()];
  assert.equal(keys.length, 3 * 20);
  assert.ok(keys.every((k) => k.startsWith(FFCLIP_PREFIX)));
  assert.deepEqual(mapper.params.toStateDict().get(`${FFCLIP_PREFIX}2.attention_layer.k_matrix.weight`)!.shape, [14, 1]);
  const B = 2;
  const w = { data: values(B * 14 * 16, 13), shape: [B, 14, 16] };
  const e = values(B * 16, 14).map((v) => 1.5 * v);
  const r = await mapper.edit(w, e);
  assert.deepEqual(r.delta.shape, [B, 14, 16]);
  assert.deepEqual(Array.from(r.delta.data as Float32Array), Array.from((await m.edit(w, e)).delta.data as Float32Array));
  await assert.rejects(mapper.edit({ data: values(B * 18 * 16, 1), shape: [B, 18, 16] }, e), /18 rows, the FFCLIP mapper has 14/);
});
