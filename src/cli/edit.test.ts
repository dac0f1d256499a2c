// `clipmapper edit`: the command line on the tiny networks (local weight paths), and its errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { tinyWeights, TEST_IMAGES } from '../pipeline/testing.ts';
import { chooseMethod } from './edit.ts';

const tiny = tinyWeights();
const dir = mkdtempSync(join(tmpdir(), 'clipmapper-cli-edit-'));
const weightFlags = (s: typeof tiny.hairclip) => ['--generator', s.generator, '--e4e', s.e4e, '--mapper', s.mapper, '--clip', s.clip, '--parser', s.parser, '--offline'];
function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['bin/clipmapper.js', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

test('edit photo.png --hairstyle --color -o out.png (and --grid): a photo-size PNG', async () => {
  const out = join(dir, 'out.png');
  const r = cli(['edit', TEST_IMAGES.astronaut, '--hairstyle', 'afro', '--color', 'purple', '--alpha', '0.3', '-o', out, ...weightFlags(tiny.hairclip)]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), out);
  assert.match(r.stderr, /detecting the face/);
  const m = await sharp(out).metadata();
  assert.deepEqual([m.format, m.width, m.height], ['png', 512, 512]);
  const grid = join(dir, 'grid.png');
  const g = cli(['edit', TEST_IMAGES.astronaut, '--text', 'a smile', '-o', grid, '--grid', '-q', ...weightFlags(tiny.ffclip)]);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(g.stderr, '');
  const gm = await sharp(grid).metadata();
  assert.deepEqual([gm.width, gm.height], [1024, 512 + 256]);
});

test('edit: clear errors for no face, not an image, missing weights, a bad flag', () => {
  let r = cli(['edit', TEST_IMAGES.chelsea, '--hairstyle', 'afro', '-q', ...weightFlags(tiny.hairclip)]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^clipmapper: no face found in .*chelsea\.png/);
  const txt = join(dir, 'notes.png');
  writeFileSync(txt, 'not an image');
  r = cli(['edit', txt, '--hairstyle', 'afro', '-q', ...weightFlags(tiny.hairclip)]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /notes\.png' is not a readable image/);
  const cache = mkdtempSync(join(tmpdir(), 'clipmapper-empty-cache-'));
  r = cli(['edit', TEST_IMAGES.astronaut, '--hairstyle', 'afro', '--offline', '-q'], { CLIPMAPPER_CACHE: cache });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing mapper weights 'hairclip': not in the weights cache and downloads are off; get it with `clipmapper weights fetch hairclip`.*--mapper <path>/);
  r = cli(['edit', TEST_IMAGES.astronaut, '--hairstyle', 'afro', '--method', 'nope']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--method must be one of hairclip, styleclip, ffclip/);
  r = cli(['edit', join(dir, 'missing.jpg'), '--hairstyle', 'afro']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no such file or folder/);
  assert.equal(chooseMethod({ text: 'x' }), 'ffclip');
  assert.equal(chooseMethod({ text: 'x', hairstyle: 'y' }), 'hairclip');
});

test('edit folder/ -o out/: batch mode edits the faces and reports the rest', () => {
  const inDir = join(dir, 'photos');
  const outDir = join(dir, 'edited');
  mkdtempSync(join(dir, 'x'));
  spawnSync('mkdir', ['-p', inDir]);
  copyFileSync(TEST_IMAGES.astronaut, join(inDir, 'astronaut.png'));
  copyFileSync(TEST_IMAGES.chelsea, join(inDir, 'chelsea.png'));
  const r = cli(['edit', inDir, '-o', outDir, '--hairstyle', 'afro', '-q', ...weightFlags(tiny.hairclip)]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 edited into .*edited, 1 failed/);
  assert.match(r.stdout, /failed: .*chelsea\.png: no face found/);
  assert.ok(existsSync(join(outDir, 'astronaut.png')));
});
