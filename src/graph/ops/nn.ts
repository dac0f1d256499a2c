// Neural-network building blocks composed from primitives (so their VJPs come for free),
// plus Softmax, which has its own rule.
import { apply, defineOp, normAxis, type Tensor } from '../graph.ts';
import { add, div, mul, sigmoid, sqrt, sub, maximum, minimum, where, greater, erf, tanh } from './elementwise.ts';
import { matmul } from './conv.ts';
import { mT, reduceMean, reduceSum, reshape } from './shape.ts';

defineOp({
  name: 'Softmax',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  emit: (ctx, ins, outs, n) => ctx.push({ opType: 'Softmax', inputs: ins, outputs: outs, attrs: [{ name: 'axis', i: n.attrs.axis as number }] }),
  vjp: (n, [gy]) => {
    const y = n.outputs[0];
    const ax = n.attrs.axis as number;
    return [mul(y, sub(gy!, reduceSum(mul(gy!, y), ax, true)))];
  },
});
export function softmax(x: Tensor, axis = -1): Tensor {
  return apply('Softmax', [x], { axis: normAxis(axis, x.rank) })[0];
}

/** x @ W^T + b with a PyTorch-layout weight [out, in] */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const y = matmul(x, mT(w));
  return b ? add(y, b) : y;
}

/** LayerNorm over the last `normDims` axes (biased variance, like PyTorch) */
export function layerNorm(x: Tensor, w: Tensor | null, b: Tensor | null, eps = 1e-5, normDims = 1): Tensor {
  const axes = [...Array(normDims).keys()].map((i) => x.rank - normDims + i);
  const mu = reduceMean(x, axes, true);
  const xc = sub(x, mu);
  const v = reduceMean(mul(xc, xc), axes, true);
  let y = div(xc, sqrt(add(v, eps)));
  if (w) y = mul(y, w);
  if (b) y = add(y, b);
  return y;
}

/** BatchNorm2d in inference mode with running statistics folded into a scale and shift */
export function batchNorm2d(x: Tensor, p: { weight?: Float32Array; bias?: Float32Array; mean: Float32Array; var: Float32Array }, eps = 1e-5): Tensor {
  const C = p.mean.length;
  const scale = new Float32Array(C); const shift = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const s = (p.weight ? p.weight[c] : 1) / Math.sqrt(p.var[c] + eps);
    scale[c] = s;
    shift[c] = (p.bias ? p.bias[c] : 0) - p.mean[c] * s;
  }
  const g = x.graph;
  const shape = x.rank === 4 ? [1, C, 1, 1] : [1, C];
  return add(mul(x, g.constant(scale, shape)), g.constant(shift, shape));
}

export function quickGelu(x: Tensor): Tensor { return mul(x, sigmoid(mul(x, 1.702))); }
export function gelu(x: Tensor): Tensor { return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1)); }
export function geluTanh(x: Tensor): Tensor {
  return mul(mul(x, 0.5), add(tanh(mul(add(x, mul(mul(mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
}
/** PReLU with per-channel slopes on axis 1 */
export function prelu(x: Tensor, a: Tensor): Tensor {
  const shape = x.rank === 4 ? [1, a.size, 1, 1] : [1, a.size];
  return add(maximum(x, 0), mul(reshape(a, shape), minimum(x, 0)));
}
export function leakyReluWhere(x: Tensor, slope: number): Tensor { return where(greater(x, 0), x, mul(x, slope)); }

/** x / max(||x||, eps) along an axis, as F.normalize */
export function l2Normalize(x: Tensor, axis = -1, eps = 1e-12): Tensor {
  const n = sqrt(reduceSum(mul(x, x), axis, true));
  return div(x, maximum(n, eps));
}
/** x / ||x|| (no eps), as CLIP's `x / x.norm(dim=-1, keepdim=True)` */
export function divNorm(x: Tensor, axis = -1): Tensor {
  return div(x, sqrt(reduceSum(mul(x, x), axis, true)));
}
/** F.cosine_similarity (eps 1e-8 on each norm, as PyTorch >= 1.12) */
export function cosineSimilarity(a: Tensor, b: Tensor, axis = -1, eps = 1e-8): Tensor {
  const na = maximum(sqrt(reduceSum(mul(a, a), axis, true)), eps);
  const nb = maximum(sqrt(reduceSum(mul(b, b), axis, true)), eps);
  return reduceSum(mul(div(a, na), div(b, nb)), axis);
}
