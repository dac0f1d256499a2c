// CLIP's input normalisation (src/nets/clip/preprocess.ts: clipNormalize, hairclipRenorm) against
// PyTorch: forward values (test/fixtures/ops/clip_norm.safetensors) and gradients
// (grad_clip_norm.safetensors), with the per-tensor suggested_atol of the gradient file's
// metadata (it stores the same outputs again, so its tolerances cover the forward file too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as G from '../../src/graph/index.ts';
import { evaluate } from '../../src/runtime/session.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { compare, formatLine, type CompareLine } from '../../src/verify/compare.ts';
import { CLIP_MEAN, CLIP_STD, clipNormalize, hairclipRenorm } from '../../src/nets/clip/preprocess.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'ops');
const CASES: [string, (x: G.Tensor) => G.Tensor][] = [
  ['hairclip_renorm', hairclipRenorm],
  ['clip_normalize_01', clipNormalize],
];

test('the CLIP mean/std constants are the ones the fixtures were made with', () => {
  const f = readSafetensors(join(FIX, 'clip_norm.safetensors'));
  assert.deepEqual([...(f.tensors.get('mean')!.data as Float32Array)], [...Float32Array.from(CLIP_MEAN)]);
  assert.deepEqual([...(f.tensors.get('std')!.data as Float32Array)], [...Float32Array.from(CLIP_STD)]);
});

test('clipNormalize / hairclipRenorm: forward values and gradients match PyTorch', async (t) => {
  const fwd = readSafetensors(join(FIX, 'clip_norm.safetensors'));
  const grd = readSafetensors(join(FIX, 'grad_clip_norm.safetensors'));
  const atol = JSON.parse(grd.metadata.suggested_atol) as Record<string, number>;
  const lines: CompareLine[] = [];
  for (const [name, op] of CASES) {
    const xin = fwd.tensors.get(`${name}.in`)!;
    const R = grd.tensors.get(`${name}.R`)!;
    const g = new G.Graph(name);
    const x = g.input('x', xin.shape);
    const cot = g.input('R', R.shape);
    const y = op(x);
    const [gx] = G.vjp([y], [cot], [x]);
    const r = await evaluate({ y, gx }, { x: xin.data as Float32Array, R: R.data as Float32Array });
    const yv = r.y.data as Float32Array; const rv = R.data as Float32Array;
    let loss = 0;
    for (let i = 0; i < yv.length; i++) loss += yv[i] * rv[i];
    const tol = (k: string) => ({ atol: atol[k], rtol: 0 });
    lines.push(compare(`clip_norm ${name}.out`, yv, fwd.tensors.get(`${name}.out`)!.data as Float32Array, tol(`${name}.out`)));
    lines.push(compare(`grad_clip_norm ${name}.out`, yv, grd.tensors.get(`${name}.out`)!.data as Float32Array, tol(`${name}.out`)));
    lines.push(compare(`${name}.loss`, [loss], grd.tensors.get(`${name}.loss`)!.data as Float32Array, tol(`${name}.loss`)));
    const gk = `${name}.grad.${name}.in`;
    lines.push(compare(gk, r.gx.data as Float32Array, grd.tensors.get(gk)!.data as Float32Array, tol(gk)));
  }
  for (const l of lines) t.diagnostic(formatLine(l));
  for (const l of lines) assert.ok(l.pass, formatLine(l));
});
