// Finite-difference check of VJP rules, shared by the op tests.
//
// We compare a directional derivative: v . grad L(x) (from our VJP graph) against a finite
// difference of L(x + t v), where L = sum(f(x) * R) with fixed random R, for a few random
// unit-variance directions v.
//
// Stencil and eps. The plain central difference (L(x+hv) - L(x-hv)) / 2h has truncation error
// h^2 |L'''| / 6; along a random direction the derivative v . grad L is a sum of terms of random
// sign that partly cancel while the v^3 terms of L''' do not, so with h = 1e-2 we measured relative
// errors of 1e-3..7e-3 on plain exp/sin/sigmoid — the check itself, not the rules, was failing.
// We therefore use the fourth-order five-point stencil
//     (8 (L(x+hv) - L(x-hv)) - (L(x+2hv) - L(x-2hv))) / 12h,
// whose truncation error h^4 |L^(5)| / 30 is ~1e-9 at h = 1e-2, leaving round-off: each L carries
// ~u |L| (u = 6e-8) from float32 outputs, amplified by 18/12h, i.e. ~1e-5 |L|. L itself is summed
// in float64 (f's output is cast up before the product with R) so that the reduction over many
// elements adds no float32 accumulation error on top. h = 1e-2 * max(1, rms(x)) balances the two
// for O(1) inputs; results land at 1e-7..1e-4, well inside the 1e-3 bound.
//
// Piecewise-linear ops are fed inputs kept away from their kinks (see `awayFrom`) so the
// difference never straddles one: the farthest evaluation moves an input by 2h |v| <~ 0.1 for a
// few hundred normal draws of v, so tests keep inputs >= 0.15 from kinks (and distinct values of a
// max/argmax-type window >= 0.3 apart).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Tensor } from './graph.ts';
import { vjp } from './autodiff.ts';
import { evaluate, compile } from '../runtime/session.ts';
import { cast, mul, reduceSum } from './index.ts';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32 -> [0,1)
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}
export function randn(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12); const v = r();
    a[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return a;
}
/** push values at least `d` away from each kink */
export function awayFrom(a: Float32Array, kinks: number[], d: number): Float32Array {
  for (let i = 0; i < a.length; i++) for (const k of kinks) if (Math.abs(a[i] - k) < d) a[i] = k + (a[i] >= k ? d : -d);
  return a;
}

export interface FdResult { relErr: number; analytic: number[]; numeric: number[] }

export async function finiteDifferenceCheck(
  shapes: number[][],
  build: (xs: Tensor[]) => Tensor,
  opts: { seed?: number; inputs?: Float32Array[]; directions?: number; h?: number } = {},
): Promise<FdResult> {
  const r = rng(opts.seed ?? 1234);
  const g = new Graph('fd');
  const xs = shapes.map((s, i) => g.input(`x${i}`, s));
  const y = build(xs);
  const R = g.constant(Float64Array.from(randn(y.size, r)), y.shape);
  const L = reduceSum(mul(cast(y, 'float64'), R));
  const one = g.constant(Float64Array.of(1), L.shape);
  const grads = vjp([L], [one], xs);
  const vals = opts.inputs ?? xs.map((x) => randn(x.size, r));
  const outs: Record<string, Tensor> = { L };
  grads.forEach((gt, i) => { outs[`g${i}`] = gt; });
  const c = await compile(outs);
  const feeds = (arr: Float32Array[]) => Object.fromEntries(arr.map((a, i) => [`x${i}`, a]));
  const base = await c.run(feeds(vals));
  const analytic: number[] = []; const numeric: number[] = [];
  const nd = opts.directions ?? 3;
  const rms = Math.sqrt(vals.reduce((s, a) => s + a.reduce((p, q) => p + q * q, 0), 0) / vals.reduce((s, a) => s + a.length, 0));
  const h = opts.h ?? 1e-2 * Math.max(1, rms);
  let relErr = 0;
  for (let d = 0; d < nd; d++) {
    const v = vals.map((a) => randn(a.length, r));
    let dot = 0;
    v.forEach((vi, i) => { const gi = base[`g${i}`].data as Float32Array; for (let k = 0; k < vi.length; k++) dot += vi[k] * gi[k]; });
    const at = async (t: number) => (await c.run(feeds(vals.map((a, i) => a.map((x, k) => x + t * v[i][k]))))).L.data[0] as number;
    const num = (8 * (await at(h) - await at(-h)) - (await at(2 * h) - await at(-2 * h))) / (12 * h);
    analytic.push(dot); numeric.push(num);
    relErr = Math.max(relErr, Math.abs(dot - num) / Math.max(Math.abs(num), Math.abs(dot), 1e-3));
  }
  return { relErr, analytic, numeric };
}
void evaluate;

/** `finiteDifferenceCheck` that also reports which ops the forward graph `build` recorded. */
export async function finiteDifferenceCheckOps(
  shapes: number[][],
  build: (xs: Tensor[]) => Tensor,
  opts: Parameters<typeof finiteDifferenceCheck>[2] = {},
): Promise<FdResult & { ops: Set<string> }> {
  let ops = new Set<string>();
  const r = await finiteDifferenceCheck(shapes, (xs) => {
    const y = build(xs);
    // taken before vjp() appends the gradient nodes: these are the forward's ops
    ops = new Set(y.graph.nodes.map((n) => n.op.name));
    return y;
  }, opts);
  return { ...r, ops };
}

/** The bound every op's VJP must meet against central differences (float32, see header). */
export const FD_TOLERANCE = 1e-3;

/**
 * Registers a node:test case that finite-difference-checks `build` and asserts that its forward
 * graph really uses each op named in `ops` (so the label cannot drift from what is tested).
 * src/graph/ops/coverage.test.ts reads the `fdTest([...ops]` labels of the op tests to check that
 * every op with a VJP rule has at least one such case; keep the op list a literal array.
 */
export function fdTest(
  ops: string[],
  title: string,
  shapes: number[][],
  build: (xs: Tensor[]) => Tensor,
  opts: Parameters<typeof finiteDifferenceCheck>[2] = {},
): void {
  test(`FD ${title}`, async (t) => {
    const r = await finiteDifferenceCheckOps(shapes, build, opts);
    for (const op of ops) assert.ok(r.ops.has(op), `${title}: the forward graph has no '${op}' node (ops: ${[...r.ops].join(', ')})`);
    t.diagnostic(`relErr ${r.relErr.toExponential(2)} [${ops.join(' ')}] ${title}`);
    assert.ok(r.relErr <= FD_TOLERANCE,
      `${title}: relative error ${r.relErr.toExponential(2)} > ${FD_TOLERANCE} (analytic ${r.analytic.map((v) => v.toPrecision(6))}, numeric ${r.numeric.map((v) => v.toPrecision(6))})`);
  });
}
