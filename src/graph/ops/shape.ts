// Shape ops (reshape, transpose, concat, slice, gather, pad, expand) and reductions, with VJPs.
import { apply, broadcastShapes, defineOp, normAxis, numel, type Shape, type Tensor } from '../graph.ts';
import { add, div, equal, mul, cast } from './elementwise.ts';

// ---------- Reshape ----------
defineOp({
  name: 'Reshape',
  infer: ([x], a) => [{ shape: a.shape as number[], dtype: x.dtype }],
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Reshape', inputs: [ins[0], ctx.constI64(n.attrs.shape as number[])], outputs: outs }),
  vjp: (n, [gy]) => [reshape(gy!, n.inputs[0].shape)],
});
/** Reshape; one dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const known = s.reduce((p, d, i) => (i === neg ? p : p * d), 1);
    if (known === 0 || x.size % known !== 0) throw new Error(`reshape: cannot infer -1 from [${x.shape}] to [${shape}]`);
    s[neg] = x.size / known;
  }
  if (numel(s) !== x.size) throw new Error(`reshape: [${x.shape.join(', ')}] (${x.size}) to [${shape.join(', ')}]`);
  if (s.length === x.rank && s.every((d, i) => d === x.shape[i])) return x;
  return apply('Reshape', [x], { shape: s })[0];
}
export function flatten(x: Tensor, startDim = 1): Tensor {
  const a = normAxis(startDim, x.rank);
  return reshape(x, [...x.shape.slice(0, a), -1]);
}
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis(axis, x.rank + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}
export function squeeze(x: Tensor, axis: number): Tensor {
  const a = normAxis(axis, x.rank);
  if (x.shape[a] !== 1) throw new Error(`squeeze: dim ${axis} of [${x.shape}] is not 1`);
  return reshape(x, [...x.shape.slice(0, a), ...x.shape.slice(a + 1)]);
}

// ---------- Transpose ----------
defineOp({
  name: 'Transpose',
  infer: ([x], a) => {
    const perm = a.perm as number[];
    if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) throw new Error(`transpose: bad perm [${perm}] for rank ${x.rank}`);
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Transpose', inputs: ins, outputs: outs, attrs: [{ name: 'perm', ints: n.attrs.perm as number[] }] }),
  vjp: (n, [gy]) => {
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => { inv[p] = i; });
    return [transpose(gy!, inv)];
  },
});
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.every((p, i) => p === i)) return x;
  return apply('Transpose', [x], { perm: [...perm] })[0];
}
/** swap the last two axes */
export function mT(x: Tensor): Tensor {
  const p = x.shape.map((_, i) => i);
  [p[x.rank - 2], p[x.rank - 1]] = [p[x.rank - 1], p[x.rank - 2]];
  return transpose(x, p);
}

// ---------- Concat ----------
defineOp({
  name: 'Concat',
  infer: (xs, a) => {
    const ax = a.axis as number;
    const s = [...xs[0].shape];
    s[ax] = 0;
    for (const x of xs) {
      if (x.rank !== s.length || x.shape.some((d, i) => i !== ax && d !== xs[0].shape[i])) {
        throw new Error(`concat: shapes [${xs.map((t) => t.shape.join(',')).join('] [')}] differ off axis ${ax}`);
      }
      s[ax] += x.shape[ax];
    }
    return [{ shape: s, dtype: xs[0].dtype }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Concat', inputs: ins, outputs: outs, attrs: [{ name: 'axis', i: n.attrs.axis as number }] }),
  vjp: (n, [gy]) => {
    const ax = n.attrs.axis as number;
    let off = 0;
    return n.inputs.map((x) => {
      const s = slice(gy!, [off], [off + x.shape[ax]], [ax]);
      off += x.shape[ax];
      return s;
    });
  },
});
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 1) return xs[0];
  return apply('Concat', xs, { axis: normAxis(axis, xs[0].rank) })[0];
}
export function stack(xs: Tensor[], axis = 0): Tensor {
  const a = normAxis(axis, xs[0].rank + 1);
  return concat(xs.map((x) => unsqueeze(x, a)), a);
}

// ---------- Slice (static, positive steps) ----------
interface SliceSpec { starts: number[]; ends: number[]; axes: number[]; steps: number[] }
defineOp({
  name: 'Slice',
  infer: ([x], a) => {
    const { starts, ends, axes, steps } = a as unknown as SliceSpec;
    const s = [...x.shape];
    axes.forEach((ax, i) => { s[ax] = Math.max(0, Math.ceil((ends[i] - starts[i]) / steps[i])); });
    return [{ shape: s, dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => {
    const { starts, ends, axes, steps } = n.attrs as unknown as SliceSpec;
    ctx.push({ opType: 'Slice', inputs: [ins[0], ctx.constI64(starts), ctx.constI64(ends), ctx.constI64(axes), ctx.constI64(steps)], outputs: outs });
  },
  vjp: (n, [gy]) => {
    const x = n.inputs[0];
    const { starts, axes, steps } = n.attrs as unknown as SliceSpec;
    let g = gy!;
    axes.forEach((ax, i) => {
      const m = g.shape[ax];
      const st = steps[i];
      if (st > 1) {
        // interleave st-1 zeros after each element: [.., m, ..] -> [.., m, st, ..] -> [.., m*st, ..]
        const u = unsqueeze(g, ax + 1);
        const pads = new Array(2 * u.rank).fill(0);
        pads[u.rank + ax + 1] = st - 1;
        g = reshape(pad(u, pads), [...g.shape.slice(0, ax), m * st, ...g.shape.slice(ax + 1)]);
      }
      const before = starts[i];
      const after = x.shape[ax] - before - g.shape[ax];
      const pads = new Array(2 * g.rank).fill(0);
      pads[ax] = before;
      if (after >= 0) pads[g.rank + ax] = after;
      else g = slice(g, [0], [g.shape[ax] + after], [ax]);
      g = pad(g, pads);
    });
    return [g];
  },
});
/** x[starts:ends:steps] along axes (PyTorch-style clamping of out-of-range bounds; negative indices count from the end). */
export function slice(x: Tensor, starts: number[], ends: number[], axes?: number[], steps?: number[]): Tensor {
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, x.rank));
  const st = steps ?? ax.map(() => 1);
  const s: number[] = []; const e: number[] = [];
  let identityCut = true;
  ax.forEach((a, i) => {
    const d = x.shape[a];
    if (st[i] < 1) throw new Error(`slice: step ${st[i]} must be >= 1`);
    let b = starts[i] < 0 ? starts[i] + d : starts[i];
    let en = ends[i] < 0 ? ends[i] + d : ends[i];
    b = Math.min(Math.max(b, 0), d);
    en = Math.min(Math.max(en, b), d);
    s.push(b); e.push(en);
    if (b !== 0 || en !== d || st[i] !== 1) identityCut = false;
  });
  if (identityCut) return x;
  return apply('Slice', [x], { starts: s, ends: e, axes: ax, steps: st })[0];
}
/** one index along an axis, dropping it */
export function select(x: Tensor, axis: number, index: number): Tensor {
  const a = normAxis(axis, x.rank);
  const i = index < 0 ? index + x.shape[a] : index;
  return squeeze(slice(x, [i], [i + 1], [a]), a);
}
export function split(x: Tensor, sizes: number[], axis: number): Tensor[] {
  let off = 0;
  return sizes.map((s) => { const t = slice(x, [off], [off + s], [axis]); off += s; return t; });
}

// ---------- Pad (constant) ----------
defineOp({
  name: 'Pad',
  infer: ([x], a) => {
    const p = a.pads as number[];
    return [{ shape: x.shape.map((d, i) => d + p[i] + p[i + x.rank]), dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => {
    const v = n.attrs.value as number;
    const inputs = [ins[0], ctx.constI64(n.attrs.pads as number[])];
    if (v !== 0) inputs.push(ctx.constF32([v], []));
    ctx.push({ opType: 'Pad', inputs, outputs: outs, attrs: [{ name: 'mode', s: 'constant' }] });
  },
  vjp: (n, [gy]) => {
    const x = n.inputs[0];
    const p = n.attrs.pads as number[];
    const axes = x.shape.map((_, i) => i);
    return [slice(gy!, axes.map((i) => p[i]), axes.map((i) => p[i] + x.shape[i]), axes)];
  },
});
/** ONNX-order pads [b0, b1, ..., e0, e1, ...]; negative entries crop. */
export function pad(x: Tensor, pads: number[], value = 0): Tensor {
  if (pads.length !== 2 * x.rank) throw new Error(`pad: ${pads.length} pads for rank ${x.rank}`);
  let t = x;
  if (pads.some((p) => p < 0)) {
    const axes = x.shape.map((_, i) => i);
    t = slice(x, axes.map((i) => Math.max(0, -pads[i])), axes.map((i) => x.shape[i] - Math.max(0, -pads[i + x.rank])), axes);
    pads = pads.map((p) => Math.max(0, p));
  }
  if (pads.every((p) => p === 0)) return t;
  return apply('Pad', [t], { pads, value })[0];
}
/** PyTorch F.pad order: (left, right, top, bottom, ...) from the last dim backwards. */
export function padTorch(x: Tensor, p: number[], value = 0): Tensor {
  const pads = new Array(2 * x.rank).fill(0);
  for (let i = 0; i < p.length / 2; i++) {
    const ax = x.rank - 1 - i;
    pads[ax] = p[2 * i];
    pads[ax + x.rank] = p[2 * i + 1];
  }
  return pad(x, pads, value);
}

// ---------- Expand ----------
defineOp({
  name: 'Expand',
  infer: ([x], a) => [{ shape: broadcastShapes(x.shape, a.shape as number[]), dtype: x.dtype }],
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Expand', inputs: [ins[0], ctx.constI64(n.attrs.shape as number[])], outputs: outs }),
  vjp: (n, [gy]) => [unbroadcastTo(gy!, n.inputs[0].shape)],
});
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const s = broadcastShapes(x.shape, shape);
  if (s.length === x.rank && s.every((d, i) => d === x.shape[i])) return x;
  return apply('Expand', [x], { shape: [...shape] })[0];
}
function unbroadcastTo(g: Tensor, shape: Shape): Tensor {
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  return reshape(axes.length ? reduceSum(g, axes, true) : g, shape);
}

// ---------- Gather / scatter-add ----------
defineOp({
  name: 'Gather',
  infer: ([x, idx], a) => {
    const ax = a.axis as number;
    if (idx.dtype !== 'int64' && idx.dtype !== 'int32') throw new Error(`gather: indices must be int64/int32, got ${idx.dtype}`);
    return [{ shape: [...x.shape.slice(0, ax), ...idx.shape, ...x.shape.slice(ax + 1)], dtype: x.dtype }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Gather', inputs: ins, outputs: outs, attrs: [{ name: 'axis', i: n.attrs.axis as number }] }),
  vjp: (n, [gy]) => {
    const [x, idx] = n.inputs;
    const ax = n.attrs.axis as number;
    // move the gathered axis to the front, scatter-add rows, move it back
    const perm = [ax, ...x.shape.map((_, i) => i).filter((i) => i !== ax)];
    const xT = perm.map((p) => x.shape[p]);
    const ir = idx.rank;
    // gy: [pre..., idx..., post...] -> [idx..., pre..., post...]
    const gperm = [...Array(ir).keys()].map((i) => ax + i)
      .concat([...Array(ax).keys()], [...Array(gy!.rank - ax - ir).keys()].map((i) => ax + ir + i));
    const upd = transpose(gy!, gperm);
    const zeros = x.graph.zeros(xT, x.dtype);
    const scat = scatterNDAdd(zeros, unsqueeze(cast(idx, 'int64'), ir), upd);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => { inv[p] = i; });
    return [transpose(scat, inv), null];
  },
});
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor {
  return apply('Gather', [x, indices], { axis: normAxis(axis, x.rank) })[0];
}

defineOp({
  name: 'ScatterNDAdd',
  infer: ([data]) => [{ shape: data.shape, dtype: data.dtype }],
  emit: (ctx, ins, outs) => ctx.push({ opType: 'ScatterND', inputs: ins, outputs: outs, attrs: [{ name: 'reduction', s: 'add' }] }),
  // out = data + scatter(updates): data passes gy through; each update row reads gy at its index
  // (a GatherND — duplicate indices each read the same cotangent, as their sum is linear)
  vjp: (n, [gy]) => [gy, null, gatherND(gy!, n.inputs[1])],
});
export function scatterNDAdd(data: Tensor, indices: Tensor, updates: Tensor): Tensor {
  return apply('ScatterNDAdd', [data, indices, updates])[0];
}

defineOp({
  name: 'GatherND',
  infer: ([x, idx]) => {
    const k = idx.shape[idx.rank - 1];
    if (idx.dtype !== 'int64') throw new Error(`gatherND: indices must be int64, got ${idx.dtype}`);
    if (!(k >= 1 && k <= x.rank)) throw new Error(`gatherND: index depth ${k} for data of rank ${x.rank}`);
    return [{ shape: [...idx.shape.slice(0, -1), ...x.shape.slice(k)], dtype: x.dtype }];
  },
  emit: (ctx, ins, outs) => ctx.push({ opType: 'GatherND', inputs: ins, outputs: outs }),
  vjp: (n, [gy]) => {
    const x = n.inputs[0];
    return [scatterNDAdd(x.graph.zeros(x.shape, x.dtype), n.inputs[1], gy!), null];
  },
});
/** ONNX GatherND (batch_dims 0): x[idx[..., 0], ..., idx[..., k-1]] for the last axis of idx of size k */
export function gatherND(x: Tensor, indices: Tensor): Tensor {
  return apply('GatherND', [x, indices])[0];
}

defineOp({
  name: 'ScatterElementsAdd',
  infer: ([data]) => [{ shape: data.shape, dtype: data.dtype }],
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'ScatterElements', inputs: ins, outputs: outs, attrs: [{ name: 'axis', i: n.attrs.axis as number }, { name: 'reduction', s: 'add' }] }),
});
export function scatterElementsAdd(data: Tensor, indices: Tensor, updates: Tensor, axis = 0): Tensor {
  return apply('ScatterElementsAdd', [data, indices, updates], { axis })[0];
}

// ---------- reductions ----------
function reduceInfer([x]: Tensor[], a: Record<string, unknown>) {
  const axes = a.axes as number[];
  const keep = a.keepdims as boolean;
  const s: number[] = [];
  x.shape.forEach((d, i) => { if (!axes.includes(i)) s.push(d); else if (keep) s.push(1); });
  return [{ shape: s, dtype: x.dtype }];
}
function reduceEmit(opType: string) {
  return (ctx: Parameters<NonNullable<Parameters<typeof defineOp>[0]['emit']>>[0], ins: string[], outs: string[], n: { attrs: Record<string, unknown> }) =>
    ctx.push({ opType, inputs: [ins[0], ctx.constI64(n.attrs.axes as number[])], outputs: outs, attrs: [{ name: 'keepdims', i: n.attrs.keepdims ? 1 : 0 }] });
}
function keptShape(x: Tensor, axes: number[]): number[] { return x.shape.map((d, i) => (axes.includes(i) ? 1 : d)); }

defineOp({
  name: 'ReduceSum', infer: reduceInfer, emit: reduceEmit('ReduceSum'),
  vjp: (n, [gy]) => {
    const x = n.inputs[0];
    return [expand(reshape(gy!, keptShape(x, n.attrs.axes as number[])), x.shape)];
  },
});
defineOp({
  name: 'ReduceMean', infer: reduceInfer, emit: reduceEmit('ReduceMean'),
  vjp: (n, [gy]) => {
    const x = n.inputs[0];
    const axes = n.attrs.axes as number[];
    const cnt = axes.reduce((p, a) => p * x.shape[a], 1);
    return [expand(reshape(div(gy!, cnt), keptShape(x, axes)), x.shape)];
  },
});
defineOp({
  name: 'ReduceMax', infer: reduceInfer, emit: reduceEmit('ReduceMax'),
  vjp: (n, [gy]) => {
    // ties share the cotangent equally, as torch.amax does
    const x = n.inputs[0];
    const axes = n.attrs.axes as number[];
    const ks = keptShape(x, axes);
    const mask = cast(equal(x, reshape(n.outputs[0], ks)), x.dtype);
    const cntT = reduceSum(mask, axes, true);
    return [mul(mask, div(reshape(gy!, ks), cntT))];
  },
});

function reduce(op: string) {
  return (x: Tensor, axes?: number | number[], keepdims = false): Tensor => {
    const ax = axes === undefined ? x.shape.map((_, i) => i) : (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(a, x.rank));
    const sorted = [...new Set(ax)].sort((p, q) => p - q);
    if (!sorted.length) return x;
    return apply(op, [x], { axes: sorted, keepdims })[0];
  };
}
export const reduceSum = reduce('ReduceSum');
export const reduceMean = reduce('ReduceMean');
export const reduceMax = reduce('ReduceMax');

defineOp({
  name: 'ArgMax',
  infer: ([x], a) => {
    const ax = a.axis as number;
    const s = x.shape.flatMap((d, i) => (i === ax ? (a.keepdims ? [1] : []) : [d]));
    return [{ shape: s, dtype: 'int64' }];
  },
  emit: (ctx, ins, outs, n) => ctx.push({
    opType: 'ArgMax', inputs: ins, outputs: outs,
    attrs: [{ name: 'axis', i: n.attrs.axis as number }, { name: 'keepdims', i: n.attrs.keepdims ? 1 : 0 }],
  }),
});
export function argmax(x: Tensor, axis: number, keepdims = false): Tensor {
  return apply('ArgMax', [x], { axis: normAxis(axis, x.rank), keepdims })[0];
}

/** sum of a list of same-shaped tensors */
export function addN(xs: Tensor[]): Tensor {
  return xs.reduce((a, b) => add(a, b));
}
