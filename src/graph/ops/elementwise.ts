// Elementwise ops with numpy broadcasting, and their VJP rules.
import {
  apply, broadcastShapes, defineOp, lift, sameShape,
  type Attrs, type DType, type OpDef, type Tensor, type TensorLike, type Node,
} from '../graph.ts';
import { reduceSum, reshape } from './shape.ts';

/** Sum a broadcast cotangent back down to `shape` (the VJP of broadcasting). */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? reduceSum(g, axes, true) : g;
  return reshape(s, shape);
}

function binaryInfer(inputs: Tensor[], _a: Attrs, outDtype?: DType) {
  const [a, b] = inputs;
  if (a.dtype !== b.dtype) throw new Error(`dtype mismatch: ${a.dtype} vs ${b.dtype}`);
  return [{ shape: broadcastShapes(a.shape, b.shape), dtype: outDtype ?? a.dtype }];
}

function binary(name: string, vjp?: OpDef['vjp'], outDtype?: DType): OpDef {
  return defineOp({
    name,
    infer: (i, a) => binaryInfer(i, a, outDtype),
    emit: (ctx, ins, outs) => ctx.push({ opType: name, inputs: ins, outputs: outs }),
    vjp,
  });
}

binary('Add', (n, [gy]) => [unbroadcast(gy!, n.inputs[0].shape), unbroadcast(gy!, n.inputs[1].shape)]);
binary('Sub', (n, [gy]) => [unbroadcast(gy!, n.inputs[0].shape), unbroadcast(neg(gy!), n.inputs[1].shape)]);
binary('Mul', (n, [gy]) => {
  const [a, b] = n.inputs;
  return [unbroadcast(mul(gy!, b), a.shape), unbroadcast(mul(gy!, a), b.shape)];
});
binary('Div', (n, [gy]) => {
  const [a, b] = n.inputs;
  const ga = div(gy!, b);
  // d(a/b)/db = -a/b^2 = -y/b
  const gb = neg(mul(ga, n.outputs[0]));
  return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)];
});
binary('Pow', (n, [gy]) => {
  const [a, b] = n.inputs;
  const y = n.outputs[0];
  // d/da = b * a^(b-1); d/db = y * log(a) (only meaningful for a > 0)
  const ga = mul(gy!, mul(b, pow(a, sub(b, 1))));
  const gb = mul(gy!, mul(y, log(a)));
  return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)];
});
function minmaxVjp(pickA: (a: Tensor, b: Tensor) => Tensor) {
  return (n: Node, [gy]: (Tensor | null)[]) => {
    const [a, b] = n.inputs;
    const m = pickA(a, b); // where a wins (ties go to a, as PyTorch's maximum splits... see note)
    const z = lift(0, gy!);
    return [unbroadcast(where(m, gy!, z), a.shape), unbroadcast(where(m, z, gy!), b.shape)];
  };
}
binary('Max', minmaxVjp((a, b) => greaterOrEqual(a, b)));
binary('Min', minmaxVjp((a, b) => lessOrEqual(a, b)));
for (const name of ['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual']) binary(name, undefined, 'bool');
for (const name of ['And', 'Or']) binary(name, undefined, 'bool');

defineOp({
  name: 'Where',
  infer: ([c, a, b]) => {
    if (c.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${c.dtype}`);
    if (a.dtype !== b.dtype) throw new Error(`where: dtype mismatch ${a.dtype} vs ${b.dtype}`);
    return [{ shape: broadcastShapes(c.shape, a.shape, b.shape), dtype: a.dtype }];
  },
  emit: (ctx, ins, outs) => ctx.push({ opType: 'Where', inputs: ins, outputs: outs }),
  vjp: (n, [gy]) => {
    const [c, a, b] = n.inputs;
    const z = lift(0, gy!);
    return [null, unbroadcast(where(c, gy!, z), a.shape), unbroadcast(where(c, z, gy!), b.shape)];
  },
});

// ---------- unary ----------

function unary(name: string, vjp?: (n: Node, gy: Tensor) => Tensor, extra?: Partial<OpDef>): OpDef {
  return defineOp({
    name,
    infer: ([x]) => [{ shape: x.shape, dtype: name === 'Not' ? 'bool' : x.dtype }],
    emit: (ctx, ins, outs) => ctx.push({ opType: name, inputs: ins, outputs: outs }),
    vjp: vjp ? (n, [gy]) => [vjp(n, gy!)] : undefined,
    ...extra,
  });
}
unary('Neg', (_n, gy) => neg(gy));
unary('Exp', (n, gy) => mul(gy, n.outputs[0]));
unary('Log', (n, gy) => div(gy, n.inputs[0]));
unary('Sqrt', (n, gy) => div(mul(gy, 0.5), n.outputs[0]));
unary('Reciprocal', (n, gy) => neg(mul(gy, mul(n.outputs[0], n.outputs[0]))));
unary('Abs', (n, gy) => mul(gy, sign(n.inputs[0])));
unary('Sigmoid', (n, gy) => { const y = n.outputs[0]; return mul(gy, mul(y, sub(1, y))); });
unary('Tanh', (n, gy) => { const y = n.outputs[0]; return mul(gy, sub(1, mul(y, y))); });
unary('Relu', (n, gy) => where(greater(n.inputs[0], 0), gy, lift(0, gy)));
unary('Erf', (n, gy) => {
  const x = n.inputs[0];
  return mul(gy, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)));
});
unary('Sin', (n, gy) => mul(gy, cos(n.inputs[0])));
unary('Cos', (n, gy) => neg(mul(gy, sin(n.inputs[0]))));
unary('Sign', (_n, gy) => mul(gy, 0));
unary('Floor', (_n, gy) => mul(gy, 0));
unary('Identity', (_n, gy) => gy);
unary('Not');

// StopGradient: the value passes through (ONNX Identity), the cotangent does not — PyTorch's
// `.detach()`. For parser masks, targets computed from frozen paths and anything else a loss
// must treat as a constant although the graph computes it from differentiated inputs.
defineOp({
  name: 'StopGradient',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  emit: (ctx, ins, outs) => ctx.push({ opType: 'Identity', inputs: ins, outputs: outs }),
  vjp: () => [null],
});

defineOp({
  name: 'LeakyRelu',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  emit: (ctx, ins, outs, node) => ctx.push({
    opType: 'LeakyRelu', inputs: ins, outputs: outs, attrs: [{ name: 'alpha', f: node.attrs.alpha as number }],
  }),
  vjp: (n, [gy]) => [where(greater(n.inputs[0], 0), gy!, mul(gy!, n.attrs.alpha as number))],
});

defineOp({
  name: 'Cast',
  infer: ([x], a) => [{ shape: x.shape, dtype: a.to as DType }],
  emit: (ctx, ins, outs, node) => ctx.push({
    opType: 'Cast', inputs: ins, outputs: outs, attrs: [{ name: 'to', i: ONNX_DTYPE[node.attrs.to as DType] }],
  }),
  vjp: (n, [gy]) => {
    const from = n.inputs[0].dtype;
    return [from.startsWith('float') ? cast(gy!, from) : null];
  },
});

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11,
};

// ---------- public builders ----------

const bin = (op: string) => (a: TensorLike, b: TensorLike): Tensor => {
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`${op}: needs at least one Tensor`);
  const A = typeof a === 'number' ? lift(a, b as Tensor) : a;
  const B = typeof b === 'number' ? lift(b, A) : b;
  return apply(op, [A, B])[0];
};
export const add = bin('Add');
export const sub = bin('Sub');
export const mul = bin('Mul');
export const div = bin('Div');
export const pow = bin('Pow');
export const maximum = bin('Max');
export const minimum = bin('Min');
export const equal = bin('Equal');
export const less = bin('Less');
export const greater = bin('Greater');
export const lessOrEqual = bin('LessOrEqual');
export const greaterOrEqual = bin('GreaterOrEqual');
export const logicalAnd = bin('And');
export const logicalOr = bin('Or');

const un = (op: string) => (x: Tensor): Tensor => apply(op, [x])[0];
export const neg = un('Neg');
export const exp = un('Exp');
export const log = un('Log');
export const sqrt = un('Sqrt');
export const reciprocal = un('Reciprocal');
export const abs = un('Abs');
export const sigmoid = un('Sigmoid');
export const tanh = un('Tanh');
export const relu = un('Relu');
export const erf = un('Erf');
export const sin = un('Sin');
export const cos = un('Cos');
export const sign = un('Sign');
export const floor = un('Floor');
export const identity = un('Identity');
export const logicalNot = un('Not');

/** x with no gradient path through it (torch's `.detach()`). */
export function detach(x: Tensor): Tensor { return apply('StopGradient', [x])[0]; }
export function leakyRelu(x: Tensor, alpha = 0.01): Tensor { return apply('LeakyRelu', [x], { alpha })[0]; }
export function cast(x: Tensor, to: DType): Tensor { return x.dtype === to ? x : apply('Cast', [x], { to })[0]; }
export function where(c: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const A = typeof a === 'number' ? lift(a, b as Tensor) : a;
  const B = typeof b === 'number' ? lift(b, A) : b;
  return apply('Where', [c, A, B])[0];
}
export function square(x: Tensor): Tensor { return mul(x, x); }
