// The training step as ONE graph ("step graph") per method and configuration.
//
// Inputs:   the source latents w [B, L, D]; every trainable parameter of the mapper (ParamSet.declare:
//           graph inputs named by their state_dict keys, so one compiled session serves every
//           optimiser step); condition embeddings; loss targets computed outside (reference-image
//           embeddings, a reference's average hair colour); loss weights (a vector, so a condition
//           that is absent for this sample is a weight of 0, not another graph).
// Inside:   x = G(w)                          no gradient reaches it: we differentiate w.r.t. the
//                                             parameters only, and no path leads from them to x
//           w_hat = w + 0.1 * M(w, c)          (FFCLIP: w + M(w, c))
//           x_hat = G(w_hat)
//           every loss term, their weighted total `loss`
//           G.grad(loss, parameters)           appended by src/graph/autodiff.ts
// Outputs:  each loss term (scalars) and the gradient of every parameter that reaches the loss.
//
// The frozen networks' weights are graph constants shared by every use: both G instances (and
// the two or three CLIP image passes) take the same Tensor objects, so each weight is one
// initializer. Non-differentiable pieces — parser argmax masks, targets such as f(x) of the
// identity loss — go through `detach` (StopGradient). Text embeddings are computed once per
// prompt by a CLIP text forward session and cached (src/train/embed.ts); reference-image
// embeddings and targets come from forward sessions too (no gradient, as the official code).
//
// Why one fused graph instead of per-network forward/VJP sessions chained on the host: see the
// header of src/graph/autodiff.ts (no recomputed forwards, no image round trips through JS, ORT
// plans memory across the whole step). A structural variant (HairCLIP's cut flags: an absent
// condition removes the modulation from its sub-mappers) is another session, compiled lazily
// on first use (`StepCache`).
//
// Parameters that never reach the loss (FFCLIP's unused `fc`, the gamma/beta MLPs of a cut
// HairCLIP sub-mapper) are not session inputs; their gradient is exact zeros, as PyTorch's
// zero_grad()ed .grad (the optimisers then leave Adam/Ranger state untouched in value).
import { Graph, type DType, type Tensor } from '../graph/graph.ts';
import { grad } from '../graph/autodiff.ts';
import { compile, type Compiled, type CompileOptions, type HostTensor } from '../runtime/session.ts';
import type { ParamRefs, ParamSet } from '../mappers/params.ts';
import type { StepResult } from './trainer.ts';

export interface StepInput { name: string; shape: number[]; dtype?: DType }

export interface StepGraphSpec {
  /** session name (variant included), for messages */
  name: string;
  /** the non-parameter inputs (latents, embeddings, targets, weights) */
  inputs: StepInput[];
  /** builds every loss term from the inputs and the parameter lookup; must return `loss`, the total */
  build(g: Graph, x: Record<string, Tensor>, p: ParamRefs): Record<string, Tensor>;
  compile?: CompileOptions;
}

const GRAD = 'grad__';

/** Observers of step graphs as they are built (benchmarks count their FLOPs; tests inspect them). */
export const stepGraphHooks: { onBuild?: (name: string, loss: Tensor, params: Tensor[], outputs: Record<string, Tensor>) => void } = {};

/** The parameter inputs the tensor `t` depends on (any path, through the nodes of its graph). */
export function inputsReaching(t: Tensor): Set<string> {
  const g = t.graph;
  const needed = new Set<number>([t.id]);
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (!n.outputs.some((o) => needed.has(o.id))) continue;
    for (const x of n.inputs) needed.add(x.id);
  }
  const names = new Set<string>();
  for (const inp of g.inputs) if (needed.has(inp.id)) names.add(inp.name!);
  return names;
}

export class StepSession {
  /** parameter keys that reach the loss (session inputs), in spec order */
  readonly reached: string[];
  /** the loss terms returned, `loss` included */
  readonly terms: string[];
  /** model size in bytes (serialised ONNX) */
  readonly modelBytes: number;
  private zeros = new Map<string, Float32Array>();

  private constructor(readonly params: ParamSet, readonly spec: StepGraphSpec, private readonly compiled: Compiled, reached: string[], terms: string[]) {
    this.reached = reached;
    this.terms = terms;
    this.modelBytes = compiled.modelBytes;
  }

  /** Builds the step graph, appends the gradient and compiles it. */
  static async create(params: ParamSet, spec: StepGraphSpec): Promise<StepSession> {
    const g = new Graph(spec.name);
    const x: Record<string, Tensor> = {};
    for (const i of spec.inputs) x[i.name] = g.input(i.name, i.shape, i.dtype ?? 'float32');
    const p = params.declare(g);
    const terms = spec.build(g, x, p);
    const loss = terms.loss;
    if (!loss) throw new Error(`${spec.name}: the step graph must return 'loss' (the total)`);
    for (const [k, t] of Object.entries(terms)) {
      if (t.size !== 1) throw new Error(`${spec.name}: loss term '${k}' has shape [${t.shape}], expected a scalar`);
    }
    const reachingLoss = inputsReaching(loss);
    const reached = params.names.filter((n) => reachingLoss.has(n));
    if (!reached.length) throw new Error(`${spec.name}: no parameter reaches the loss`);
    const byName = new Map(g.inputs.map((t) => [t.name!, t]));
    const grads = grad(loss, reached.map((n) => byName.get(n)!));
    const outputs: Record<string, Tensor> = { ...terms };
    reached.forEach((n, i) => { outputs[GRAD + n] = grads[i]; });
    stepGraphHooks.onBuild?.(spec.name, loss, reached.map((n) => byName.get(n)!), outputs);
    const compiled = await compile(outputs, { ...spec.compile, name: spec.name });
    return new StepSession(params, spec, compiled, reached, Object.keys(terms));
  }

  /** One step: loss terms and the gradient of every parameter (zeros for those not reached). */
  async run(feeds: Record<string, Float32Array | HostTensor>): Promise<StepResult> {
    const all: Record<string, Float32Array | HostTensor> = {};
    for (const i of this.spec.inputs) {
      if (!this.compiled.inputs.has(i.name)) continue; // ORT dropped an input no output needs
      const f = feeds[i.name];
      if (f === undefined) throw new Error(`${this.spec.name}: missing input '${i.name}'`);
      all[i.name] = f;
    }
    for (const n of this.reached) if (this.compiled.inputs.has(n)) all[n] = this.params.get(n).data;
    const r = await this.compiled.run(all);
    const losses: Record<string, number> = {};
    for (const t of this.terms) losses[t] = (r[t].data as Float32Array)[0];
    const grads = new Map<string, Float32Array>();
    for (const p of this.params.list) {
      const gr = r[GRAD + p.name];
      if (gr) grads.set(p.name, gr.data as Float32Array);
      else {
        let z = this.zeros.get(p.name);
        if (!z) { z = new Float32Array(p.data.length); this.zeros.set(p.name, z); }
        grads.set(p.name, z);
      }
    }
    return { losses, grads };
  }
}

/** One StepSession per structural variant, compiled on first use. */
export class StepCache {
  private sessions = new Map<string, Promise<StepSession>>();
  constructor(private readonly params: ParamSet) {}
  get(key: string, spec: () => StepGraphSpec): Promise<StepSession> {
    let s = this.sessions.get(key);
    if (!s) {
      s = StepSession.create(this.params, spec());
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }
  get size(): number { return this.sessions.size; }
}

/**
 * A forward-only session whose parameters are inputs (fed their current values at each call),
 * for previews and evaluation during training: no recompilation as the parameters change.
 */
export class ForwardSession {
  private constructor(readonly params: ParamSet, private readonly compiled: Compiled) {}
  static async create(params: ParamSet, name: string, inputs: StepInput[], build: (g: Graph, x: Record<string, Tensor>, p: ParamRefs) => Record<string, Tensor>, opts: CompileOptions = {}): Promise<ForwardSession> {
    const g = new Graph(name);
    const x: Record<string, Tensor> = {};
    for (const i of inputs) x[i.name] = g.input(i.name, i.shape, i.dtype ?? 'float32');
    const outs = build(g, x, params.declare(g));
    return new ForwardSession(params, await compile(outs, { ...opts, name }));
  }
  async run(feeds: Record<string, Float32Array | HostTensor>): Promise<Record<string, HostTensor>> {
    const all: Record<string, Float32Array | HostTensor> = {};
    for (const k of this.compiled.inputs.keys()) {
      if (feeds[k] !== undefined) all[k] = feeds[k];
      else if (this.params.has(k)) all[k] = this.params.get(k).data;
      else throw new Error(`forward session: missing input '${k}'`);
    }
    return this.compiled.run(all);
  }
}

/** L2 norm of all gradients together, and the in-place rescale torch.nn.utils.clip_grad_norm_ applies. */
export function clipGradNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  let s = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  const norm = Math.sqrt(s);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const [k, g] of grads) {
      const c = Float32Array.from(g, (v) => v * coef); // grads may be shared zero buffers: never scale in place
      grads.set(k, c);
    }
  }
  return norm;
}
