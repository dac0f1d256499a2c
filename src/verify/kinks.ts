// Gradients through ReLU-type kinks (ReLU, LeakyReLU, PReLU, fused leaky ReLU) against float32
// golden fixtures.
//
// A pre-activation that lies within a rounding error of 0 can take the other branch in our
// float32 evaluation than in the reference's, and every gradient element downstream of that one
// unit moves by (1 - slope) * its upstream gradient — far more than the fixtures' tolerances,
// which are 10x the reference's OWN float32-vs-float64 error (its float64 run took the same
// branch as its float32 run). Two correct float32 implementations disagree there by chance, more
// often the more activations a network has (seen: one flipped PReLU in an e4e encoder at input
// 128 gave grad.x errors of 1e-4 of its max against an atol of 6e-6 of its max).
//
// `kinkSpread` finds the gradient elements that are discontinuous within a tiny move of the
// input: it re-evaluates the gradient at x (1 + eps s) and x (1 - eps s) (s a fixed random sign
// pattern; inputs near 0, e.g. mid-grey pixels, move by eps 1e-3 max|x| so they move too) and takes
// the symmetric second difference |g+ + g- - 2 g|, the largest over two patterns. The smooth part cancels to O(eps^2); a unit
// whose pre-activation is within the move of 0 lands on one side in one run and on the other in the
// other, so its jump appears in full. `compareWithin` then widens each element's atol by that
// amount only: elements away from kinks keep the strict tolerance, so a wrong gradient still fails.
//
// It needs nothing but a function from input to gradient — no instrumented activation sites, any
// ReLU-type activation and any number of near-kink units — and is what every verifier uses
// (arcface IR-SE, e4e; verify_ffclip uses compareWithin with its own per-element allowance).
import type { CompareLine } from './compare.ts';

/** Default relative input move: ~16 float32 ulps, well above the rounding disagreement of two
 *  float32 evaluations (so a unit sitting inside it changes branch) and far below anything a
 *  fixture resolves (the smooth part of the second difference is O(eps^2)). */
export const KINK_EPS = 2e-6;

/** A fixed +-1 pattern (xorshift32), so a verify run is reproducible. */
export function signPattern(n: number, seed = 0x9e3779b9): Float32Array {
  const s = new Float32Array(n);
  let v = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    v ^= v << 13; v >>>= 0; v ^= v >>> 17; v ^= v << 5; v >>>= 0;
    s[i] = v & 1 ? 1 : -1;
  }
  return s;
}

/**
 * |g(x+) + g(x-) - 2 g(x)| elementwise, x+- = x (1 +- eps s) (inputs within 1e-3 max|x| of 0 move
 * by +- eps s 1e-3 max|x| instead): how far each gradient element jumps when units near a kink
 * change branch; the largest over `patterns` independent sign patterns s, as one pattern can leave
 * a particular unit's pre-activation almost unmoved. `grad` maps an input to the gradient(s) to
 * check (several at once: the same perturbation serves every gradient of one loss).
 */
export async function kinkSpread(
  grad: (x: Float32Array) => Promise<Float32Array[]>, x: Float32Array, g0: Float32Array[], eps = KINK_EPS, patterns = 2,
): Promise<Float32Array[]> {
  let big = 0;
  for (let i = 0; i < x.length; i++) big = Math.max(big, Math.abs(x[i]));
  const floor = 1e-3 * big;
  const spread = g0.map((g) => new Float32Array(g.length));
  for (let p = 0; p < patterns; p++) {
    const s = signPattern(x.length, p === 0 ? undefined : 0x9e3779b9 + 0x6d2b79f5 * p);
    const step = (v: number, i: number) => eps * s[i] * (Math.abs(v) >= floor ? v : floor);
    const xp = x.map((v, i) => v + step(v, i));
    const xm = x.map((v, i) => v - step(v, i));
    const [gp, gm] = [await grad(xp), await grad(xm)];
    g0.forEach((g, k) => { for (let i = 0; i < g.length; i++) spread[k][i] = Math.max(spread[k][i], Math.abs(gp[k][i] + gm[k][i] - 2 * g[i])); });
  }
  return spread;
}

/**
 * |got_i - ref_i| <= atol + spread_i (see kinkSpread; any per-element allowance works, `what`
 * names it in the line); the line reports how many elements needed it.
 */
export function compareWithin(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, atol: number, spread: ArrayLike<number>, what = 'kink spread'): CompareLine {
  if (got.length !== ref.length || spread.length !== ref.length) return { name, maxAbs: Infinity, maxRel: Infinity, pass: false, rule: `size ${got.length} != ${ref.length}` };
  let maxAbs = 0; let maxRel = 0; let ok = true; let widened = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? NaN : Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / Math.max(Math.abs(ref[i]), 1e-12));
    if (d <= atol) continue;
    if (d <= atol + spread[i]) widened++;
    else ok = false;
  }
  return { name, maxAbs, maxRel, pass: ok && !Number.isNaN(maxAbs), rule: `atol ${atol}${widened ? ` (+ ${what} at ${widened} of ${ref.length})` : ''} rtol 0` };
}
