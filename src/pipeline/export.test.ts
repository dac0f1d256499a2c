// `clipmapper export`: the exported .onnx files, loaded in fresh onnxruntime-node sessions (not
// through src/runtime), give what the pipeline computes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import * as ort from 'onnxruntime-node';
import { pipeline, exportEdit } from './index.ts';
import { tinyWeights, TEST_IMAGES } from './testing.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import type { HostTensor } from '../runtime/session.ts';

const tiny = tinyWeights();

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('exported edit.onnx / e4e.onnx / parser.onnx equal the pipeline in a fresh onnxruntime-node session', async (t) => {
  const editor = await pipeline('hairclip', { weights: tiny.hairclip, download: false });
  const dir = mkdtempSync(join(tmpdir(), 'clipmapper-export-'));
  const cond = { hairstyle: 'afro', color: 'purple' };
  const m = await exportEdit(editor, dir, cond, { withE4e: true, withParser: true });
  assert.equal(m.format, 'clipmapper-edit');
  assert.equal(m.method, 'hairclip');
  assert.deepEqual(m.conditions, { hairstyle: 'afro', color: 'purple' });
  assert.deepEqual(m.generator, { size: 64, latent: [10, 32] });
  assert.deepEqual(m.files.edit.inputs, [{ name: 'w', shape: [1, 10, 32], dtype: 'float32' }, { name: 'alpha', shape: [1], dtype: 'float32' }]);
  assert.deepEqual(m.files.edit.outputs.map((o) => o.name), ['w_edit', 'image']);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')), JSON.parse(JSON.stringify(m)));

  // the pipeline's own numbers
  const r = await editor(TEST_IMAGES.astronaut, { ...cond, alpha: 0.7 });
  const emb = await editor.embed(cond);
  const mapped = await (editor.nets.mapper as HairClipMapper).edit(r.w, { hair: emb.hair, color: emb.color }, { alpha: 0.7 });
  const synth = (await editor.sessions.synthesis.run({ w: new Float32Array([...(r.wEdit.data as Float32Array), ...(r.wEdit.data as Float32Array)]) })).image;

  const fresh = async (file: string) => ort.InferenceSession.create(readFileSync(join(dir, file)));
  const edit = await fresh('edit.onnx');
  const out = await edit.run({ w: new ort.Tensor('float32', r.w.data as Float32Array, [1, 10, 32]), alpha: new ort.Tensor('float32', Float32Array.of(0.7), [1]) });
  const dw = maxAbs(out.w_edit.data as Float32Array, mapped.wHat.data as Float32Array);
  const dimg = maxAbs(out.image.data as Float32Array, (synth.data as Float32Array).subarray(0, 3 * 64 * 64));
  t.diagnostic(`edit.onnx vs pipeline: w_edit max |diff| ${dw.toExponential(2)}, image ${dimg.toExponential(2)}`);
  assert.ok(dw < 1e-5, `w_edit differs by ${dw}`);
  assert.ok(dimg < 1e-4, `image differs by ${dimg}`);
  assert.ok(maxAbs(mapped.wHat.data as Float32Array, r.wEdit.data as Float32Array) === 0);

  // e4e.onnx on the same aligned crop as the pipeline's e4e session
  const { rgbToTensor } = await import('../io/image.ts');
  const { alignFfhq } = await import('../align/ffhq.ts');
  const { decodeImageRgb } = await import('../io/image.ts');
  const photo = await decodeImageRgb(TEST_IMAGES.astronaut);
  const crop = rgbToTensor(alignFfhq(photo, r.face.landmarks, { outputSize: 64 }).image).data as Float32Array;
  const e4e = await fresh('e4e.onnx');
  const w1 = (await e4e.run({ image: new ort.Tensor('float32', crop, [1, 3, 64, 64]) })).w.data as Float32Array;
  const w0 = (await editor.sessions.encode.run({ image: crop })).w as HostTensor;
  assert.ok(maxAbs(w1, w0.data as Float32Array) < 1e-5);
  assert.ok(maxAbs(w1, r.w.data as Float32Array) < 1e-5, 'the pipeline fed e4e this crop');

  // parser.onnx gives the pipeline parser's labels
  const parser = await fresh('parser.onnx');
  const labels1 = (await parser.run({ image: new ort.Tensor('float32', crop, [1, 3, 64, 64]) })).labels.data as Int32Array;
  const labels0 = (await editor.sessions.parse!.run({ image: new Float32Array([...crop, ...crop]) })).labels.data as Int32Array;
  assert.deepEqual([...labels1], [...labels0.subarray(0, labels1.length)]);
});

test('clipmapper export (CLI) writes the files and the manifest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'clipmapper-export-cli-'));
  const w = tiny.ffclip;
  const r = spawnSync(process.execPath, ['bin/clipmapper.js', 'export', '--method', 'ffclip', '--text', 'a smile', '-o', dir, '--with-e4e', '-q', '--offline',
    '--generator', w.generator, '--e4e', w.e4e, '--mapper', w.mapper, '--clip', w.clip, '--parser', w.parser], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /edit\.onnx .* w\[1,10,32\], alpha\[1\] -> w_edit\[1,10,32\], image\[1,3,64,64\]/);
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  assert.equal(m.method, 'ffclip');
  assert.deepEqual(m.conditions, { text: 'a smile' });
  assert.equal(m.files.e4e.file, 'e4e.onnx');
});
