// The training CLI end to end on the tiny networks: `train hairclip` (reference folders, a few
// steps) writes the log, checkpoint, official-layout mapper.pt and preview grids; `eval` scores
// that mapper; `edit --latents` applies it to a latent file; mistakes give one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TINY } from '../train/testing.ts';
import { readLog } from '../train/trainer.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import { saveTorchZip } from '../io/testing.ts';
import { TensorData } from '../io/tensor.ts';
import { decodeImage } from '../io/image.ts';

const BIN = fileURLToPath(new URL('../../bin/clipmapper.js', import.meta.url));
const cli = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

test('clipmapper train hairclip -> eval -> edit --latents', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-train-'));
  try {
    const refs = join(dir, 'refs');
    mkdirSync(refs);
    for (const f of TINY.images) copyFileSync(f, join(refs, f.split('/').pop()!));
    const nets = ['--generator', TINY.g64(), '--clip', TINY.clip, '--arcface', TINY.arcface, '--parser', TINY.parser];
    const out = join(dir, 'run');
    const r = cli(['train', 'hairclip', ...nets, '--out', out, '--steps', '6', '--save-interval', '3', '--image-interval', '3',
      '--hairstyles', 'afro,bob cut', '--colors', 'purple', '--hairstyle-refs', refs, '--color-refs', refs, '-q']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /in-domain colour references/);
    assert.equal(readLog(join(out, 'log.jsonl')).length, 6);
    for (const f of ['checkpoints/latest.safetensors', 'mapper.pt', 'opts.json', 'images/step_000003.png', 'images/step_000006.txt']) assert.ok(existsSync(join(out, f)), f);
    const opts = JSON.parse(readFileSync(join(out, 'opts.json'), 'utf8'));
    assert.equal(opts.text_manipulation_lambda, 2);
    assert.equal(opts.color_in_domain_ref_manipulation_prob, 0);
    const { mapper } = HairClipMapper.load(join(out, 'mapper.pt'));
    assert.equal(mapper.config.width, 32);
    // training again into the same folder without --resume is refused
    const again = cli(['train', 'hairclip', ...nets, '--out', out, '--steps', '6', '-q']);
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /--resume/);

    // latents for the 64 px generator: w+ [N, 10, 32]
    const lat = join(dir, 'w.pt');
    writeFileSync(lat, saveTorchZip(new TensorData('float32', [2, 10, 32], Float32Array.from({ length: 640 }, (_, i) => Math.sin(i) * 0.5)), { root: 'w' }));
    const ev = cli(['eval', '--method', 'hairclip', '--mapper', join(out, 'mapper.pt'), ...nets, '--latents', lat, '--hairstyles', 'afro', '--colors', 'purple', '-q']);
    assert.equal(ev.status, 0, ev.stderr);
    assert.match(ev.stdout, /\| afro hairstyle \+ purple hair \| 2 \|/);

    const png = join(dir, 'edit.png');
    const ed = cli(['edit', '--latents', lat, '--method', 'hairclip', '--mapper', join(out, 'mapper.pt'), '--generator', TINY.g64(), '--clip', TINY.clip,
      '--hairstyle', 'afro', '--color', 'purple', '-o', png, '-q']);
    assert.equal(ed.status, 0, ed.stderr);
    const img = await decodeImage(png);
    assert.deepEqual(img.shape, [1, 3, 2 * 64 + 2, 2 * 64 + 2]); // 2 rows of source | edited, 2 px gaps
    const bad = cli(['edit', '--latents', lat, '--method', 'ffclip', '--mapper', join(out, 'mapper.pt'), '--generator', TINY.g64(), '-o', png]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--text/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
