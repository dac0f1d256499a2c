// Gradients near the kink of a piecewise-linear activation (PReLU, ReLU), for the verifiers.
//
// A float32 port sums in another order than PyTorch, so a pre-activation within ~1e-7 of 0 can
// land on the other side of the kink. Its forward effect is ~1e-7 (invisible), but its derivative
// jumps (1 vs the PReLU slope, 1 vs 0 for ReLU), so the input gradient differs locally by far more
// than the fixtures' float32-vs-float64 tolerance — the reference's own side is no more "right"
// than ours: PyTorch's float32 and float64 runs just happened to agree there. With random weights
// this happens in roughly one IR-SE fixture in ten (measured over seeds: smallest |pre-activation|
// over a forward is typically 2e-8..3e-7).
//
// `explainByKinkFlips` tests exactly that explanation and nothing looser: it lists the elements
// whose pre-activation is within `tau` of the kink, computes for each the exact change of the input
// gradient if its derivative took the other side, (d_other - d_ours) * dL/da_k * dz_k/dx (one VJP
// with a one-hot cotangent on z), and looks for a subset of them that brings our gradient within
// the tolerance of the reference. A wrong port is not rescued by this: the corrections are confined
// to the footprint of a few near-zero elements.
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { compile, type HostTensor } from '../../runtime/session.ts';

/** One activation: its input, output and negative-side slope (per channel along axis 1, or one number). */
export interface KinkSite {
  name: string;
  pre: Tensor;
  post: Tensor;
  slope: Float32Array | number;
}

export interface KinkFlip { site: string; index: number; z: number }

export interface KinkExplanation {
  flips: KinkFlip[];
  /** max |got + corrections - ref| */
  maxAbs: number;
  /** how many near-kink elements were considered */
  candidates: number;
}

/**
 * Whether flipping the kink side of a few near-zero pre-activations explains `got` vs `ref`
 * (max abs difference <= atol afterwards). `build` constructs, in a fresh graph, the loss, the
 * tensor differentiated (`wrt`) and the activation sites on the differentiated path; it is called
 * twice. Returns null when no subset of the candidates explains the difference.
 */
export async function explainByKinkFlips(opts: {
  build: (g: G.Graph) => { loss: Tensor; wrt: Tensor; sites: KinkSite[] };
  feeds: Record<string, HostTensor>;
  got: Float32Array;
  ref: Float32Array;
  atol: number;
  /** candidate |z| bound (default 1e-6: float32 summation differences are ~1e-7 here) */
  tau?: number;
  /** at most this many candidates, nearest to the kink first (default 8; subsets are enumerated) */
  maxCandidates?: number;
}): Promise<KinkExplanation | null> {
  const tau = opts.tau ?? 1e-6;
  const maxK = opts.maxCandidates ?? 8;

  // 1. pre-activations and the cotangents arriving at each activation's output
  const g1 = new G.Graph('kinks-scan');
  const b1 = opts.build(g1);
  const us = G.grad(b1.loss, b1.sites.map((s) => s.post));
  const outs: Record<string, Tensor> = {};
  b1.sites.forEach((s, i) => { outs[`z${i}`] = s.pre; outs[`u${i}`] = us[i]; });
  const r1 = await run(outs, opts.feeds);
  interface Cand { site: number; index: number; z: number; dDelta: number }
  const cands: Cand[] = [];
  b1.sites.forEach((s, i) => {
    const z = r1[`z${i}`].data as Float32Array; const u = r1[`u${i}`].data as Float32Array;
    const [, C = 1, ...rest] = s.pre.shape;
    const plane = rest.reduce((a, b) => a * b, 1);
    for (let j = 0; j < z.length; j++) {
      if (!(Math.abs(z[j]) < tau) || u[j] === 0) continue;
      const a = typeof s.slope === 'number' ? s.slope : s.slope[Math.floor(j / plane) % C];
      const ours = z[j] > 0 ? 1 : a; const other = z[j] > 0 ? a : 1;
      cands.push({ site: i, index: j, z: z[j], dDelta: (other - ours) * u[j] });
    }
  });
  if (!cands.length) return null;
  cands.sort((p, q) => Math.abs(p.z) - Math.abs(q.z));
  const picked = cands.slice(0, maxK);

  // 2. dz_k/dx for each candidate (VJP of a one-hot on its pre-activation)
  const g2 = new G.Graph('kinks-rows');
  const b2 = opts.build(g2);
  const rows: Record<string, Tensor> = {};
  picked.forEach((c, k) => {
    const pre = b2.sites[c.site].pre;
    const hot = new Float32Array(pre.size); hot[c.index] = 1;
    [rows[`r${k}`]] = G.grad(G.reduceSum(G.mul(pre, g2.constant(hot, pre.shape))), [b2.wrt]);
  });
  const r2 = await run(rows, opts.feeds);
  const deltas = picked.map((c, k) => {
    const row = r2[`r${k}`].data as Float32Array;
    return Float32Array.from(row, (v) => c.dDelta * v);
  });

  // 3. the smallest subset (then the best) that brings the gradient within atol
  const n = opts.got.length;
  let best: { mask: number; maxAbs: number; size: number } | null = null;
  for (let mask = 1; mask < 1 << picked.length; mask++) {
    let maxAbs = 0;
    for (let i = 0; i < n && maxAbs <= opts.atol; i++) {
      let v = opts.got[i];
      for (let k = 0; k < picked.length; k++) if (mask & (1 << k)) v += deltas[k][i];
      maxAbs = Math.max(maxAbs, Math.abs(v - opts.ref[i]));
    }
    if (maxAbs > opts.atol) continue;
    const size = popcount(mask);
    if (!best || size < best.size || (size === best.size && maxAbs < best.maxAbs)) best = { mask, maxAbs, size };
  }
  if (!best) return null;
  const flips = picked.filter((_, k) => best!.mask & (1 << k)).map((c) => ({ site: b1.sites[c.site].name, index: c.index, z: c.z }));
  return { flips, maxAbs: best.maxAbs, candidates: picked.length };
}

/** Evaluate, feeding only the inputs the compiled graph kept (a VJP row may not need every input). */
async function run(outputs: Record<string, Tensor>, feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
  const c = await compile(outputs, { name: 'kinks' });
  return c.run(Object.fromEntries(Object.entries(feeds).filter(([k]) => c.inputs.has(k))));
}

function popcount(m: number): number {
  let c = 0;
  for (; m; m &= m - 1) c++;
  return c;
}
