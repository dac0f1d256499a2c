// Issue 5 (a): the whole photo pipeline on the tiny networks, end to end on a real photo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { pipeline, ConditionError, MissingWeightsError, maskInPhoto, encodePng, type FaceEditor, type EditResult } from './index.ts';
import { tinyWeights, TEST_IMAGES } from './testing.ts';
import { decodeImageRgb } from '../io/image.ts';
import { ImageError } from '../io/errors.ts';
import { NoFaceError } from '../align/detect.ts';
import type { RgbImage } from '../io/image.ts';

const tiny = tinyWeights();
const out = mkdtempSync(join(tmpdir(), 'clipmapper-pipeline-'));

/** Every photo pixel where the warped blend mask is 0 has the photo's bytes; returns counts. */
function checkOutsideMask(photo: RgbImage, r: EditResult): { outside: number; inside: number; changed: number } {
  const m = maskInPhoto(r.mask, r.alignment, r.crop.width);
  let outside = 0, inside = 0, changed = 0;
  for (let i = 0; i < photo.width * photo.height; i++) {
    const same = r.image.data[3 * i] === photo.data[3 * i] && r.image.data[3 * i + 1] === photo.data[3 * i + 1] && r.image.data[3 * i + 2] === photo.data[3 * i + 2];
    if (m[i] > 0) inside++;
    else { outside++; assert.ok(same, `photo pixel ${i % photo.width},${Math.floor(i / photo.width)} outside the mask changed`); }
    if (!same) changed++;
  }
  return { outside, inside, changed };
}

async function runAndWrite(editor: FaceEditor, name: string, cond: Parameters<FaceEditor>[1]) {
  const photo = await decodeImageRgb(TEST_IMAGES.astronaut);
  const r = await editor(TEST_IMAGES.astronaut, cond);
  const file = join(out, `${name}.png`);
  writeFileSync(file, await encodePng(r.image));
  // what was written (PNG round trip) is what is checked
  const written = await decodeImageRgb(file);
  assert.equal(written.width, photo.width);
  assert.equal(written.height, photo.height);
  const counts = checkOutsideMask(photo, { ...r, image: written });
  return { photo, r, counts };
}

test('styleclip on the fixture G (32 px, w+ [8, 64]): photo-size result, untouched bytes outside the blend mask, sessions reused', async (t) => {
  const editor = await pipeline('styleclip', { weights: tiny.styleclip, download: false });
  assert.deepEqual(editor.sizes, { generator: 32, e4e: 64, parser: 32, latent: [8, 64] });
  const { r, counts } = await runAndWrite(editor, 'styleclip', { alpha: 0.5 });
  t.diagnostic(`outside ${counts.outside} inside ${counts.inside} changed ${counts.changed}; timings ${JSON.stringify(r.timings)}`);
  assert.equal(r.crop.width, 32);
  assert.equal(r.editedCrop.width, 32);
  assert.equal(r.mask.width, 32);
  assert.deepEqual(r.w.shape, [1, 8, 64]);
  assert.deepEqual(r.wEdit.shape, [1, 8, 64]);
  assert.ok(counts.outside > 100_000, 'most of the photo lies outside the face crop');
  assert.ok(counts.changed > 500, `the edit changed the face (${counts.changed} pixels)`);
  assert.ok(r.mask.data.some((v) => v < 1) && r.mask.data.some((v) => v === 1), 'the mask has an inside and a feathered border');
  let diff = 0;
  for (let i = 0; i < r.w.data.length; i++) diff = Math.max(diff, Math.abs((r.w.data[i] as number) - (r.wEdit.data[i] as number)));
  assert.ok(diff > 0, 'the mapper moved w');

  // a second call: the same sessions (compiled once), the same answer
  const sessions = { ...editor.sessions };
  const r2 = await editor(TEST_IMAGES.astronaut, { alpha: 0.5 });
  assert.equal(editor.sessions.encode, sessions.encode);
  assert.equal(editor.sessions.synthesis, sessions.synthesis);
  assert.deepEqual(r2.image.data, r.image.data);
});

test('hairclip with the fixture mapper (64 px G): text + reference conditions, alpha 0 leaves w unchanged', async () => {
  const editor = await pipeline('hairclip', { weights: tiny.hairclip, download: false });
  const { r, counts } = await runAndWrite(editor, 'hairclip', { hairstyle: 'afro', colorRef: TEST_IMAGES.astronaut });
  assert.equal(r.image.width, 512);
  assert.ok(counts.changed > 500);
  const e = await editor.embed({ hairstyle: 'afro', color: 'purple' });
  assert.equal(e.hair!.length, 32);
  assert.equal(e.color!.length, 32);
  const r0 = await editor(TEST_IMAGES.astronaut, { color: 'purple', alpha: 0 });
  assert.deepEqual(r0.wEdit.data, r0.w.data);
  await assert.rejects(editor(TEST_IMAGES.astronaut, {}), ConditionError);
  await assert.rejects(editor(TEST_IMAGES.astronaut, { text: 'a beard' }), /not free text; use the ffclip method/);
});

test('ffclip (64 px G): free text; chelsea has no face; bytes that are not an image; a folder in batch mode', async () => {
  const editor = await pipeline('ffclip', { weights: tiny.ffclip, download: false });
  const { counts } = await runAndWrite(editor, 'ffclip', { text: 'a face with a beard' });
  assert.ok(counts.changed > 500);
  await assert.rejects(editor(TEST_IMAGES.chelsea, { text: 'x' }), NoFaceError);
  await assert.rejects(editor(new TextEncoder().encode('not an image at all'), { text: 'x' }), ImageError);
  await assert.rejects(editor(TEST_IMAGES.astronaut, { text: 'x', face: 3 }), /face 3 requested but 1 face was found/);

  const dir = mkdtempSync(join(tmpdir(), 'clipmapper-batch-'));
  copyFileSync(TEST_IMAGES.astronaut, join(dir, 'a.png'));
  copyFileSync(TEST_IMAGES.chelsea, join(dir, 'b.png'));
  writeFileSync(join(dir, 'notes.txt'), 'ignored');
  const seen: string[] = [];
  const s = await editor.editFolder(dir, join(dir, 'out'), { text: 'a smile' }, { progressBar: false, grid: true, onFile: (f) => seen.push(f.file) });
  assert.equal(s.ok.length, 1);
  assert.equal(s.failed.length, 1);
  assert.match(s.failed[0].error, /no face found/);
  assert.equal(seen.length, 2);
  const edited = await decodeImageRgb(s.ok[0].out);
  assert.equal(edited.width, 512);
  assert.ok(readFileSync(join(dir, 'out', 'a.grid.png')).length > 1000);
});

test('weights that do not fit together, and missing weights, are named', async () => {
  const { fileURLToPath } = await import('node:url');
  const fixtureE4e = fileURLToPath(new URL('../../test/fixtures/e4e/tiny_e4e.pt', import.meta.url));
  await assert.rejects(pipeline('styleclip', { weights: { ...tiny.styleclip, e4e: fixtureE4e }, download: false, preloadDetector: false }),
    /e4e gives w\+ \[8, 16\] but the generator takes \[8, 64\]/);
  const cache = mkdtempSync(join(tmpdir(), 'clipmapper-cache-'));
  await assert.rejects(pipeline('hairclip', { weights: { ...tiny.hairclip, e4e: 'e4e-ffhq' }, download: false, cacheDir: cache, preloadDetector: false }), (e: unknown) => {
    assert.ok(e instanceof MissingWeightsError);
    assert.equal(e.role, 'e4e');
    assert.match(e.message, /missing e4e weights 'e4e-ffhq'.*downloads are off.*clipmapper weights fetch e4e-ffhq.*--e4e <path>/);
    return true;
  });
  await assert.rejects(pipeline('styleclip', { weights: { ...tiny.styleclip, mapper: undefined }, download: false, cacheDir: cache, preloadDetector: false }),
    /one trained mapper per prompt/);
  await assert.rejects(pipeline('hairclip', { weights: { ...tiny.hairclip, parser: '/no/such/parser.pth' }, download: false, preloadDetector: false }),
    /missing parser weights '\/no\/such\/parser.pth': no such file/);
});
