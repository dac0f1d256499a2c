// MatMul, Conv, ConvTranspose and pooling, with their VJPs.
//
// Conv's input-gradient is the adjoint conv: a ConvTranspose with the same weight, or, for
// stride 1, the equivalent plain Conv with the flipped weight (convInputGrad). Its weight-gradient
// is a correlation of the input with gy: one MatMul per kernel tap, or a Conv over permuted
// tensors for few input channels (convWeightGrad). ConvTranspose is the adjoint of Conv, so its
// rules are the same two pieces the other way round. The choices are speed only (bench/ops.ts);
// every formulation computes the same sums.
import { apply, broadcastShapes, defineOp, type Node, type Tensor } from '../graph.ts';
import { unbroadcast, mul, div } from './elementwise.ts';
import { concat, gather, mT, pad, reduceSum, reshape, slice, transpose, scatterElementsAdd } from './shape.ts';

// ---------- MatMul ----------
defineOp({
  name: 'MatMul',
  infer: ([a, b]) => {
    if (a.rank < 2 || b.rank < 2) throw new Error(`matmul: operands must have rank >= 2 ([${a.shape}] @ [${b.shape}])`);
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new Error(`matmul: [${a.shape.join(', ')}] @ [${b.shape.join(', ')}]: inner dims ${k} != ${k2}`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, m, n], dtype: a.dtype }];
  },
  emit: (ctx, ins, outs) => ctx.push({ opType: 'MatMul', inputs: ins, outputs: outs }),
  vjp: (n, [gy]) => {
    const [a, b] = n.inputs;
    return [unbroadcast(matmul(gy!, mT(b)), a.shape), unbroadcast(matmul(mT(a), gy!), b.shape)];
  },
});
export function matmul(a: Tensor, b: Tensor): Tensor { return apply('MatMul', [a, b])[0]; }

// ---------- Conv ----------
export interface ConvOpts {
  stride?: number | [number, number];
  /** symmetric [ph, pw] / scalar, or ONNX order [top, left, bottom, right] */
  padding?: number | [number, number] | [number, number, number, number];
  dilation?: number | [number, number];
  groups?: number;
}
export interface ConvAttrs { strides: number[]; pads: number[]; dilations: number[]; group: number; outputPadding?: number[] }

function pair(v: number | [number, number] | undefined, d: number): [number, number] {
  return v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v;
}
function normConv(o: ConvOpts): ConvAttrs {
  const p = o.padding ?? 0;
  const pads = typeof p === 'number' ? [p, p, p, p] : p.length === 2 ? [p[0], p[1], p[0], p[1]] : [...p];
  return { strides: pair(o.stride, 1), pads, dilations: pair(o.dilation, 1), group: o.groups ?? 1 };
}
function convAttrs(a: ConvAttrs, transposed: boolean) {
  const at = [
    { name: 'strides', ints: a.strides }, { name: 'pads', ints: a.pads },
    { name: 'dilations', ints: a.dilations }, { name: 'group', i: a.group },
  ];
  if (transposed && a.outputPadding) at.push({ name: 'output_padding', ints: a.outputPadding });
  return at;
}

defineOp({
  name: 'Conv',
  infer: ([x, w, b], at) => {
    const a = at as unknown as ConvAttrs;
    if (x.rank !== 4 || w.rank !== 4) throw new Error(`conv2d: input [${x.shape}] and weight [${w.shape}] must be 4-D`);
    if (x.shape[1] !== w.shape[1] * a.group) throw new Error(`conv2d: input has ${x.shape[1]} channels, weight [${w.shape}] with groups ${a.group} expects ${w.shape[1] * a.group}`);
    if (b && (b.rank !== 1 || b.shape[0] !== w.shape[0])) throw new Error(`conv2d: bias [${b.shape}] for ${w.shape[0]} outputs`);
    const out = [0, 1].map((i) => Math.floor((x.shape[2 + i] + a.pads[i] + a.pads[i + 2] - a.dilations[i] * (w.shape[2 + i] - 1) - 1) / a.strides[i]) + 1);
    if (out.some((d) => d <= 0)) throw new Error(`conv2d: input [${x.shape}] too small for kernel [${w.shape}]`);
    return [{ shape: [x.shape[0], w.shape[0], out[0], out[1]], dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Conv', inputs: ins, outputs: outs, attrs: convAttrs(n.attrs as unknown as ConvAttrs, false) }),
  vjp: (n, [gy]) => {
    const [x, w, b] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    const gx = convInputGrad(gy!, w, x.shape, a);
    const gw = convWeightGrad(x, gy!, w.shape, a);
    const gb = b ? reduceSum(gy!, [0, 2, 3]) : null;
    return b ? [gx, gw, gb] : [gx, gw];
  },
});

defineOp({
  name: 'ConvTranspose',
  infer: ([x, w, b], at) => {
    const a = at as unknown as ConvAttrs;
    if (x.shape[1] !== w.shape[0]) throw new Error(`conv_transpose2d: input has ${x.shape[1]} channels, weight [${w.shape}]`);
    const op = a.outputPadding ?? [0, 0];
    const out = [0, 1].map((i) => (x.shape[2 + i] - 1) * a.strides[i] - a.pads[i] - a.pads[i + 2] + a.dilations[i] * (w.shape[2 + i] - 1) + 1 + op[i]);
    const cout = w.shape[1] * a.group;
    if (b && b.shape[0] !== cout) throw new Error(`conv_transpose2d: bias [${b.shape}] for ${cout} outputs`);
    return [{ shape: [x.shape[0], cout, out[0], out[1]], dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'ConvTranspose', inputs: ins, outputs: outs, attrs: convAttrs(n.attrs as unknown as ConvAttrs, true) }),
  vjp: (n, [gy]) => {
    const [x, w, b] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    const base = { strides: a.strides, pads: a.pads, dilations: a.dilations, group: a.group };
    const gx = apply('Conv', [gy!, w], base)[0];
    // y = ConvT(x, w) is the adjoint of Conv(., w); its weight-gradient is Conv's with roles swapped
    const gw = convWeightGrad(gy!, x, w.shape, base);
    const gb = b ? reduceSum(gy!, [0, 2, 3]) : null;
    return b ? [gx, gw, gb] : [gx, gw];
  },
});

/**
 * d/dx of sum(gy * conv(x, w)): the adjoint of the conv, a ConvTranspose with the same weight.
 * For stride 1 (when the padding does not exceed the dilated kernel extent) it is computed instead
 * as a plain Conv of gy with the spatially flipped, in/out-swapped weight and padding
 * d (k - 1) - p: the same sums, and ORT's Conv kernel runs it ~30% faster than its ConvTranspose
 * (GEMM + col2im) on 512-channel 3x3 layers (bench/ops.ts).
 */
export function convInputGrad(gy: Tensor, w: Tensor, xshape: readonly number[], a: ConvAttrs): Tensor {
  const [O, Cg, kh, kw] = w.shape;
  const ext = [a.dilations[0] * (kh - 1), a.dilations[1] * (kw - 1)];
  const pads = [ext[0] - a.pads[0], ext[1] - a.pads[1], ext[0] - a.pads[2], ext[1] - a.pads[3]];
  if (a.strides[0] === 1 && a.strides[1] === 1 && pads.every((p) => p >= 0)) {
    const G = a.group;
    // [O, Cg, kh, kw] = [G, Og, Cg, kh, kw] -> [G, Cg, Og, kh, kw] = [C, Og, kh, kw], then flip kh and kw
    let wt = reshape(transpose(reshape(w, [G, O / G, Cg, kh, kw]), [0, 2, 1, 3, 4]), [G * Cg, O / G, kh, kw]);
    const reversed = (k: number) => w.graph.constant(BigInt64Array.from({ length: k }, (_, i) => BigInt(k - 1 - i)), [k], 'int64');
    if (kh > 1) wt = gather(wt, reversed(kh), 2);
    if (kw > 1) wt = gather(wt, reversed(kw), 3);
    return apply('Conv', [gy, wt], { strides: [1, 1], pads, dilations: a.dilations, group: G })[0];
  }
  // ConvTranspose output = (Hy-1)*s - pads + d*(k-1) + 1 + output_padding; pick output_padding to land on H
  // (the rows a strided forward never read, when (H + pads - d(k-1) - 1) % s != 0)
  const outputPadding = [0, 1].map((i) => xshape[2 + i] - ((gy.shape[2 + i] - 1) * a.strides[i] - a.pads[i] - a.pads[i + 2] + a.dilations[i] * (w.shape[2 + i] - 1) + 1));
  return apply('ConvTranspose', [gy, w], { ...a, outputPadding })[0];
}

/**
 * d/dw of sum(gy * conv(x, w)) for a weight of shape [O, C/G, kh, kw]:
 *   gw[o, c, i, j] = sum_{n, y, x} gy[n, o, y, x] * xpad[n, c, y*sh + i*dh, x*sw + j*dw].
 * Two exact formulations of these sums; which GEMMs they make decides their speed in ORT:
 *  - per kernel tap, one MatMul of gy [N, G, O/G, Ho*Wo] with the strided window of the padded
 *    input for that tap [N, G, C/G, Ho*Wo], transposed: kh*kw GEMMs of (O/G) x (C/G), K = Ho*Wo;
 *  - one Conv with batch and channels swapped (the input's C/G channels become the batch, gy is
 *    the "kernel", the forward's stride becomes the dilation): GEMMs of (O/G) x (kh*kw).
 * Measured (bench/ops.ts; scratch notes in the report): the taps are 2-3x faster for every
 * StyleGAN-like layer (3x3 and 1x1, 16..512 channels, 4..1024 px, grouped and strided), and up to
 * 13x for 1x1 (where the tap is the whole weight gradient as one GEMM); the Conv form wins only
 * when the input has few channels (a 7x7 stem on RGB: 45 vs 7 GFLOP/s), where a tap's GEMM
 * would have C/G < 8 columns. Only one tap's window is alive at a time, so the taps cost one
 * extra copy of the input in memory.
 */
export function convWeightGrad(x: Tensor, gy: Tensor, wshape: readonly number[], a: ConvAttrs): Tensor {
  const Cg = wshape[1];
  return a.group === 1 && Cg < 8 ? convWeightGradByConv(x, gy, wshape, a) : convWeightGradByTaps(x, gy, wshape, a);
}

export function convWeightGradByTaps(x: Tensor, gy: Tensor, wshape: readonly number[], a: ConvAttrs): Tensor {
  const N = x.shape[0];
  const [O, Cg, kh, kw] = wshape;
  const G = a.group;
  const [sh, sw] = a.strides;
  const [dh, dw] = a.dilations;
  const xp = pad(x, [0, 0, a.pads[0], a.pads[1], 0, 0, a.pads[2], a.pads[3]]);
  const [Ho, Wo] = gy.shape.slice(2);
  const gyr = reshape(gy, [N, G, O / G, Ho * Wo]);
  const taps: Tensor[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const win = slice(xp, [i * dh, j * dw], [i * dh + sh * (Ho - 1) + 1, j * dw + sw * (Wo - 1) + 1], [2, 3], [sh, sw]);
      let t = matmul(gyr, mT(reshape(win, [N, G, Cg, Ho * Wo]))); // [N, G, O/G, Cg]
      if (N > 1) t = reduceSum(t, 0);
      taps.push(reshape(t, [O, Cg, 1]));
    }
  }
  return reshape(concat(taps, 2), [O, Cg, kh, kw]);
}

export function convWeightGradByConv(x: Tensor, gy: Tensor, wshape: readonly number[], a: ConvAttrs): Tensor {
  const N = x.shape[0];
  const [O, Cg, kh, kw] = wshape;
  const G = a.group;
  const Og = O / G;
  const xp = pad(x, [0, 0, a.pads[0], a.pads[1], 0, 0, a.pads[2], a.pads[3]]);
  const [Hp, Wp] = xp.shape.slice(2);
  const [Ho, Wo] = gy.shape.slice(2);
  // [N, G, Cg, Hp, Wp] -> [Cg, G, N, Hp, Wp] -> [Cg, G*N, Hp, Wp]
  const xin = reshape(transpose(reshape(xp, [N, G, Cg, Hp, Wp]), [2, 1, 0, 3, 4]), [Cg, G * N, Hp, Wp]);
  // [N, G, Og, Ho, Wo] -> [G, Og, N, Ho, Wo] -> [G*Og, N, Ho, Wo]
  const win = reshape(transpose(reshape(gy, [N, G, Og, Ho, Wo]), [1, 2, 0, 3, 4]), [G * Og, N, Ho, Wo]);
  let r = apply('Conv', [xin, win], { strides: a.dilations, pads: [0, 0, 0, 0], dilations: a.strides, group: G })[0];
  r = slice(r, [0, 0], [kh, kw], [2, 3]); // [Cg, G*Og, kh, kw]
  return reshape(transpose(reshape(r, [Cg, G, Og, kh, kw]), [1, 2, 0, 3, 4]), [O, Cg, kh, kw]);
}

export function conv2d(x: Tensor, w: Tensor, b?: Tensor | null, opts: ConvOpts = {}): Tensor {
  return apply('Conv', b ? [x, w, b] : [x, w], { ...normConv(opts) })[0];
}
export function convTranspose2d(x: Tensor, w: Tensor, b?: Tensor | null, opts: ConvOpts & { outputPadding?: number | [number, number] } = {}): Tensor {
  return apply('ConvTranspose', b ? [x, w, b] : [x, w], { ...normConv(opts), outputPadding: pair(opts.outputPadding, 0) })[0];
}

// ---------- pooling ----------
/** PyTorch AvgPool2d (count_include_pad=True, ceil_mode=False), as a depthwise conv so its VJP is conv's. */
export function avgPool2d(x: Tensor, kernel: number, stride = kernel, padding = 0): Tensor {
  const [N, C, H, W] = x.shape;
  const k = new Float32Array(kernel * kernel).fill(1 / (kernel * kernel));
  const y = conv2d(reshape(x, [N * C, 1, H, W]), x.graph.constant(k, [1, 1, kernel, kernel]), null, { stride, padding });
  return reshape(y, [N, C, y.shape[2], y.shape[3]]);
}

defineOp({
  name: 'MaxPool',
  infer: ([x], at) => {
    const k = at.kernel as number[]; const s = at.strides as number[]; const p = at.pads as number[];
    const out = [0, 1].map((i) => Math.floor((x.shape[2 + i] + p[i] + p[i + 2] - k[i]) / s[i]) + 1);
    return [{ shape: [x.shape[0], x.shape[1], out[0], out[1]], dtype: x.dtype }, { shape: [x.shape[0], x.shape[1], out[0], out[1]], dtype: 'int64' }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({
    opType: 'MaxPool', inputs: ins, outputs: outs,
    attrs: [{ name: 'kernel_shape', ints: n.attrs.kernel as number[] }, { name: 'strides', ints: n.attrs.strides as number[] }, { name: 'pads', ints: n.attrs.pads as number[] }],
  }),
  vjp: (n: Node, [gy]) => {
    // ORT's indices are positions in the whole flattened input (N*C*H*W)
    const x = n.inputs[0];
    const idx = n.outputs[1];
    const flat = scatterElementsAdd(x.graph.zeros([x.size], x.dtype), reshape(idx, [idx.size]), reshape(gy!, [gy!.size]), 0);
    return [reshape(flat, x.shape)];
  },
});
export function maxPool2d(x: Tensor, kernel: number, stride = kernel, padding = 0): Tensor {
  return apply('MaxPool', [x], { kernel: [kernel, kernel], strides: [stride, stride], pads: [padding, padding, padding, padding] })[0];
}

// ---------- separable linear resampling (resize, adaptive pooling) ----------
/**
 * y = Ah @ x @ Aw^T over the last two axes, with constant matrices Ah [Ho, H] and Aw [Wo, W].
 * Every PyTorch resize (nearest, bilinear, bicubic with align_corners=False) and adaptive average
 * pooling is such a map; building the matrices in float32 exactly as PyTorch computes source
 * coordinates gives its numbers, and the VJP is two matmuls with the transposes.
 */
export function resample2d(x: Tensor, Ah: Float32Array, Aw: Float32Array, Ho: number, Wo: number): Tensor {
  const [H, W] = x.shape.slice(-2);
  if (Ah.length !== Ho * H || Aw.length !== Wo * W) throw new Error('resample2d: matrix sizes do not match');
  const g = x.graph;
  let y = x;
  if (!isIdentity(Aw, Wo, W)) y = matmul(y, g.constant(transposeMat(Aw, Wo, W), [W, Wo]));
  if (!isIdentity(Ah, Ho, H)) y = matmul(g.constant(Ah, [Ho, H]), y);
  return y;
}
function isIdentity(A: Float32Array, r: number, c: number): boolean {
  if (r !== c) return false;
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (A[i * c + j] !== (i === j ? 1 : 0)) return false;
  return true;
}
function transposeMat(A: Float32Array, r: number, c: number): Float32Array {
  const T = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) T[j * r + i] = A[i * c + j];
  return T;
}

/** mean over the spatial axes */
export function globalAvgPool(x: Tensor): Tensor {
  const [N, C, H, W] = x.shape;
  return div(reshape(reduceSum(reshape(x, [N, C, H * W]), 2), [N, C, 1, 1]), H * W);
}
void mul;
