// upfirdn2d: upsample (zero insertion), pad (negative crops), FIR filter, downsample —
// rosinality's upfirdn2d_native, built from pad/reshape/conv so the VJP comes from theirs.
// The FIR runs as a depthwise conv on [N, C, H, W] (see below).
import type { Tensor } from '../graph.ts';
import { conv2d } from './conv.ts';
import { pad, reshape } from './shape.ts';

export interface UpFirDnOpts { up?: number; down?: number; pad?: [number, number]; padXY?: [number, number, number, number] }

/**
 * x [N, C, H, W], kernel [kh, kw] (row-major). `pad` = (p0, p1) for both axes, as the official
 * `upfirdn2d(input, kernel, up, down, pad)`; `padXY` = (x0, x1, y0, y1) for the general case.
 */
export function upfirdn2d(x: Tensor, kernel: Float32Array, kh: number, kw: number, opts: UpFirDnOpts = {}): Tensor {
  const up = opts.up ?? 1;
  const down = opts.down ?? 1;
  const [x0, x1, y0, y1] = opts.padXY ?? [opts.pad?.[0] ?? 0, opts.pad?.[1] ?? 0, opts.pad?.[0] ?? 0, opts.pad?.[1] ?? 0];
  const [N, C, H, W] = x.shape;
  let t = x;
  if (up > 1) {
    // zero insertion: [N, C, H, 1, W, 1] -> pad to [N, C, H, up, W, up] -> [N, C, H*up, W*up]
    t = reshape(x, [N, C, H, 1, W, 1]);
    t = pad(t, [0, 0, 0, 0, 0, 0, 0, 0, 0, up - 1, 0, up - 1]);
    t = reshape(t, [N, C, H * up, W * up]);
  }
  // negative pads crop (a Slice); positive ones become the conv's own zero padding
  t = pad(t, [0, 0, Math.min(y0, 0), Math.min(x0, 0), 0, 0, Math.min(y1, 0), Math.min(x1, 0)]);
  // One depthwise conv (groups = C) with the flipped kernel per channel: ONNX Runtime runs it in
  // its blocked NCHWc layout when C is a multiple of the block size, much faster than folding
  // the channels into the batch; conv with stride `down` == conv followed by [::down, ::down].
  const w = new Float32Array(C * kh * kw);
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) w[i * kw + j] = kernel[(kh - 1 - i) * kw + (kw - 1 - j)];
  for (let c = 1; c < C; c++) w.copyWithin(c * kh * kw, 0, kh * kw);
  return conv2d(t, x.graph.constant(w, [C, 1, kh, kw]), null, {
    stride: down, padding: [Math.max(y0, 0), Math.max(x0, 0), Math.max(y1, 0), Math.max(x1, 0)], groups: C,
  });
}

/** make_kernel: outer product of a 1-D kernel, normalised to sum 1 (times factor^2 when upsampling) */
export function makeKernel(k1d: number[], scale = 1): { data: Float32Array; kh: number; kw: number } {
  const n = k1d.length;
  const data = new Float32Array(n * n);
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { data[i * n + j] = k1d[i] * k1d[j]; s += data[i * n + j]; }
  for (let i = 0; i < n * n; i++) data[i] = (data[i] / s) * scale;
  return { data, kh: n, kw: n };
}
