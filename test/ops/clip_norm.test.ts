// CLIP's input normalisation (src/nets/clip/preprocess.ts): the constants are the fixtures'. Its
// forward values and gradients against PyTorch (clip_norm / grad_clip_norm) are checked by
// src/verify/ops.ts (src/verify/ops.test.ts, `clipmapper verify`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { CLIP_MEAN, CLIP_STD } from '../../src/nets/clip/preprocess.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'ops');

test('the CLIP mean/std constants are the ones the fixtures were made with', () => {
  const f = readSafetensors(join(FIX, 'clip_norm.safetensors'));
  assert.deepEqual([...(f.tensors.get('mean')!.data as Float32Array)], [...Float32Array.from(CLIP_MEAN)]);
  assert.deepEqual([...(f.tensors.get('std')!.data as Float32Array)], [...Float32Array.from(CLIP_STD)]);
});
