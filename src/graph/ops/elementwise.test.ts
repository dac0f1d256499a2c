// Finite-difference checks of the elementwise VJP rules (src/graph/ops/elementwise.ts).
//
// How eps is chosen: see the header of src/graph/testing.ts — a fourth-order five-point stencil
// with h = 1e-2 * max(1, rms(x)), along random unit-variance directions, the loss summed in
// float64; the check's own error is ~1e-5 of the derivative for these O(1) inputs. The farthest
// evaluation moves an input by 2h|v| < 0.1, so inputs of piecewise ops are kept >= 0.15 from
// their kinks, and inputs of log/sqrt/reciprocal/div/pow >= 0.5 from 0, where the higher
// derivatives (and so the stencil's truncation error) blow up.
import { abs, add, cast, cos, div, erf, exp, floor, identity, leakyRelu, log, maximum, minimum, mul, neg, pow, reciprocal, relu, sigmoid, sign, sin, sqrt, sub, tanh, where } from './elementwise.ts';
import { awayFrom, fdTest, randn, rng } from '../testing.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../graph.ts';
import { grad } from '../autodiff.ts';
import { evaluate } from '../../runtime/session.ts';
import { detach } from './elementwise.ts';
import { reduceSum } from './shape.ts';

const KINK_GAP = 0.15;

function normal(n: number, seed: number): Float32Array { return randn(n, rng(seed)); }
/** values in [lo, lo + ~3]: away from the singularity of log/sqrt/1/x at 0 */
function positive(n: number, seed: number, lo = 0.5): Float32Array { return normal(n, seed).map((v) => lo + Math.abs(v)); }
/** |v| >= 0.5 on both sides of 0 */
function signedAwayFromZero(n: number, seed: number): Float32Array { return normal(n, seed).map((v) => Math.sign(v || 1) * (0.5 + Math.abs(v))); }

// ---------- binary (with numpy broadcasting on both sides) ----------
fdTest(['Add'], 'add broadcast [2,3,4] + [3,1]', [[2, 3, 4], [3, 1]], ([a, b]) => add(a, b));
fdTest(['Add'], 'add broadcast [4] + [2,3,4] (rank-lifted)', [[4], [2, 3, 4]], ([a, b]) => add(a, b));
fdTest(['Sub'], 'sub broadcast [2,3,4] - [1,4]', [[2, 3, 4], [1, 4]], ([a, b]) => sub(a, b));
fdTest(['Mul'], 'mul broadcast [2,1,4] * [3,1]', [[2, 1, 4], [3, 1]], ([a, b]) => mul(a, b));
fdTest(['Mul'], 'mul by a scalar constant', [[3, 5]], ([a]) => mul(mul(a, a), 0.5));
fdTest(['Div'], 'div broadcast [2,3,4] / [3,1], denominator away from 0', [[2, 3, 4], [3, 1]], ([a, b]) => div(a, b),
  { inputs: [normal(24, 1), signedAwayFromZero(3, 2)] });
fdTest(['Pow'], 'pow, both operands differentiable (base > 0)', [[3, 4], [4]], ([a, b]) => pow(a, b),
  { inputs: [positive(12, 3), normal(4, 4)] });
fdTest(['Pow'], 'pow by a constant exponent of a signed base', [[3, 4]], ([a]) => pow(a, 3));

/** a [2,3,4] and b [4] whose pairwise differences stay >= 0.3 from 0 (the kink of max/min) */
function separatedPair(): Float32Array[] {
  const b = normal(4, 5);
  const a = awayFrom(normal(24, 6), [0], 0.3).map((d, i) => d + b[i % 4]);
  return [a, b];
}
fdTest(['Max'], 'maximum broadcast [2,3,4] vs [4]', [[2, 3, 4], [4]], ([a, b]) => maximum(a, b), { inputs: separatedPair() });
fdTest(['Min'], 'minimum broadcast [2,3,4] vs [4]', [[2, 3, 4], [4]], ([a, b]) => minimum(a, b), { inputs: separatedPair() });
fdTest(['Max'], 'maximum with a scalar (relu-like), away from 0', [[3, 5]], ([a]) => maximum(a, 0),
  { inputs: [awayFrom(normal(15, 7), [0], KINK_GAP)] });

fdTest(['Where'], 'where with a broadcast constant condition', [[2, 3, 4], [1, 4]], ([a, b]) => {
  const cond = a.graph.constant(Uint8Array.from([1, 0, 0, 1, 1, 0]), [2, 3, 1], 'bool');
  return where(cond, a, b);
});

// ---------- unary ----------
fdTest(['Neg'], 'neg', [[3, 4]], ([x]) => neg(mul(x, x)));
fdTest(['Exp'], 'exp', [[3, 4]], ([x]) => exp(x));
fdTest(['Log'], 'log (x >= 0.5)', [[3, 4]], ([x]) => log(x), { inputs: [positive(12, 8)] });
fdTest(['Sqrt'], 'sqrt (x >= 0.5)', [[3, 4]], ([x]) => sqrt(x), { inputs: [positive(12, 9)] });
fdTest(['Reciprocal'], 'reciprocal (|x| >= 0.5)', [[3, 4]], ([x]) => reciprocal(x), { inputs: [signedAwayFromZero(12, 10)] });
fdTest(['Abs'], 'abs (away from 0)', [[3, 4]], ([x]) => abs(x), { inputs: [awayFrom(normal(12, 11), [0], KINK_GAP)] });
fdTest(['Sigmoid'], 'sigmoid', [[3, 4]], ([x]) => sigmoid(mul(x, 2)));
fdTest(['Tanh'], 'tanh', [[3, 4]], ([x]) => tanh(mul(x, 2)));
fdTest(['Relu'], 'relu (away from 0)', [[3, 4]], ([x]) => relu(x), { inputs: [awayFrom(normal(12, 12), [0], KINK_GAP)] });
fdTest(['Erf'], 'erf', [[3, 4]], ([x]) => erf(x));
fdTest(['Sin'], 'sin', [[3, 4]], ([x]) => sin(mul(x, 2)));
fdTest(['Cos'], 'cos', [[3, 4]], ([x]) => cos(mul(x, 2)));
fdTest(['LeakyRelu'], 'leakyRelu(0.2) (away from 0)', [[3, 4]], ([x]) => leakyRelu(x, 0.2), { inputs: [awayFrom(normal(12, 13), [0], KINK_GAP)] });
// zero-derivative rules: the difference is exactly 0 away from the jumps, and so must the VJP be
fdTest(['Sign'], 'sign (away from 0): zero gradient', [[3, 4]], ([x]) => add(sign(x), x), { inputs: [awayFrom(normal(12, 14), [0], KINK_GAP)] });
fdTest(['Floor'], 'floor (away from integers): zero gradient', [[3, 4]], ([x]) => add(floor(x), x),
  { inputs: [awayFrom(normal(12, 15), [-4, -3, -2, -1, 0, 1, 2, 3, 4], KINK_GAP)] });
fdTest(['Identity'], 'identity', [[3, 4]], ([x]) => identity(mul(x, x)));
fdTest(['Cast'], 'cast float32 -> float64 -> float32 around a float64 exp', [[3, 4]], ([x]) => cast(exp(cast(x, 'float64')), 'float32'));

// ---------- detach (StopGradient): identity forward, no cotangent ----------

test('detach: the value passes through, the gradient does not', async () => {
  const g = new Graph('detach');
  const x = g.input('x', [3]);
  // L = sum(x * detach(x) + x): dL/dx = detach(x) + 1 (x * x would give 2x + 1)
  const y = detach(x);
  const L = reduceSum(add(mul(x, y), x));
  const [gx] = grad(L, [x]);
  const r = await evaluate({ y, gx }, { x: Float32Array.from([1, -2, 0.5]) });
  assert.deepEqual([...(r.y.data as Float32Array)], [1, -2, 0.5]);
  assert.deepEqual([...(r.gx.data as Float32Array)], [2, -1, 1.5]);
});
