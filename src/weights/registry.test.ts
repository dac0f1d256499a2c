// The registry is well formed, and the `weights` CLI commands list it and fetch through it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { REGISTRY, findWeights, getWeights } from './registry.ts';
import { weightsCommand, listRows } from '../cli/weights.ts';

test('registry entries are complete and unique', () => {
  const names = new Set<string>();
  const files = new Set<string>();
  for (const e of REGISTRY) {
    assert.match(e.name, /^[a-z0-9][a-z0-9-]*$/, e.name);
    assert.ok(!names.has(e.name), `duplicate name ${e.name}`);
    assert.ok(!files.has(e.fileName), `duplicate file ${e.fileName}`);
    names.add(e.name);
    files.add(e.fileName);
    assert.ok(e.urls.length > 0 && e.urls.every((u) => u.startsWith('https://')), e.name);
    assert.ok(e.page.startsWith('https://'), e.name);
    assert.ok(e.sha256 === null || /^[0-9a-f]{64}$/.test(e.sha256), e.name);
    assert.ok(e.size === null || (Number.isInteger(e.size) && e.size > 0), e.name);
    assert.ok(e.description.length > 0 && e.license.length > 0, e.name);
  }
  for (const f of ['stylegan2-ffhq-config-f.pt', 'ViT-B-32.pt', 'model_ir_se50.pth', 'parsenet.pth', '79999_iter.pth',
    'e4e_ffhq_encode.pt', 'hairclip.pt', 'styleclip-mapper-afro.pt', 'ffclip_ffhq.pt']) {
    assert.ok(findWeights(f), f);
  }
});

test('OpenAI CLIP: the URL embeds the sha256 the registry enforces', () => {
  const e = getWeights('clip-vit-b-32');
  assert.equal(e.sha256, '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af');
  assert.ok(e.urls[0]!.includes(`/${e.sha256}/ViT-B-32.pt`));
  assert.equal(e.size, 353976522);
  assert.throws(() => getWeights('nope'), /unknown weights 'nope'/);
});

test('weights list / fetch through commander', async () => {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  const savedExit = process.exitCode;
  try {
    const program = new Command('clipmapper').exitOverride();
    weightsCommand(program);
    await program.parseAsync(['node', 'clipmapper', 'weights', 'list', '--json', '--cache-dir', '/nonexistent-dir']);
    const rows = JSON.parse(out.join('\n')) as ReturnType<typeof listRows>;
    assert.equal(rows.length, REGISTRY.length);
    assert.ok(rows.every((r) => r.cached === false));
    out.length = 0;
    await program.parseAsync(['node', 'clipmapper', 'weights', 'list', '--cache-dir', '/nonexistent-dir']);
    assert.match(out.join('\n'), /hairclip\s+hairclip\.pt/);
    // fetch of an unknown name fails cleanly (exit code 1, one line), without any network
    await program.parseAsync(['node', 'clipmapper', 'weights', 'fetch', 'no-such-model', '--cache-dir', '/nonexistent-dir']);
    assert.equal(process.exitCode, 1);
    assert.match(err.join('\n'), /unknown weights 'no-such-model'/);
  } finally {
    console.log = log;
    console.error = error;
    process.exitCode = savedExit;
  }
});
