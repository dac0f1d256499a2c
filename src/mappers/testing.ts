// Test helpers shared by the mapper tests.
import { readFileSync } from 'node:fs';
import type { MapperSession } from './session.ts';
import type { ParamSet } from './params.ts';

export const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;

/** The tensor list of an official_*_keys.json section: [key, shape]. */
export function officialKeys(file: string, pick: (json: any) => { key: string; shape: number[] }[]): [string, number[]][] {
  const json = JSON.parse(readFileSync(FIXTURES + file, 'utf8'));
  return pick(json).map((t) => [t.key, t.shape]);
}

export function specKeys(p: { specs: { name: string; shape: number[] }[] } | ParamSet): [string, number[]][] {
  return p.specs.map((s) => [s.name, s.shape]);
}

/** Deterministic values in [-1, 1). */
export function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s / 4294967296) * 2 - 1;
  });
}

/**
 * Directional-derivative check of a MapperSession's VJP against central differences of its
 * float32 forward, along one random direction over every input and parameter, for
 * L = sum(M * R). The mappers are piecewise smooth (leaky ReLUs): a step that carries a
 * pre-activation across 0 spoils the difference, so the best of a few steps is returned (as the
 * fixtures' own finite-difference check does). Returns the relative error.
 */
export async function directionalCheck(s: MapperSession, inputs: Record<string, Float32Array>, seed: number, steps = [1e-2, 3e-3, 1e-3, 3e-4]): Promise<number> {
  const n = s.outputShape.reduce((a, b) => a * b, 1);
  const R = values(n, seed);
  const v = await s.vjp(inputs, R);
  const dirs: Record<string, Float32Array> = {};
  let k = seed;
  for (const [name, x] of Object.entries(inputs)) dirs[name] = values(x.length, ++k);
  const pdirs = new Map(s.params.list.map((p) => [p.name, values(p.data.length, ++k)]));
  let analytic = 0;
  for (const [name, d] of Object.entries(dirs)) d.forEach((di, i) => { analytic += di * v.inputs[name][i]; });
  for (const [name, d] of pdirs) { const g = v.params.get(name)!; d.forEach((di, i) => { analytic += di * g[i]; }); }
  const saved = new Map(s.params.list.map((p) => [p.name, Float32Array.from(p.data)]));
  const at = async (t: number) => {
    for (const p of s.params.list) { const d = pdirs.get(p.name)!; const x0 = saved.get(p.name)!; p.data.forEach((_, i) => { p.data[i] = x0[i] + t * d[i]; }); }
    const moved = Object.fromEntries(Object.entries(inputs).map(([name, x]) => [name, x.map((xi, i) => xi + t * dirs[name][i])]));
    const y = (await s.forward(moved)).data as Float32Array;
    let L = 0;
    for (let i = 0; i < n; i++) L += y[i] * R[i];
    return L;
  };
  let best = Infinity;
  for (const h of steps) {
    const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
    best = Math.min(best, Math.abs(numeric - analytic) / Math.max(Math.abs(numeric), Math.abs(analytic), 1e-3));
  }
  for (const p of s.params.list) p.data.set(saved.get(p.name)!);
  return best;
}
