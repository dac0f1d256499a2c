// Optimisers on Float32Arrays: Adam (torch.optim.Adam) and Ranger 20.4.11 (RAdam + Lookahead +
// gradient centralisation), the optimiser StyleCLIP and HairCLIP train their mappers with.
// Their whole state is plain arrays and numbers, saved in training checkpoints for exact resume.

export interface ParamTensor { name: string; shape: number[]; data: Float32Array }

export interface OptimState {
  kind: 'adam' | 'ranger';
  step: number;
  /** per parameter name: moment buffers (and Ranger's slow weights) */
  buffers: Record<string, Record<string, Float32Array>>;
}

export interface Optimizer {
  readonly kind: 'adam' | 'ranger';
  lr: number;
  /** apply one update in place; grads keyed by parameter name */
  step(params: ParamTensor[], grads: Map<string, Float32Array>): void;
  state(): OptimState;
  load(s: OptimState): void;
}

function bufs(state: OptimState, p: ParamTensor, names: string[], init?: (n: string) => Float32Array): Record<string, Float32Array> {
  let b = state.buffers[p.name];
  if (!b) {
    b = {};
    for (const n of names) b[n] = init?.(n) ?? new Float32Array(p.data.length);
    state.buffers[p.name] = b;
  }
  return b;
}

function gradOf(grads: Map<string, Float32Array>, p: ParamTensor): Float32Array {
  const g = grads.get(p.name);
  if (!g) throw new Error(`optimiser: no gradient for parameter '${p.name}'`);
  if (g.length !== p.data.length) throw new Error(`optimiser: gradient of '${p.name}' has ${g.length} values, parameter ${p.data.length}`);
  return g;
}

export interface AdamOptions { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number }

export class Adam implements Optimizer {
  readonly kind = 'adam' as const;
  lr: number;
  private b1: number; private b2: number; private eps: number; private wd: number;
  private s: OptimState = { kind: 'adam', step: 0, buffers: {} };
  constructor(o: AdamOptions) {
    this.lr = o.lr; [this.b1, this.b2] = o.betas ?? [0.9, 0.999]; this.eps = o.eps ?? 1e-8; this.wd = o.weightDecay ?? 0;
  }
  step(params: ParamTensor[], grads: Map<string, Float32Array>): void {
    const t = ++this.s.step;
    const bc1 = 1 - this.b1 ** t; const bc2 = 1 - this.b2 ** t;
    const stepSize = this.lr / bc1;
    const sq = Math.sqrt(bc2);
    for (const p of params) {
      const g = gradOf(grads, p);
      const { m, v } = bufs(this.s, p, ['m', 'v']);
      const x = p.data;
      for (let i = 0; i < x.length; i++) {
        const gi = this.wd ? g[i] + this.wd * x[i] : g[i];
        m[i] = this.b1 * m[i] + (1 - this.b1) * gi;
        v[i] = this.b2 * v[i] + (1 - this.b2) * gi * gi;
        x[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / sq + this.eps);
      }
    }
  }
  state(): OptimState { return this.s; }
  load(s: OptimState): void {
    if (s.kind !== 'adam') throw new Error(`cannot load a ${s.kind} optimiser state into adam`);
    this.s = s;
  }
}

export interface RangerOptions { lr: number; alpha?: number; k?: number; nSmaThreshold?: number; betas?: [number, number]; eps?: number; weightDecay?: number; gc?: boolean }

/** Ranger 20.4.11 defaults as HairCLIP/StyleCLIP use them: betas (0.95, 0.999), eps 1e-5, k 6, alpha 0.5. */
export class Ranger implements Optimizer {
  readonly kind = 'ranger' as const;
  lr: number;
  private alpha: number; private k: number; private thr: number;
  private b1: number; private b2: number; private eps: number; private wd: number; private gc: boolean;
  private s: OptimState = { kind: 'ranger', step: 0, buffers: {} };
  constructor(o: RangerOptions) {
    this.lr = o.lr; this.alpha = o.alpha ?? 0.5; this.k = o.k ?? 6; this.thr = o.nSmaThreshold ?? 5;
    [this.b1, this.b2] = o.betas ?? [0.95, 0.999]; this.eps = o.eps ?? 1e-5; this.wd = o.weightDecay ?? 0; this.gc = o.gc ?? true;
  }
  step(params: ParamTensor[], grads: Map<string, Float32Array>): void {
    const t = ++this.s.step;
    const { b1, b2 } = this;
    const b2t = b2 ** t;
    const nSmaMax = 2 / (1 - b2) - 1;
    const nSma = nSmaMax - (2 * t * b2t) / (1 - b2t);
    const adaptive = nSma > this.thr;
    const stepSize = adaptive
      ? Math.sqrt(((1 - b2t) * (nSma - 4) / (nSmaMax - 4) * (nSma - 2) / nSma * nSmaMax) / (nSmaMax - 2)) / (1 - b1 ** t)
      : 1 / (1 - b1 ** t);
    for (const p of params) {
      const g0 = gradOf(grads, p);
      let g = g0;
      if (this.gc && p.shape.length > 1) {
        // gradient centralisation: subtract each output row's mean (all dims but the first)
        g = Float32Array.from(g0);
        const rows = p.shape[0]; const cols = g.length / rows;
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let c = 0; c < cols; c++) s += g[r * cols + c];
          const mean = s / cols;
          for (let c = 0; c < cols; c++) g[r * cols + c] -= mean;
        }
      }
      const b = bufs(this.s, p, ['m', 'v', 'slow'], (n) => (n === 'slow' ? Float32Array.from(p.data) : new Float32Array(p.data.length)));
      const { m, v, slow } = b;
      const x = p.data;
      for (let i = 0; i < x.length; i++) {
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        if (this.wd) x[i] -= this.wd * this.lr * x[i];
        x[i] -= adaptive ? (stepSize * this.lr * m[i]) / (Math.sqrt(v[i]) + this.eps) : stepSize * this.lr * m[i];
      }
      if (t % this.k === 0) {
        for (let i = 0; i < x.length; i++) { slow[i] += this.alpha * (x[i] - slow[i]); x[i] = slow[i]; }
      }
    }
  }
  state(): OptimState { return this.s; }
  load(s: OptimState): void {
    if (s.kind !== 'ranger') throw new Error(`cannot load a ${s.kind} optimiser state into ranger`);
    this.s = s;
  }
}

export function makeOptimizer(kind: 'adam' | 'ranger', lr: number): Optimizer {
  return kind === 'adam' ? new Adam({ lr }) : new Ranger({ lr });
}
