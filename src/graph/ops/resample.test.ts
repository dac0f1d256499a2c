// Resize, adaptive pooling, upsample+pool and upfirdn2d (src/graph/ops/resample.ts, upfirdn2d.ts):
// finite-difference checks of their gradients and the align_corners matrices (the PyTorch fixtures
// test/fixtures/ops/{resize,grad_resize}.safetensors are checked by src/verify/ops.ts).
//
// How eps is chosen for the FD checks: see the header of src/graph/testing.ts (five-point
// stencil, h = 1e-2 * max(1, rms(x)), float64 loss). All these maps are linear in x (constant
// matrices or FIR kernels), so the stencil is exact up to round-off and the checks test that each
// gradient is the adjoint of its forward, across up/down ratios, clamped edge taps and crops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaptiveAvgPool2d, resize, resizeMatrix, upsamplePool, upsampleNearest } from './resample.ts';
import { makeKernel, upfirdn2d } from './upfirdn2d.ts';
import { fdTest } from '../testing.ts';

// ---------- finite differences ----------
fdTest(['MatMul'], 'resize nearest 5x6 -> 7x4 (non-integer ratios)', [[1, 2, 5, 6]], ([x]) => resize(x, [7, 4], 'nearest'));
fdTest(['Expand'], 'resize nearest x2 (integer: broadcast path)', [[1, 2, 5, 6]], ([x]) => resize(x, [10, 12], 'nearest'));
fdTest(['Expand'], 'upsampleNearest 3 x 2', [[2, 1, 3, 4]], ([x]) => upsampleNearest(x, 3, 2));
fdTest(['MatMul'], 'resize bilinear up 5x6 -> 8x11', [[1, 2, 5, 6]], ([x]) => resize(x, [8, 11], 'bilinear'));
fdTest(['MatMul'], 'resize bilinear down 8x9 -> 5x4', [[1, 2, 8, 9]], ([x]) => resize(x, [5, 4], 'bilinear'));
fdTest(['MatMul'], 'resize bicubic up 5x6 -> 9x13 (edge-clamped taps)', [[1, 2, 5, 6]], ([x]) => resize(x, [9, 13], 'bicubic'));
fdTest(['MatMul'], 'resize bicubic down 11x9 -> 4x3', [[1, 2, 11, 9]], ([x]) => resize(x, [4, 3], 'bicubic'));
fdTest(['MatMul'], 'adaptiveAvgPool2d 10x7 -> 4x5 (uneven and overlapping windows)', [[2, 2, 10, 7]], ([x]) => adaptiveAvgPool2d(x, [4, 5]));
fdTest(['MatMul'], 'upsamplePool(7, 2): 8 -> 28 (CLIPLoss-style resize)', [[1, 2, 8, 8]], ([x]) => upsamplePool(x, 7, 2));
fdTest(['MatMul'], 'resize bicubic align_corners 5x6 -> 9x13', [[1, 2, 5, 6]], ([x]) => resize(x, [9, 13], 'bicubic', { alignCorners: true }));
fdTest(['MatMul'], 'upsamplePool(7, 4): 8 -> 14', [[1, 3, 8, 8]], ([x]) => upsamplePool(x, 7, 4));

const k4 = makeKernel([1, 3, 3, 1], 4);
const k1 = makeKernel([1, 3, 3, 1]);
fdTest(['Pad', 'Conv'], 'upfirdn2d up 2 pad (2,1) (StyleGAN2 Upsample)', [[2, 2, 5, 5]],
  ([x]) => upfirdn2d(x, k4.data, k4.kh, k4.kw, { up: 2, pad: [2, 1] }));
fdTest(['Conv'], 'upfirdn2d down 2 pad (1,1) (Downsample)', [[1, 2, 8, 8]], ([x]) => upfirdn2d(x, k1.data, k1.kh, k1.kw, { down: 2, pad: [1, 1] }));
fdTest(['Conv'], 'upfirdn2d blur pad (2,2)', [[1, 2, 6, 6]], ([x]) => upfirdn2d(x, k1.data, k1.kh, k1.kw, { pad: [2, 2] }));
fdTest(['Slice', 'Conv'], 'upfirdn2d up 2 with negative pad x0 = y0 = -1 (crop), x1 = y1 = 3', [[1, 2, 5, 5]],
  ([x]) => upfirdn2d(x, k4.data, k4.kh, k4.kw, { up: 2, padXY: [-1, 3, -1, 3] }));
fdTest(['Conv'], 'upfirdn2d asymmetric non-separable 3x2 kernel, up 2 down 3, pads (1,0,2,1)', [[1, 1, 7, 6]],
  ([x]) => upfirdn2d(x, Float32Array.from([1, -2, 0.5, 3, 0.25, -1]), 3, 2, { up: 2, down: 3, padXY: [1, 0, 2, 1] }));

// Forward values and gradients against PyTorch (test/fixtures/ops/resize.safetensors,
// grad_resize.safetensors): src/verify/ops.ts, run by src/verify/ops.test.ts and `clipmapper verify`.

test('align_corners resize matrices match PyTorch 1.13 (5 -> 11, impulse responses)', () => {
  // F.interpolate(eye(5).view(5, 1, 5, 1), size=(11, 1), mode, align_corners=True), rows = outputs
  const want: Record<'bilinear' | 'bicubic', number[]> = {
    bilinear: [1, 0, 0, 0, 0, 0.60000002, 0.40000001, 0, 0, 0, 0.19999999, 0.80000001, 0, 0, 0, 0, 0.79999995, 0.20000002, 0, 0, 0, 0.39999998, 0.60000002, 0, 0, 0, 0, 1, 3e-08, 0, 0, 0, 0.59999996, 0.40000004, 0, 0, 0, 0.19999993, 0.80000007, 0, 0, 0, 0, 0.79999995, 0.20000005, 0, 0, 0, 0.39999998, 0.60000002, 0, 0, 0, 0, 1],
    bicubic: [1, 0, 0, 0, 0, 0.61199999, 0.45999998, -0.07200003, 0, 0, 0.17600006, 0.92000002, -0.09599996, 0, 0, -0.09599996, 0.91999996, 0.20000011, -0.02399993, 0, -0.07200003, 0.45999998, 0.72000003, -0.10800004, 0, 0, 0, 1, 0, 0, 0, -0.10800028, 0.71999997, 0.46000004, -0.07199979, 0, -0.02400017, 0.19999993, 0.92000008, -0.09599972, 0, 0, -0.09599996, 0.91999996, 0.17600018, 0, 0, -0.07200003, 0.45999998, 0.61199999, 0, 0, 0, 0, 1],
  };
  for (const mode of ['bilinear', 'bicubic'] as const) {
    const A = resizeMatrix(5, 11, mode, undefined, true);
    A.forEach((v, i) => assert.ok(Math.abs(v - want[mode][i]) < 1e-6, `${mode} [${Math.floor(i / 5)}, ${i % 5}]: ${v} vs ${want[mode][i]}`));
  }
  assert.throws(() => resizeMatrix(5, 11, 'nearest', undefined, true), /align_corners/);
});
