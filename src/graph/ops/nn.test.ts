// Finite-difference checks of Softmax's VJP rule and of the composites in src/graph/ops/nn.ts
// (whose gradients come from the primitives' rules, so these test the compositions).
//
// How eps is chosen: see the header of src/graph/testing.ts (five-point stencil, h = 1e-2 *
// max(1, rms(inputs)), float64 loss). Inputs of the piecewise composites (prelu,
// leakyReluWhere) are kept >= 0.15 from 0, more than the 2h|v| < 0.1 an evaluation moves them;
// normalisations get rows whose norm/variance is O(1), far from their eps guards.
import { mul } from './elementwise.ts';
import {
  batchNorm2d, cosineSimilarity, divNorm, gelu, geluTanh, l2Normalize, layerNorm, leakyReluWhere, linear, prelu,
  quickGelu, softmax,
} from './nn.ts';
import { awayFrom, fdTest, randn, rng } from '../testing.ts';

const normal = (n: number, seed: number) => randn(n, rng(seed));

fdTest(['Softmax'], 'softmax on the last axis', [[3, 5]], ([x]) => softmax(x, -1));
fdTest(['Softmax'], 'softmax on axis 1 of a rank-4 tensor', [[2, 4, 3, 2]], ([x]) => softmax(x, 1));
fdTest(['Softmax'], 'softmax of scaled logits (peaked rows)', [[4, 6]], ([x]) => softmax(mul(x, 3), -1));

fdTest(['MatMul', 'Transpose', 'Add'], 'linear x @ W^T + b (all three differentiable)', [[2, 3, 4], [5, 4], [5]],
  ([x, w, b]) => linear(x, w, b));
fdTest(['ReduceMean', 'Sqrt', 'Div'], 'layerNorm over the last axis with weight and bias', [[3, 8], [8], [8]],
  ([x, w, b]) => layerNorm(x, w, b, 1e-5, 1));
fdTest(['ReduceMean'], 'layerNorm over the last two axes, no affine', [[2, 3, 4]], ([x]) => layerNorm(x, null, null, 1e-5, 2));
fdTest(['Mul', 'Add'], 'batchNorm2d (inference, folded statistics)', [[2, 3, 4, 4]], ([x]) => batchNorm2d(x, {
  weight: Float32Array.from([1.5, -0.7, 0.9]), bias: Float32Array.from([0.1, 0.2, -0.3]),
  mean: Float32Array.from([0.3, -0.2, 0.05]), var: Float32Array.from([0.8, 1.7, 0.4]),
}));
fdTest(['Max', 'Min'], 'prelu with per-channel slopes (x and a differentiable)', [[2, 3, 4, 4], [3]], ([x, a]) => prelu(x, a),
  { inputs: [awayFrom(normal(96, 41), [0], 0.15), Float32Array.from([0.25, -0.1, 0.6])] });
fdTest(['Where'], 'leakyReluWhere(0.2)', [[3, 5]], ([x]) => leakyReluWhere(x, 0.2), { inputs: [awayFrom(normal(15, 42), [0], 0.15)] });
fdTest(['Sqrt', 'Max', 'Div'], 'l2Normalize along the last axis', [[3, 6]], ([x]) => l2Normalize(x, -1));
fdTest(['Sqrt', 'Div'], 'l2Normalize along axis 1 of [2,4,3]', [[2, 4, 3]], ([x]) => l2Normalize(x, 1));
fdTest(['Sqrt', 'Div'], 'divNorm (CLIP x / ||x||)', [[2, 8]], ([x]) => divNorm(x, -1));
fdTest(['ReduceSum', 'Sqrt', 'Max'], 'cosineSimilarity of two batches', [[3, 8], [3, 8]], ([a, b]) => cosineSimilarity(a, b, -1));
fdTest(['ReduceSum'], 'cosineSimilarity broadcasting one target', [[3, 8], [1, 8]], ([a, b]) => cosineSimilarity(a, b, -1));
fdTest(['Sigmoid'], 'quickGelu', [[4, 6]], ([x]) => quickGelu(mul(x, 2)));
fdTest(['Erf'], 'gelu (erf form)', [[4, 6]], ([x]) => gelu(mul(x, 2)));
fdTest(['Tanh'], 'gelu (tanh approximation)', [[4, 6]], ([x]) => geluTanh(mul(x, 2)));
