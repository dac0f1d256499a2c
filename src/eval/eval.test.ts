// Evaluation of a mapper on the tiny networks: the metrics' definitions (alpha 0 = no edit gives
// equal CLIP scores, IDS 1, zero error) and the table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateMapper, evalCases, formatEvalTable } from './eval.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import { FfclipMapper } from '../mappers/ffclip.ts';
import { latentSource } from '../train/data.ts';
import { tinyNets } from '../train/testing.ts';

test('eval: HairCLIP cases (each hairstyle, each colour, each pair) and the metrics of a null edit', async () => {
  const nets = tinyNets(64);
  const mapper = HairClipMapper.create({ width: 32, embedWidth: 32 }, 1);
  const src = await latentSource(nets.generator);
  const latents = await src.resolve(src.first(3));
  const cases = evalCases('hairclip', { hairstyles: ['afro'], colors: ['purple', 'red'] });
  assert.deepEqual(cases.map((c) => c.label), ['afro hairstyle', 'purple hair', 'red hair', 'afro hairstyle + purple hair', 'afro hairstyle + red hair']);
  const mn = { method: 'hairclip' as const, mapper, ...nets };
  const none = await evaluateMapper(mn, { latents, cases: cases.slice(0, 2), batch: 2, alpha: 0 });
  for (const r of none) {
    assert.equal(r.n, 3);
    assert.ok(Math.abs(r.clipEdit - r.clipSource) < 1e-6);
    assert.ok(Math.abs(r.ids! - 1) < 1e-4, `IDS ${r.ids}`);
    assert.equal(r.mse, 0);
    assert.equal(r.psnr, 100);
    assert.ok(r.region > 0 && r.region <= 1);
  }
  const edit = await evaluateMapper(mn, { latents, cases, batch: 2 });
  assert.equal(edit.length, 5);
  for (const r of edit) {
    assert.ok(r.mse > 0 && Number.isFinite(r.psnr) && r.ids! < 1 && r.ids! > 0);
    assert.ok(Math.abs(r.clipSource) <= 1 && Math.abs(r.clipEdit) <= 1);
  }
  const table = formatEvalTable('hairclip', edit);
  assert.match(table, /\| afro hairstyle \+ red hair\s+\| 3 \|/);
  assert.match(table, /\| mean/);
  assert.match(table, /CLIP score src -> edit/);
});

test('eval: FFCLIP prompts, without ArcFace and parser (whole-image PSNR)', async () => {
  const nets = tinyNets(64);
  const mapper = FfclipMapper.create({ width: 32, layers: 10 }, 2);
  const src = await latentSource(nets.generator);
  const rows = await evaluateMapper({ method: 'ffclip', mapper, ...nets, arcface: null, parser: null }, { latents: await src.resolve(src.first(2)), cases: evalCases('ffclip', { prompts: ['Sad', 'Bald'] }), batch: 2 });
  assert.equal(rows.length, 2);
  for (const r of rows) { assert.equal(r.ids, null); assert.equal(r.region, 1); assert.ok(r.mse > 0); }
  assert.match(formatEvalTable('ffclip', rows, { parser: false }), /PSNR image dB/);
  assert.throws(() => evalCases('styleclip', {}), /prompt/);
});
