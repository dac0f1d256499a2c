// Training data: vocabularies, latent files (.pt / .npy / .safetensors), latent sources and
// HairCLIP's condition sampling (probabilities of hairclip.md §7.2, and the folding of branches
// that have no images).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FFCLIP_PROMPTS, HAIR_COLORS, HAIRSTYLES, HAIR_SAMPLING_DEFAULTS, FileLatents, MappingLatents, hairSampler, inDomainColorRefs,
  listImages, loadLatents, parseNpy, readList,
} from './data.ts';
import { Rng } from './rng.ts';
import { saveTorchZip } from '../io/testing.ts';
import { TensorData } from '../io/tensor.ts';
import { serializeSafetensors } from '../io/safetensors.ts';
import { loadGenerator } from '../nets/stylegan2/stylegan2.ts';
import { TINY } from './testing.ts';

test('vocabularies: 44 hairstyles, 12 colours, FFCLIP 53 prompts (44 unique)', () => {
  assert.equal(HAIRSTYLES.length, 44);
  assert.equal(new Set(HAIRSTYLES).size, 44);
  assert.equal(HAIRSTYLES[0], 'afro'); assert.equal(HAIRSTYLES[43], 'updo');
  assert.deepEqual([...HAIR_COLORS], ['purple', 'red', 'orange', 'yellow', 'green', 'blue', 'gray', 'brown', 'black', 'white', 'blond', 'pink']);
  assert.equal(FFCLIP_PROMPTS.length, 53);
  assert.equal(new Set(FFCLIP_PROMPTS).size, 44);
  assert.equal(FFCLIP_PROMPTS.filter((p) => p === 'Sad').length, 2);
  assert.ok(FFCLIP_PROMPTS.includes('Hi-top Fade hairstyle') && FFCLIP_PROMPTS.includes('happy') && !FFCLIP_PROMPTS.includes('Red hair'));
});

test('readList: comma lists and hairstyle_list.txt files (" hairstyle" suffix stripped)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lists-'));
  try {
    assert.deepEqual(readList('afro, bob cut ,,mohawk'), ['afro', 'bob cut', 'mohawk']);
    const f = join(dir, 'hairstyle_list.txt');
    writeFileSync(f, 'afro hairstyle\nbob cut hairstyle\n\n');
    assert.deepEqual(readList(f, { stripSuffix: 'hairstyle' }), ['afro', 'bob cut']);
    assert.throws(() => readList(' , '), /empty list/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

function npy(shape: number[], data: Float32Array, descr = '<f4'): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

test('latent files: e4e-style .pt tensors, dicts, .npy and .safetensors give [N, L, D]', () => {
  const dir = mkdtempSync(join(tmpdir(), 'latents-'));
  try {
    const data = Float32Array.from({ length: 3 * 4 * 5 }, (_, i) => i * 0.25 - 3);
    const t = new TensorData('float32', [3, 4, 5], data);
    writeFileSync(join(dir, 'a.pt'), saveTorchZip(t, { root: 'a' }));
    writeFileSync(join(dir, 'b.pt'), saveTorchZip({ latents: t }, { root: 'b' }));
    writeFileSync(join(dir, 'c.npy'), npy([3, 4, 5], data));
    writeFileSync(join(dir, 'd.safetensors'), serializeSafetensors(new Map([['w', t]])));
    writeFileSync(join(dir, 'e.npy'), npy([4, 5], data.slice(0, 20)));
    for (const f of ['a.pt', 'b.pt', 'c.npy', 'd.safetensors']) {
      const s = loadLatents(join(dir, f));
      assert.deepEqual(s.shape, [3, 4, 5], f);
      assert.deepEqual([...s.data], [...data], f);
    }
    assert.deepEqual(loadLatents(join(dir, 'e.npy')).shape, [1, 4, 5]);
    assert.deepEqual([...parseNpy(npy([2], Float32Array.from([1.5, -2])), 'x').data as Float32Array], [1.5, -2]);
    writeFileSync(join(dir, 'f.npy'), npy([3, 20], data));
    assert.doesNotThrow(() => loadLatents(join(dir, 'f.npy')));
    writeFileSync(join(dir, 'g.pt'), saveTorchZip(new TensorData('float32', [60], data), { root: 'g' }));
    assert.throws(() => loadLatents(join(dir, 'g.pt')), /\[N, L, D\]/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('latent sources draw from the trainer RNG only (deterministic) and check shapes', async () => {
  const set = { data: Float32Array.from({ length: 5 * 2 * 3 }, (_, i) => i), shape: [5, 2, 3] as [number, number, number] };
  const f = new FileLatents(set, 'mem');
  const r1 = new Rng(7); const r2 = new Rng(7);
  const a = f.draw(r1, 4); const b = f.draw(r2, 4);
  assert.deepEqual(a, b);
  const w = await f.resolve({ indices: [4, 0] });
  assert.deepEqual([...w], [24, 25, 26, 27, 28, 29, 0, 1, 2, 3, 4, 5]);

  const gen = loadGenerator(TINY.g32);
  const m = await MappingLatents.create(gen, 0.7);
  const z = m.draw(new Rng(1), 2);
  const w1 = await m.resolve(z); const w2 = await m.resolve(m.draw(new Rng(1), 2));
  assert.deepEqual([...w1], [...w2]);
  assert.equal(w1.length, 2 * gen.nLatent * gen.config.styleDim);
  // every row of a sample is the same w, truncated towards latent_avg
  const D = gen.config.styleDim;
  assert.deepEqual([...w1.subarray(0, D)], [...w1.subarray(D, 2 * D)]);
  const wt1 = await (await MappingLatents.create(gen, 1)).resolve(z);
  const avg = gen.latentAvg!;
  for (let j = 0; j < D; j++) assert.ok(Math.abs(w1[j] - (avg[j] + 0.7 * (wt1[j] - avg[j]))) < 1e-4);
});

test('HairCLIP condition sampling: the official marginals (hairclip.md §7.2)', () => {
  const refs = { hairstyle: ['h1.png', 'h2.png'], color: ['c1.png'], colorInDomain: new Map(HAIR_COLORS.map((c) => [c, [`${c}/0.jpg`]])) };
  const s = hairSampler(HAIR_SAMPLING_DEFAULTS, refs, HAIRSTYLES, HAIR_COLORS);
  assert.deepEqual(s.warnings, []);
  const rng = new Rng(123);
  const n = 40000;
  const c = { hsText: 0, hsImg: 0, cText: 0, cIn: 0, cOut: 0, none: 0, maintain: 0 };
  for (let i = 0; i < n; i++) {
    const x = s.sample(rng);
    if (x.hairstyle?.kind === 'text') c.hsText++;
    if (x.hairstyle?.kind === 'image') c.hsImg++;
    if (x.color?.kind === 'text') c.cText++;
    if (x.color?.kind === 'image' && x.color.domain === 'in') { c.cIn++; assert.match(x.color.path, /^[a-z]+\/0\.jpg$/); }
    if (x.color?.kind === 'image' && x.color.domain === 'out') c.cOut++;
    if (!x.hairstyle && !x.color) c.none++;
    if (x.hairstyle && !x.color) c.maintain++;
  }
  const near = (k: keyof typeof c, p: number) => assert.ok(Math.abs(c[k] / n - p) < 0.012, `${k}: ${c[k] / n} vs ${p}`);
  near('hsText', 0.385); near('hsImg', 0.385); near('cText', 0.235); near('cIn', 0.1175); near('cOut', 0.1175); near('none', 0.03); near('maintain', 0.5);
  assert.equal(s.describe({ hairstyle: { kind: 'text', name: 'afro' }, color: { kind: 'text', name: 'purple' } }), 'afro hairstyle-purple hair');
  assert.equal(s.describe({ hairstyle: null, color: null }), 'no_edit');
});

test('HairCLIP condition sampling: branches without images fold away, with warnings', () => {
  const s = hairSampler(HAIR_SAMPLING_DEFAULTS, { hairstyle: [], color: [], colorInDomain: null }, HAIRSTYLES, HAIR_COLORS);
  assert.equal(s.warnings.length, 3);
  assert.equal(s.options.hairstyleTextProb, 1);
  assert.equal(s.options.colorTextProb, 1);
  const rng = new Rng(5);
  for (let i = 0; i < 2000; i++) {
    const x = s.sample(rng);
    assert.ok(!x.hairstyle || x.hairstyle.kind === 'text');
    assert.ok(!x.color || x.color.kind === 'text');
  }
  // only real colour references: text 0.5 / (0.5 + 0.25), reference the rest
  const t = hairSampler(HAIR_SAMPLING_DEFAULTS, { hairstyle: ['a.png'], color: ['c.png'], colorInDomain: null }, HAIRSTYLES, HAIR_COLORS);
  assert.equal(t.warnings.length, 1);
  assert.ok(Math.abs(t.options.colorTextProb - 2 / 3) < 1e-12);
  assert.throws(() => hairSampler({ ...HAIR_SAMPLING_DEFAULTS, bothProb: 0.5 }, { hairstyle: [], color: [], colorInDomain: null }, HAIRSTYLES, HAIR_COLORS), /exceed 1/);
});

test('reference folders: images listed recursively and sorted; in-domain layout <root>/<colour> hair/', () => {
  const dir = mkdtempSync(join(tmpdir(), 'refs-'));
  try {
    mkdirSync(join(dir, 'sub')); mkdirSync(join(dir, 'purple hair')); mkdirSync(join(dir, 'red hair'));
    for (const f of ['b.png', 'a.jpg', 'sub/c.webp', 'notes.txt', 'purple hair/00001.jpg', 'red hair/00000.jpg']) writeFileSync(join(dir, f), '');
    assert.deepEqual(listImages(dir).map((p) => p.slice(dir.length + 1)), ['a.jpg', 'b.png', 'purple hair/00001.jpg', 'red hair/00000.jpg', 'sub/c.webp']);
    const m = inDomainColorRefs(dir, ['purple', 'red']);
    assert.deepEqual(m.get('purple')!.map((p) => p.slice(dir.length + 1)), ['purple hair/00001.jpg']);
    assert.throws(() => inDomainColorRefs(dir, ['blue']), /blue hair/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
