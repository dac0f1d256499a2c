// The compiled sessions of a mapper: a forward session (inputs, parameters) -> M and a VJP
// session (inputs, parameters, cotangent of M) -> cotangents of the inputs and of every
// parameter, built on src/runtime/vjp.ts's makeVjpPair. The parameters are graph inputs, so the
// same two sessions serve every optimiser step; one MapperSession exists per input shape and
// condition variant (see each mapper's `session(...)`).
//
// Only the parameters the builder actually uses become inputs: ONNX drops inputs that do not
// reach an output, and some parameters never do — FFCLIP's `fc` (built, saved, never called) and
// HairCLIP's gamma/beta MLPs on the missing-condition ("cut") path. Their gradient is returned as
// exact zeros, and `reached` lists the parameters the output depends on (PyTorch gives the others
// grad None until a first use allocates it, zeros afterwards under torch 1.x's zero_grad()).
import { Graph, type Tensor } from '../graph/graph.ts';
import { makeVjpPair, type VjpPair } from '../runtime/vjp.ts';
import type { HostTensor } from '../runtime/session.ts';
import type { ParamRefs, ParamSet } from './params.ts';

export interface MapperInput { name: string; shape: number[] }

export interface MapperSessionSpec {
  name: string;
  /** the non-parameter inputs (latent, condition embeddings), in order */
  inputs: MapperInput[];
  /** builds M from the named inputs and the parameter lookup */
  build(x: Record<string, Tensor>, p: ParamRefs): Tensor;
}

export interface MapperVjpResult {
  /** cotangents of the non-parameter inputs, by input name */
  inputs: Record<string, Float32Array>;
  /** cotangent of every parameter, by state_dict key (zeros for those that do not reach M) */
  params: Map<string, Float32Array>;
  /** the parameters M depends on */
  reached: Set<string>;
}

export class MapperSession {
  private readonly pair: VjpPair;
  /** parameter keys that are inputs of the sessions, in first-use order */
  readonly used: string[];
  readonly outputShape: number[];

  constructor(readonly params: ParamSet, readonly spec: MapperSessionSpec) {
    // Probe once: which parameters does the builder touch?
    const used: string[] = [];
    const g = new Graph(`${spec.name}-params`);
    const x = Object.fromEntries(spec.inputs.map((i) => [i.name, g.input(i.name, i.shape)]));
    const seen = new Map<string, Tensor>();
    const out = spec.build(x, (name) => {
      let t = seen.get(name);
      if (!t) {
        t = g.input(name, params.get(name).shape);
        seen.set(name, t);
        used.push(name);
      }
      return t;
    });
    this.used = used;
    this.outputShape = [...out.shape];
    const n = spec.inputs.length;
    this.pair = makeVjpPair(
      (xs) => {
        const named = Object.fromEntries(spec.inputs.map((i, k) => [i.name, xs[k]]));
        const byKey = new Map(used.map((k, j) => [k, xs[n + j]]));
        return [spec.build(named, (name) => {
          const t = byKey.get(name);
          if (!t) throw new Error(`${spec.name}: parameter '${name}' was not used when the graph was first built`);
          return t;
        })];
      },
      [...spec.inputs.map((i) => ({ name: i.name, shape: i.shape })), ...used.map((k) => ({ name: k, shape: params.get(k).shape }))],
      { name: spec.name },
    );
  }

  private feeds(inputs: Record<string, Float32Array>): Float32Array[] {
    return [
      ...this.spec.inputs.map((i) => {
        const v = inputs[i.name];
        if (!v) throw new Error(`${this.spec.name}: missing input '${i.name}'`);
        return v;
      }),
      ...this.used.map((k) => this.params.get(k).data),
    ];
  }

  /** M for these inputs with the current parameter values. */
  async forward(inputs: Record<string, Float32Array>): Promise<HostTensor> {
    const [y] = await this.pair.forward(this.feeds(inputs));
    return y;
  }

  /** Cotangents of the inputs and parameters for a cotangent `gOut` of M (forward recomputed inside). */
  async vjp(inputs: Record<string, Float32Array>, gOut: Float32Array): Promise<MapperVjpResult> {
    const n = this.outputShape.reduce((a, b) => a * b, 1);
    if (gOut.length !== n) throw new Error(`${this.spec.name}: cotangent has ${gOut.length} values, output [${this.outputShape.join(', ')}] needs ${n}`);
    const g = await this.pair.vjp(this.feeds(inputs), [gOut]);
    const res: MapperVjpResult = { inputs: {}, params: new Map(), reached: new Set(this.used) };
    this.spec.inputs.forEach((i, k) => { res.inputs[i.name] = g[k]!.data as Float32Array; });
    const byKey = new Map(this.used.map((k, j) => [k, g[this.spec.inputs.length + j]!.data as Float32Array]));
    for (const p of this.params.list) res.params.set(p.name, byKey.get(p.name) ?? new Float32Array(p.data.length));
    return res;
  }
}

/** One MapperSession per key (input shapes, condition variant), created on first use. */
export class SessionCache {
  private sessions = new Map<string, MapperSession>();
  constructor(private readonly params: ParamSet) {}
  get(key: string, spec: () => MapperSessionSpec): MapperSession {
    let s = this.sessions.get(key);
    if (!s) { s = new MapperSession(this.params, spec()); this.sessions.set(key, s); }
    return s;
  }
  clear(): void { this.sessions.clear(); }
}
