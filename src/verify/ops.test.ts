// The op fixtures (test/fixtures/ops, a vendored copy of shared/fixtures/ops) through the same
// verifier `clipmapper verify` runs (src/verify/ops.ts), and that verifier's own failure modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors.ts';
import { f32 } from '../io/tensor.ts';
import { formatLine } from './compare.ts';
import { detect, verify } from './ops.ts';

const FIX = join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'ops');

/** How many results the files store: what a complete verification must compare. */
function storedResults(dir: string): number {
  let n = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
    for (const k of readSafetensors(join(dir, file)).tensors.keys()) {
      if (file === 'resize.safetensors' ? k !== 'input_u8' : /\.(out|loss)$|\.grad\./.test(k)) n++;
    }
  }
  return n;
}

test('every op fixture (upfirdn2d, modconv, activations, clip_norm, resize; forward and gradients) matches PyTorch', async (t) => {
  assert.ok(detect(FIX));
  const lines = await verify(FIX);
  for (const l of lines) t.diagnostic(formatLine(l));
  for (const l of lines) assert.ok(l.pass, formatLine(l));
  // one line per stored result, none left out (the modconv file alone: 6 outputs, 6 x (out, loss) and its gradients)
  assert.equal(lines.length, storedResults(FIX));
  assert.ok(lines.length >= 150, `${lines.length} lines`);
  for (const file of ['upfirdn2d', 'grad_upfirdn2d', 'modconv', 'grad_modconv', 'activations', 'grad_activations', 'clip_norm', 'grad_clip_norm', 'resize', 'grad_resize']) {
    assert.ok(lines.some((l) => l.name.startsWith(`${file}.safetensors:`)), `${file} was compared`);
  }
});

test('a tampered output fails alone; an unknown stored output is a "not checked" FAIL; an empty folder is an error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ops-fixture-'));
  try {
    for (const f of ['modconv.safetensors', 'grad_modconv.safetensors']) cpSync(join(FIX, f), join(dir, f));
    const src = readSafetensors(join(dir, 'grad_modconv.safetensors'));
    const t = src.tensors.get('modconv_up.grad.style')!;
    const bad = Float32Array.from(t.data as Float32Array);
    bad[3] += 1e-3 * Math.max(...bad.map(Math.abs));
    src.tensors.set('modconv_up.grad.style', f32([...t.shape], bad));
    src.tensors.set('mystery_op.out', f32([2], new Float32Array([1, 2])));
    writeSafetensors(join(dir, 'grad_modconv.safetensors'), src.tensors, src.metadata);
    const lines = await verify(dir);
    const failed = lines.filter((l) => !l.pass).map((l) => `${l.name} (${l.rule})`);
    assert.equal(failed.length, 2, failed.join('\n'));
    assert.match(failed[0] + failed[1], /grad_modconv\.safetensors:modconv_up\.grad\.style/);
    assert.match(failed.join('\n'), /grad_modconv\.safetensors:mystery_op\.out \(not checked by this verifier\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const empty = mkdtempSync(join(tmpdir(), 'ops-empty-'));
  try {
    assert.equal(detect(empty), false);
    await assert.rejects(verify(empty), /verify ops: none of/);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
