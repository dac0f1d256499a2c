// Finite-difference checks of the shape-op and reduction VJP rules (src/graph/ops/shape.ts).
//
// How eps is chosen: see the header of src/graph/testing.ts (five-point stencil, h = 1e-2 *
// max(1, rms(x)), float64 loss). Most ops here are linear, so the difference is exact up to
// round-off and the check tests that each VJP is the adjoint of its forward. ReduceMax is
// piecewise linear: its inputs are distinct values 0.3 apart, fed with h = 1e-2 so that two of
// them approach by at most 2 * 2h|v| < 0.2 and the argmax never changes.
import { mul } from './elementwise.ts';
import {
  concat, expand, flatten, gather, gatherND, mT, pad, padTorch, reduceMax, reduceMean, reduceSum, reshape,
  scatterNDAdd, select, slice, split, squeeze, stack, transpose, unsqueeze,
} from './shape.ts';
import { fdTest, rng } from '../testing.ts';
import type { Tensor } from '../graph.ts';

/**
 * Step for spaced inputs: the default h grows with rms(x), which is large for a spread of distinct
 * values; with h fixed at 1e-2 two values 0.3 apart approach by at most 2 * 2h|v| ~ 0.18.
 */
const SPACED_H = 1e-2;
/** n distinct values (k - n/2) * gap in a seeded random order */
function spaced(n: number, seed: number, gap = 0.3): Float32Array {
  const r = rng(seed);
  const a = Float32Array.from({ length: n }, (_, k) => (k - n / 2) * gap);
  for (let i = n - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}
function i64(x: Tensor, values: number[], shape: number[]): Tensor {
  return x.graph.constant(BigInt64Array.from(values.map(BigInt)), shape, 'int64');
}

// ---------- Reshape / Transpose ----------
fdTest(['Reshape'], 'reshape [2,3,4] -> [4,-1]', [[2, 3, 4]], ([x]) => mul(reshape(x, [4, -1]), reshape(x, [4, -1])));
fdTest(['Reshape'], 'flatten / unsqueeze / squeeze', [[2, 3, 4]], ([x]) => squeeze(unsqueeze(flatten(x), 1), 1));
fdTest(['Transpose'], 'transpose perm [2,0,1]', [[2, 3, 4]], ([x]) => transpose(x, [2, 0, 1]));
fdTest(['Transpose'], 'mT of a rank-4 tensor', [[2, 1, 3, 4]], ([x]) => mT(x));

// ---------- Concat ----------
fdTest(['Concat'], 'concat of three tensors of different widths on axis 1', [[2, 1, 3], [2, 3, 3], [2, 2, 3]], (xs) => concat(xs, 1));
fdTest(['Concat'], 'stack on a new last axis', [[2, 3], [2, 3]], (xs) => stack(xs, -1));

// ---------- Slice ----------
fdTest(['Slice'], 'slice with negative starts/ends on two axes', [[4, 3, 6]], ([x]) => slice(x, [1, -3], [-1, 5], [0, 2]));
fdTest(['Slice'], 'slice steps 3 and 2 whose last stride overhangs the input (after < 0)', [[9, 7]],
  ([x]) => slice(x, [1, 0], [9, 7], [0, 1], [3, 2]));
fdTest(['Slice'], 'slice steps whose last stride ends exactly at the input end', [[10, 8]],
  ([x]) => slice(x, [1, 0], [10, 8], [0, 1], [3, 2]));
fdTest(['Slice'], 'slice step 2 that stops early (after > 0), middle axis', [[2, 10, 3]],
  ([x]) => slice(x, [0], [5], [1], [2]));
fdTest(['Slice'], 'slice step 4 on the last axis with an offset', [[3, 11]], ([x]) => slice(x, [2], [11], [1], [4]));
fdTest(['Slice'], 'select and split', [[3, 5]], ([x]) => concat([concat(split(x, [2, 3], 1).map((t, i) => mul(t, i + 2)), 1), unsqueeze(select(x, 0, -1), 0)], 0));

// ---------- Pad ----------
fdTest(['Pad'], 'pad with a nonzero value, uneven pads on two axes', [[2, 3, 4]], ([x]) => pad(x, [0, 1, 2, 0, 3, 1], 0.5));
fdTest(['Pad', 'Slice'], 'pad with negative entries (crop) mixed with positive ones', [[2, 5, 6]], ([x]) => pad(x, [0, -1, 2, 1, 2, -3]));
fdTest(['Pad'], 'padTorch (left, right, top, bottom)', [[1, 2, 3, 4]], ([x]) => padTorch(x, [1, 2, 0, 3]));

// ---------- Expand ----------
fdTest(['Expand'], 'expand [3,1] -> [2,3,4]', [[3, 1]], ([x]) => expand(x, [2, 3, 4]));
fdTest(['Expand'], 'expand [1,4] -> [3,4]', [[1, 4]], ([x]) => mul(expand(x, [3, 4]), expand(x, [3, 4])));

// ---------- Gather / GatherND / ScatterNDAdd ----------
fdTest(['Gather'], 'gather axis 0 with repeated and negative indices', [[5, 3]],
  ([x]) => gather(x, i64(x, [4, 0, 4, -2, 1], [5]), 0));
fdTest(['Gather'], 'gather axis 1 with 2-D indices', [[2, 5, 3]], ([x]) => gather(x, i64(x, [0, 4, 2, 2], [2, 2]), 1));
fdTest(['Gather'], 'gather on the last axis', [[3, 4]], ([x]) => gather(x, i64(x, [3, 1, 1], [3]), -1));
fdTest(['ScatterNDAdd'], 'scatterNDAdd: gradients of data and of updates (duplicate indices)', [[4, 3], [3, 3]],
  ([data, upd]) => scatterNDAdd(data, i64(data, [1, 3, 1], [3, 1]), upd));
fdTest(['ScatterNDAdd'], 'scatterNDAdd with full-depth indices', [[3, 4], [3]],
  ([data, upd]) => scatterNDAdd(data, i64(data, [0, 1, 2, 3, 0, 1], [3, 2]), upd));
fdTest(['GatherND'], 'gatherND with depth-2 indices', [[3, 4, 2]], ([x]) => gatherND(x, i64(x, [0, 1, 2, 3, 0, 1], [3, 2])));

// ---------- reductions ----------
fdTest(['ReduceSum'], 'reduceSum axes [0,2], keepdims false', [[2, 3, 4]], ([x]) => reduceSum(x, [0, 2]));
fdTest(['ReduceSum'], 'reduceSum axis -1, keepdims true, of x^2', [[2, 3, 4]], ([x]) => reduceSum(mul(x, x), -1, true));
fdTest(['ReduceMean'], 'reduceMean axes [1,2] keepdims true', [[2, 3, 4]], ([x]) => reduceMean(x, [1, 2], true));
fdTest(['ReduceMean'], 'reduceMean over all axes of x^2', [[2, 3, 4]], ([x]) => reduceMean(mul(x, x)));
fdTest(['ReduceMax'], 'reduceMax axis 1 (distinct values)', [[2, 5, 3]], ([x]) => reduceMax(x, 1), { inputs: [spaced(30, 21)], h: SPACED_H });
fdTest(['ReduceMax'], 'reduceMax axes [0,2] keepdims', [[2, 3, 4]], ([x]) => reduceMax(x, [0, 2], true), { inputs: [spaced(24, 22)], h: SPACED_H });
