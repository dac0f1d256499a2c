import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { inspectCommand } from './inspect.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIX = `${ROOT}test/fixtures/`;
const json = (p: string): any => JSON.parse(readFileSync(FIX + p, 'utf8'));

/** Runs `clipmapper inspect ...args` in-process and returns what it printed. */
async function inspect(...args: string[]): Promise<string> {
  const program = new Command('clipmapper').exitOverride();
  inspectCommand(program);
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    await program.parseAsync(['node', 'clipmapper', 'inspect', ...args]);
  } finally {
    console.log = log;
  }
  return lines.join('\n');
}

test('--json lists {key, shape, dtype} in the official key files\' spelling', async () => {
  // TorchScript: exactly the anatomy's tensors, in order, with their storage dtypes
  const jit = JSON.parse(await inspect(FIX + 'clip/tiny_clip_jit.pt', '--json'));
  const code: Record<string, string> = { 'torch.FloatStorage': 'F32', 'torch.HalfStorage': 'F16', 'torch.LongStorage': 'I64' };
  assert.deepEqual(jit, json('clip/tiny_clip_jit_anatomy.json').tensors_in_attribute_tree_order.map((t: any) => ({ key: t.name, shape: t.shape, dtype: code[t.storage_type] })));
  // bare state_dicts with the official key names: keys and dtypes equal the official lists
  for (const [file, keys] of [['faceparse/tiny_bisenet.pt', 'faceparse/official_bisenet_keys.json'], ['parsenet/tiny_parsenet.pt', 'parsenet/official_parsenet_keys.json']]) {
    const mine = JSON.parse(await inspect(FIX + file, '--json'));
    assert.deepEqual(mine.map((t: any) => [t.key, t.dtype]), json(keys!).tensors.map((t: any) => [t.key, t.dtype]), file);
  }
  // nested dicts flatten with dots; safetensors too
  const g = JSON.parse(await inspect(FIX + 'stylegan2/tiny_g_legacy.pt', '--json'));
  assert.deepEqual(g[0], { key: 'g_ema.style.1.weight', shape: [64, 64], dtype: 'F32' });
  assert.deepEqual(g[g.length - 1], { key: 'latent_avg', shape: [64], dtype: 'F32' });
  const st = JSON.parse(await inspect(FIX + 'clip/tiny_clip.safetensors', '--json'));
  assert.equal(st.length, 62);
  assert.ok(st.every((t: any) => t.dtype === 'F16'));
});

test('the text listing ends with the parameter total', async () => {
  const out = await inspect(FIX + 'clip/tiny_clip_state.pt');
  assert.match(out, /^# .*tiny_clip_state\.pt: zip, 62 tensors$/m);
  assert.match(out, /^visual\.conv1\.weight +F16 +\[64, 3, 32, 32\]$/m);
  assert.match(out, /^total: 1,912,161 elements in 62 tensors$/m); // the README's parameter count
  assert.match(await inspect(FIX + 'clip/tiny_clip.safetensors'), /^metadata:\n {2}format: pt$/m);
});

test('bin/clipmapper inspect end to end: JSON on stdout; a bad file is one line on stderr and exit 1', () => {
  const ok = spawnSync(process.execPath, [`${ROOT}bin/clipmapper.js`, 'inspect', '--json', FIX + 'mapper/tiny_styleclip_single_mapper.pt'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).length, 8);
  const bad = spawnSync(process.execPath, [`${ROOT}bin/clipmapper.js`, 'inspect', FIX + 'clip/tiny_clip_jit_anatomy.json'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^clipmapper: .*tiny_clip_jit_anatomy\.json: not a PyTorch checkpoint, TorchScript archive or safetensors file\n$/);
});
