// Pieces the three trainers share: the frozen networks, synthesis inside a step graph, the
// weighted total of the loss terms, and preview rows.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { Generator } from '../nets/stylegan2/stylegan2.ts';
import type { ClipModel } from '../nets/clip/clip.ts';
import type { IrseNet } from '../nets/arcface/irse.ts';
import type { UnetNet } from '../nets/parsenet/unet.ts';
import type { ParamTensor } from './optim.ts';

/** The frozen networks of a training run (ArcFace and the parser only when a loss needs them). */
export interface TrainNets {
  generator: Generator;
  clip: ClipModel;
  arcface: IrseNet | null;
  parser: UnetNet | null;
}

/** G.synthesis(w+) with the stored noise buffers (randomize_noise=False, as all three train). */
export function synthesize(gen: Generator, wplus: Tensor): Tensor {
  return gen.synthesis(wplus, gen.noiseConstants(wplus.graph));
}

/**
 * sum_k lw[k] * terms[names[k]] for the terms present (a term missing from `terms` is skipped:
 * its network or condition is not part of this graph). `lw` is the [K] weight input.
 */
export function weightedTotal(terms: Record<string, Tensor>, lw: Tensor, names: readonly string[]): Tensor {
  let total: Tensor | null = null;
  names.forEach((n, k) => {
    const t = terms[n];
    if (!t) return;
    const term = G.mul(G.reshape(G.select(lw, 0, k), []), G.reshape(t, []));
    total = total ? G.add(total, term) : term;
  });
  if (!total) throw new Error('no loss term in this step graph');
  return total;
}

/** One preview row: a label and images [1, 3, S, S] in [-1, 1] (source, edited, references). */
export interface PreviewRow { label: string; images: { data: Float32Array; shape: number[] }[] }

/** Image b of a [B, 3, S, S] batch as its own [1, 3, S, S] image. */
export function imageOf(data: Float32Array, shape: readonly number[], b: number): { data: Float32Array; shape: number[] } {
  const per = shape[1] * shape[2] * shape[3];
  return { data: data.slice(b * per, (b + 1) * per), shape: [1, shape[1], shape[2], shape[3]] };
}

/** Loss weights must be finite and >= 0; 0 removes a term (the official `if lambda > 0`). */
export function checkLambdas(l: Record<string, number>): void {
  for (const [k, v] of Object.entries(l)) if (!(Number.isFinite(v) && v >= 0)) throw new Error(`loss weight ${k} = ${v}: must be a finite number >= 0`);
}

/** The parameter list as the trainer takes it. */
export function paramList(params: { list: ParamTensor[] }): ParamTensor[] { return params.list; }
