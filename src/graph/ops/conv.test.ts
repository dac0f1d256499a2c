// Finite-difference checks of MatMul, Conv, ConvTranspose and pooling VJPs (src/graph/ops/conv.ts).
//
// How eps is chosen: see the header of src/graph/testing.ts (five-point stencil, h = 1e-2 *
// max(1, rms(inputs)), float64 loss). Conv and MatMul are bilinear, so the stencil is exact up to
// round-off; the cases vary the geometry (stride, asymmetric padding, groups, dilation, output
// padding, even/odd sizes) since that is where the VJPs' index arithmetic could go wrong. Both
// operands are checked at once (the direction perturbs x, w and b together). MaxPool is piecewise
// linear: every window's values are distinct levels 0.15 apart and h = 5e-3, so two values
// approach by at most 2 * 2h|v| ~ 0.09 and no window's argmax changes (see locallyDistinct).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { add, mul } from './elementwise.ts';
import {
  avgPool2d, conv2d, convTranspose2d, convWeightGradByConv, convWeightGradByTaps, globalAvgPool, matmul, maxPool2d,
  type ConvAttrs,
} from './conv.ts';
import { Graph } from '../graph.ts';
import { fdTest, randn, rng } from '../testing.ts';
import { evaluate } from '../../runtime/session.ts';

/**
 * An [N, C, H, W] input for MaxPool: values from 40 levels 0.15 apart (range +-3) such that any
 * two cells closer than `radius` in a plane differ, so every pooling window (kernel <= radius)
 * has a unique maximum with a 0.15 margin. A global ramp of distinct values would do too, but its
 * range grows with the size and the loss's round-off with it.
 */
function locallyDistinct(shape: number[], radius: number, seed: number): Float32Array {
  const [N, C, H, W] = shape;
  const r = rng(seed);
  const levels = 40;
  const a = new Float32Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    const lv = new Int32Array(H * W).fill(-1);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const used = new Set<number>();
      for (let dy = -radius + 1; dy < radius; dy++) for (let dx = -radius + 1; dx < radius; dx++) {
        const yy = y + dy; const xx = x + dx;
        if (yy >= 0 && yy < H && xx >= 0 && xx < W && lv[yy * W + xx] >= 0) used.add(lv[yy * W + xx]);
      }
      let l: number;
      do l = Math.floor(r() * levels); while (used.has(l)); // at most (2 radius - 1)^2 - 1 < 40 are taken
      lv[y * W + x] = l;
      a[p * H * W + y * W + x] = (l - levels / 2) * 0.15;
    }
  }
  return a;
}
/** two cells 0.15 apart approach by at most 2 * 2h|v| ~ 0.09 at this step */
const POOL_H = 5e-3;

// ---------- MatMul ----------
fdTest(['MatMul'], 'matmul [3,4] @ [4,5]', [[3, 4], [4, 5]], ([a, b]) => matmul(a, b));
fdTest(['MatMul'], 'matmul broadcast batch [2,1,3,4] @ [3,4,5]', [[2, 1, 3, 4], [3, 4, 5]], ([a, b]) => matmul(a, b));
fdTest(['MatMul'], 'matmul 2-D @ batched [3,4] @ [2,4,5]', [[3, 4], [2, 4, 5]], ([a, b]) => matmul(a, b));
fdTest(['MatMul'], 'matmul batched @ 2-D [2,3,4] @ [4,5], squared', [[2, 3, 4], [4, 5]], ([a, b]) => { const y = matmul(a, b); return mul(y, y); });

// ---------- Conv ----------
fdTest(['Conv'], 'conv 3x3 padding 1 with bias, batch 2', [[2, 4, 6, 6], [3, 4, 3, 3], [3]],
  ([x, w, b]) => conv2d(x, w, b, { padding: 1 }));
fdTest(['Conv'], 'conv stride 2 padding 1, odd input', [[1, 2, 7, 7], [3, 2, 3, 3]], ([x, w]) => conv2d(x, w, null, { stride: 2, padding: 1 }));
fdTest(['Conv'], 'conv stride 2 padding 1, even input (input-grad needs output_padding)', [[1, 2, 8, 8], [3, 2, 3, 3]],
  ([x, w]) => conv2d(x, w, null, { stride: 2, padding: 1 }));
fdTest(['Conv'], 'conv asymmetric padding [t0,l1,b2,r1] stride 2', [[1, 2, 7, 6], [3, 2, 3, 3]],
  ([x, w]) => conv2d(x, w, null, { stride: 2, padding: [0, 1, 2, 1] }));
fdTest(['Conv'], 'conv groups 2', [[1, 4, 5, 5], [6, 2, 3, 3], [6]], ([x, w, b]) => conv2d(x, w, b, { groups: 2, padding: 1 }));
fdTest(['Conv'], 'conv depthwise (groups = channels)', [[2, 3, 5, 5], [3, 1, 3, 3]], ([x, w]) => conv2d(x, w, null, { groups: 3 }));
fdTest(['Conv'], 'conv dilation 2 padding 2', [[1, 2, 8, 8], [3, 2, 3, 3]], ([x, w]) => conv2d(x, w, null, { dilation: 2, padding: 2 }));
fdTest(['Conv'], 'conv groups 2 + stride 2 + dilation 2 + asymmetric padding, batch 2', [[2, 4, 9, 8], [4, 2, 3, 3]],
  ([x, w]) => conv2d(x, w, null, { groups: 2, stride: 2, dilation: 2, padding: [1, 0, 0, 1] }));
fdTest(['Conv'], 'conv 1x1', [[2, 3, 4, 4], [5, 3, 1, 1]], ([x, w]) => conv2d(x, w));
fdTest(['Conv'], 'conv 1x1 with 8 input channels, batch 3 (weight-grad by taps)', [[3, 8, 3, 3], [4, 8, 1, 1]], ([x, w]) => conv2d(x, w));
fdTest(['Conv'], 'conv stride 1, asymmetric padding [2,0,1,1], groups 2, dilation [1,2] (input-grad as a flipped conv)', [[1, 4, 6, 7], [4, 2, 3, 3]],
  ([x, w]) => conv2d(x, w, null, { padding: [2, 0, 1, 1], groups: 2, dilation: [1, 2] }));
fdTest(['Conv'], 'conv padding 3 > kernel extent 2 (input-grad falls back to ConvTranspose)', [[1, 2, 4, 4], [3, 2, 3, 3]],
  ([x, w]) => conv2d(x, w, null, { padding: 3 }));
fdTest(['Conv'], 'conv 16 channels in, 5x5 stride 2, batch 2 (weight-grad by strided taps)', [[2, 16, 7, 7], [3, 16, 5, 5]],
  ([x, w]) => conv2d(x, w, null, { stride: 2, padding: 2 }));
fdTest(['Conv'], 'conv non-square kernel 2x3, stride [2,1], padding [1,0]', [[1, 2, 7, 6], [3, 2, 2, 3]],
  ([x, w]) => conv2d(x, w, null, { stride: [2, 1], padding: [1, 0] }));

// ---------- ConvTranspose (weight [Cin, Cout/groups, kh, kw]) ----------
fdTest(['ConvTranspose'], 'convTranspose stride 2 padding 1 output_padding 1 with bias', [[1, 3, 4, 4], [3, 2, 3, 3], [2]],
  ([x, w, b]) => convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1 }));
fdTest(['ConvTranspose'], 'convTranspose stride 2 padding 0 (StyleGAN2 upsampling conv), batch 2', [[2, 3, 4, 4], [3, 2, 3, 3]],
  ([x, w]) => convTranspose2d(x, w, null, { stride: 2 }));
fdTest(['ConvTranspose'], 'convTranspose groups 2 stride 2', [[1, 4, 3, 3], [4, 3, 3, 3]],
  ([x, w]) => convTranspose2d(x, w, null, { stride: 2, padding: 1, groups: 2 }));
fdTest(['ConvTranspose'], 'convTranspose dilation 2', [[1, 2, 4, 4], [2, 3, 3, 3]], ([x, w]) => convTranspose2d(x, w, null, { dilation: 2 }));
fdTest(['ConvTranspose'], 'convTranspose stride [2,3] output_padding [1,2] groups 2 asymmetric padding', [[1, 2, 3, 4], [2, 2, 3, 4]],
  ([x, w]) => convTranspose2d(x, w, null, { stride: [2, 3], outputPadding: [1, 2], groups: 2, padding: [1, 0, 0, 2] }));

// ---------- pooling ----------
fdTest(['MaxPool'], 'maxPool 2x2 stride 2 (distinct values)', [[1, 2, 6, 6]], ([x]) => maxPool2d(x, 2), { inputs: [locallyDistinct([1, 2, 6, 6], 2, 31)], h: POOL_H });
fdTest(['MaxPool'], 'maxPool 3x3 stride 2 padding 1, overlapping windows, batch 2', [[2, 2, 7, 7]],
  ([x]) => maxPool2d(x, 3, 2, 1), { inputs: [locallyDistinct([2, 2, 7, 7], 3, 32)], h: POOL_H });
fdTest(['Conv'], 'avgPool2d 2x2 and 3x3 stride 1 padding 1 (count_include_pad)', [[1, 2, 6, 6]],
  ([x]) => add(avgPool2d(x, 2), avgPool2d(avgPool2d(x, 3, 1, 1), 2)));
fdTest(['ReduceSum'], 'globalAvgPool of x^2', [[2, 3, 4, 5]], ([x]) => globalAvgPool(mul(x, x)));

// convWeightGrad picks one of two formulations by shape (see its comment); the FD cases above
// reach both, and here they must agree with each other on geometries either could get.
test('conv weight gradient: the per-tap MatMul and the swapped-Conv formulations agree', async () => {
  const cases: { x: number[]; w: number[]; a: ConvAttrs }[] = [
    { x: [2, 6, 9, 8], w: [4, 3, 3, 3], a: { strides: [2, 1], pads: [1, 0, 2, 1], dilations: [1, 2], group: 2 } },
    { x: [1, 3, 7, 7], w: [5, 3, 5, 5], a: { strides: [2, 2], pads: [2, 2, 2, 2], dilations: [1, 1], group: 1 } },
    { x: [3, 8, 5, 5], w: [8, 8, 1, 1], a: { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1 } },
  ];
  for (const c of cases) {
    const g = new Graph('wgrad');
    const x = g.input('x', c.x);
    const y = conv2d(x, g.input('w', c.w), null, { stride: c.a.strides as [number, number], padding: c.a.pads as [number, number, number, number], dilation: c.a.dilations as [number, number], groups: c.a.group });
    const gy = g.input('gy', y.shape);
    const r = rng(7);
    const out = await evaluate({ taps: convWeightGradByTaps(x, gy, c.w, c.a), conv: convWeightGradByConv(x, gy, c.w, c.a) },
      { x: randn(x.size, r), gy: randn(gy.size, r) });
    const a = out.taps.data as Float32Array; const b = out.conv.data as Float32Array;
    let scale = 0; let diff = 0;
    for (let i = 0; i < a.length; i++) { scale = Math.max(scale, Math.abs(b[i])); diff = Math.max(diff, Math.abs(a[i] - b[i])); }
    assert.ok(diff <= 1e-5 * scale, `x [${c.x}] w [${c.w}]: formulations differ by ${diff} (scale ${scale})`);
  }
});
