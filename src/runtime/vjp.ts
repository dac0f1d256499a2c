// Forward and VJP sessions for one network (see the header of src/graph/autodiff.ts).
//
// `makeVjpPair` turns a graph builder into two lazily compiled sessions:
//   forward: inputs -> outputs
//   vjp:     (inputs, output cotangents) -> input cotangents, recomputing the forward inside,
// so a trainer chains cotangents through several networks in TypeScript instead of building one
// giant graph. Frozen weights are constants inside the builder; trainable parameters are inputs
// (list them in `wrt` to get their gradients).
//
// Two ways to call it:
//   makeVjpPair({ name, build: (g) => ({ out: ... }), wrt: ['x', ...], differentiate?: ['out'] })
//     the builder declares its own named inputs; feeds, outputs and gradients are keyed by name;
//   makeVjpPair((inputs) => [outputs...], [shape | {shape, dtype, name}, ...])
//     positional: inputs are declared for you (named x0, x1, ... unless named), outputs are
//     named y0, y1, ...; every float input is differentiated.
import { Graph, type DType, type Shape, type Tensor, type TypedArray } from '../graph/graph.ts';
import { vjp as vjpGraph } from '../graph/autodiff.ts';
import { compile, type Compiled, type CompileOptions, type HostTensor } from './session.ts';

export type Feed = HostTensor | TypedArray;

export interface VjpPairSpec {
  /** model name (session names, error messages) */
  name?: string;
  /** declares its inputs on `g` and returns the named outputs */
  build: (g: Graph) => Record<string, Tensor>;
  /** input names whose cotangents the VJP session returns */
  wrt: string[];
  /** outputs that receive cotangents (default: all) */
  differentiate?: string[];
  compile?: CompileOptions;
}

export interface VjpInputSpec { shape: Shape; dtype?: DType; name?: string }

export interface VjpResult {
  /** the differentiated outputs, as recomputed inside the VJP session */
  outputs: Record<string, HostTensor>;
  /** cotangent of each `wrt` input, by input name */
  grads: Record<string, HostTensor>;
}

export interface NamedVjpPair {
  readonly name: string;
  /** graph inputs (name, shape, dtype) in declaration order */
  readonly inputs: { name: string; shape: number[]; dtype: DType }[];
  /** outputs (name, shape, dtype) */
  readonly outputs: { name: string; shape: number[]; dtype: DType }[];
  readonly wrt: string[];
  readonly differentiate: string[];
  /** every output of the builder; feeds the session does not use are ignored */
  forward(feeds: Record<string, Feed>): Promise<Record<string, HostTensor>>;
  /** cotangents of `wrt` given cotangents of the differentiated outputs (a missing one counts as zero) */
  vjp(feeds: Record<string, Feed>, cotangents: Record<string, Feed>): Promise<VjpResult>;
}

/** The positional form: feeds, outputs and cotangents as arrays in declaration order. */
export interface VjpPair {
  readonly name: string;
  readonly inputs: { name: string; shape: number[]; dtype: DType; differentiable: boolean }[];
  readonly outputs: { name: string; shape: number[]; dtype: DType }[];
  /** outputs y0, y1, ... */
  forward(inputs: Feed[]): Promise<HostTensor[]>;
  /** one cotangent per input (null for non-float inputs such as token ids); a null output cotangent counts as zero */
  vjp(inputs: Feed[], cotangents: (Feed | null)[]): Promise<(HostTensor | null)[]>;
}

const GRAD_PREFIX = 'grad__';

export function makeVjpPair(spec: VjpPairSpec): NamedVjpPair;
export function makeVjpPair(build: (inputs: Tensor[]) => Tensor[], inputs: (Shape | VjpInputSpec)[], opts?: CompileOptions & { name?: string }): VjpPair;
export function makeVjpPair(
  a: VjpPairSpec | ((inputs: Tensor[]) => Tensor[]),
  inputs?: (Shape | VjpInputSpec)[],
  opts: CompileOptions & { name?: string } = {},
): NamedVjpPair | VjpPair {
  return typeof a === 'function' ? positional(a, inputs ?? [], opts) : makePair(a);
}

/** The positional form on top of the named one: inputs x0.. (or their names), outputs y0.., every float input differentiated. */
function positional(build: (inputs: Tensor[]) => Tensor[], inputs: (Shape | VjpInputSpec)[], opts: CompileOptions & { name?: string }): VjpPair {
  const specs = inputs.map((s, i) => {
    const o: VjpInputSpec = Array.isArray(s) ? { shape: s as Shape } : (s as VjpInputSpec);
    const dtype: DType = o.dtype ?? 'float32';
    return { name: o.name ?? `x${i}`, shape: [...o.shape], dtype, differentiable: dtype.startsWith('float') };
  });
  if (new Set(specs.map((s) => s.name)).size !== specs.length) throw new Error(`${opts.name ?? 'makeVjpPair'}: input names must be unique`);
  const wrt = specs.filter((s) => s.differentiable).map((s) => s.name);
  if (!wrt.length) throw new Error(`${opts.name ?? 'makeVjpPair'}: no float input to differentiate`);
  const pair = makePair({
    name: opts.name,
    build: (g) => {
      const ys = build(specs.map((s) => g.input(s.name, s.shape, s.dtype)));
      return Object.fromEntries(ys.map((y, i) => [`y${i}`, y]));
    },
    wrt,
    compile: opts,
  });
  const feedsOf = (xs: Feed[]) => {
    if (xs.length !== specs.length) throw new Error(`${pair.name}: ${xs.length} inputs given, expected ${specs.length} (${specs.map((s) => s.name).join(', ')})`);
    return Object.fromEntries(specs.map((s, i) => [s.name, xs[i]]));
  };
  return {
    name: pair.name,
    inputs: specs,
    outputs: pair.outputs,
    async forward(xs) {
      const r = await pair.forward(feedsOf(xs));
      return pair.outputs.map((o) => r[o.name]);
    },
    async vjp(xs, cotangents) {
      if (cotangents.length !== pair.outputs.length) throw new Error(`${pair.name}: ${cotangents.length} cotangents given, expected ${pair.outputs.length}`);
      const cots: Record<string, Feed> = {};
      cotangents.forEach((c, i) => { if (c) cots[pair.outputs[i].name] = c; });
      const r = await pair.vjp(feedsOf(xs), cots);
      return specs.map((s) => (s.differentiable ? r.grads[s.name] : null));
    },
  };
}

function makePair(spec: VjpPairSpec): NamedVjpPair {
  const name = spec.name ?? 'net';
  // Build once up front: it gives the shapes and surfaces builder errors at construction.
  const probeGraph = new Graph(`${name}-probe`);
  const probe = spec.build(probeGraph);
  const outNames = Object.keys(probe);
  if (!outNames.length) throw new Error(`${name}: the builder returned no outputs`);
  const inputs = probeGraph.inputs.map((t) => ({ name: t.name!, shape: [...t.shape], dtype: t.dtype }));
  const outputs = outNames.map((n) => ({ name: n, shape: [...probe[n].shape], dtype: probe[n].dtype }));
  for (const w of spec.wrt) {
    const inp = inputs.find((i) => i.name === w);
    if (!inp) throw new Error(`${name}: wrt '${w}' is not an input (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    if (!inp.dtype.startsWith('float')) throw new Error(`${name}: cannot differentiate w.r.t. ${inp.dtype} input '${w}'`);
  }
  const differentiate = spec.differentiate ?? outNames;
  for (const d of differentiate) if (!outNames.includes(d)) throw new Error(`${name}: differentiate '${d}' is not an output (outputs: ${outNames.join(', ')})`);
  const copts = spec.compile ?? {};

  let fwd: Promise<Compiled> | undefined;
  let bwd: Promise<Compiled> | undefined;
  const forwardSession = () => (fwd ??= (async () => {
    const ys = spec.build(new Graph(`${name}-forward`));
    return compile(ys, { ...copts, name: `${name}-forward` });
  })());
  const vjpSession = () => (bwd ??= (async () => {
    const g = new Graph(`${name}-vjp`);
    const ys = spec.build(g);
    const byName = new Map(g.inputs.map((t) => [t.name!, t]));
    const outs = differentiate.map((d) => ys[d]);
    const cots = differentiate.map((d) => g.input(`cot__${d}`, ys[d].shape, ys[d].dtype));
    const grads = vjpGraph(outs, cots, spec.wrt.map((w) => byName.get(w)!));
    const result: Record<string, Tensor> = {};
    differentiate.forEach((d) => { result[d] = ys[d]; });
    spec.wrt.forEach((w, i) => { result[GRAD_PREFIX + w] = grads[i]; });
    return compile(result, { ...copts, name: `${name}-vjp` });
  })());

  /** only the feeds a session declares (ORT prunes inputs that do not reach its outputs) */
  const pick = (c: Compiled, feeds: Record<string, Feed>) => {
    const out: Record<string, Feed> = {};
    for (const k of c.inputs.keys()) if (feeds[k] !== undefined) out[k] = feeds[k];
    return out;
  };

  return {
    name, inputs, outputs, wrt: [...spec.wrt], differentiate: [...differentiate],
    async forward(feeds) {
      const c = await forwardSession();
      return c.run(pick(c, feeds));
    },
    async vjp(feeds, cotangents) {
      for (const k of Object.keys(cotangents)) {
        if (!differentiate.includes(k)) throw new Error(`${name}: cotangent for '${k}', which is not a differentiated output (${differentiate.join(', ')})`);
      }
      const c = await vjpSession();
      const all: Record<string, Feed> = { ...feeds };
      for (const d of differentiate) {
        const o = outputs.find((x) => x.name === d)!;
        all[`cot__${d}`] = cotangents[d] ?? new Float32Array(o.shape.reduce((p, q) => p * q, 1));
      }
      const r = await c.run(pick(c, all));
      const res: VjpResult = { outputs: {}, grads: {} };
      for (const d of differentiate) res.outputs[d] = r[d];
      for (const w of spec.wrt) res.grads[w] = r[GRAD_PREFIX + w];
      return res;
    },
  };
}
