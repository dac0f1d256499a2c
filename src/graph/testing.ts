// Finite-difference check of VJP rules, shared by the op tests.
//
// We compare a directional derivative: v . grad L(x) (from our VJP graph) against the central
// difference (L(x + h v) - L(x - h v)) / 2h, where L = sum(f(x) * R) with fixed random R, for a few
// random unit-variance directions v. Why this eps: in float32 the central difference has
// truncation error ~h^2 |L'''| and round-off ~u |L| / h (u = 6e-8); with |L| of order 1-100 and
// O(1) third derivatives, h = 1e-2 * max(1, rms(x)) keeps both near 1e-5..1e-4 of the derivative,
// well inside the 1e-3 bound. Piecewise-linear ops are fed inputs kept away from their kinks
// (see `awayFrom`) so the difference never straddles one.
import { Graph, type Tensor } from './graph.ts';
import { vjp } from './autodiff.ts';
import { evaluate, compile } from '../runtime/session.ts';
import { mul, reduceSum } from './index.ts';

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
  const R = g.constant(randn(y.size, r), y.shape);
  const L = reduceSum(mul(y, R));
  const one = g.constant(Float32Array.of(1), L.shape);
  const grads = vjp([L], [one], xs);
  const vals = opts.inputs ?? xs.map((x) => randn(x.size, r));
  const outs: Record<string, Tensor> = { L };
  grads.forEach((gt, i) => { outs[`g${i}`] = gt; });
  const c = await compile(outs);
  const feeds = (arr: Float32Array[]) => Object.fromEntries(arr.map((a, i) => [`x${i}`, a]));
  const base = await c.run(feeds(vals));
  const analytic: number[] = []; const numeric: number[] = [];
  const nd = opts.directions ?? 3;
  let relErr = 0;
  for (let d = 0; d < nd; d++) {
    const v = vals.map((a) => randn(a.length, r));
    let dot = 0;
    v.forEach((vi, i) => { const gi = base[`g${i}`].data as Float32Array; for (let k = 0; k < vi.length; k++) dot += vi[k] * gi[k]; });
    const rms = Math.sqrt(vals.reduce((s, a) => s + a.reduce((p, q) => p + q * q, 0), 0) / vals.reduce((s, a) => s + a.length, 0));
    const h = opts.h ?? 1e-2 * Math.max(1, rms);
    const plus = vals.map((a, i) => a.map((x, k) => x + h * v[i][k]));
    const minus = vals.map((a, i) => a.map((x, k) => x - h * v[i][k]));
    const lp = (await c.run(feeds(plus))).L.data[0] as number;
    const lm = (await c.run(feeds(minus))).L.data[0] as number;
    const num = (lp - lm) / (2 * h);
    analytic.push(dot); numeric.push(num);
    relErr = Math.max(relErr, Math.abs(dot - num) / Math.max(Math.abs(num), Math.abs(dot), 1e-3));
  }
  return { relErr, analytic, numeric };
}
void evaluate;
