// ParamSet: the trainable parameters of a mapper, named exactly as the official checkpoint's
// state_dict names them (e.g. `mapper.course_mapping.mapping.1.weight`,
// `module.att_mapper.att_mapper.0.q_matrix.weight`), stored as Float32Arrays.
//
// One object serves the three uses a trainable mapper has:
//  (a) graph inputs: `declare(g)` makes every parameter a graph input named by its key, so one
//      compiled session serves every optimiser step; `constants(g)` bakes the current values in
//      instead (frozen inference); `feeds()` gives the values to feed;
//  (b) the official checkpoint layout: `fromStateDict` checks every expected key and shape (and,
//      strictly, that nothing unexpected is left over), `toStateDict` writes the same keys back;
//  (c) the optimiser: `list` is the `ParamTensor[]` of src/train/optim.ts, updated in place.
//
// Initialisation follows the official modules (see `Init`), drawn from a seeded RNG
// (src/train/rng.ts) in spec order, so a seed fixes the whole initial model. PyTorch's own RNG
// stream is not reproduced (its values differ); the distributions are.
import type { Graph, Tensor } from '../graph/graph.ts';
import { Rng } from '../train/rng.ts';
import type { ParamTensor } from '../train/optim.ts';
import { TensorData, toFloat32Array } from '../io/tensor.ts';

/** How a parameter is initialised when a model is created from scratch. */
export type Init =
  /** U(-bound, bound) — nn.Linear's default: kaiming_uniform(a=sqrt(5)) on the weight and the bias
   *  both give bound = 1/sqrt(fan_in) */
  | { kind: 'uniform'; bound: number }
  /** N(mean, std^2) — e.g. StyleGAN2 EqualLinear: randn / lr_mul */
  | { kind: 'normal'; std: number; mean?: number }
  /** a constant — LayerNorm weight 1 / bias 0, EqualLinear bias (bias_init) */
  | { kind: 'constant'; value: number };

export interface ParamSpec {
  /** the state_dict key */
  name: string;
  shape: number[];
  init: Init;
  /** false for parameters that exist in the checkpoint but never reach the output (FFCLIP's fc) */
  used?: boolean;
}

/** nn.Linear(in, out) default init for the weight [out, in] and the bias [out]. */
export function torchLinear(name: string, inF: number, outF: number, bias = true, used = true): ParamSpec[] {
  const bound = 1 / Math.sqrt(inF);
  const specs: ParamSpec[] = [{ name: `${name}.weight`, shape: [outF, inF], init: { kind: 'uniform', bound }, used }];
  if (bias) specs.push({ name: `${name}.bias`, shape: [outF], init: { kind: 'uniform', bound }, used });
  return specs;
}

/** nn.LayerNorm(n) with elementwise_affine: weight 1, bias 0. */
export function torchLayerNorm(name: string, n: number): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [n], init: { kind: 'constant', value: 1 } },
    { name: `${name}.bias`, shape: [n], init: { kind: 'constant', value: 0 } },
  ];
}

/** Looks a parameter up by its key inside a graph (an input or a constant). */
export type ParamRefs = (name: string) => Tensor;

/** Anything that carries a tensor's values: TensorData from src/io, or a plain {shape, data}. */
export type TensorLike = TensorData | { shape: readonly number[]; data: Float32Array };

function toF32(t: TensorLike): Float32Array {
  return t instanceof TensorData ? toFloat32Array(t) : t.data;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

export class ParamSet {
  private readonly byName = new Map<string, ParamTensor>();
  readonly specs: ParamSpec[];

  /** Values must match the specs' shapes; they are used as given (not copied). */
  constructor(specs: ParamSpec[], values: Map<string, Float32Array>) {
    this.specs = specs;
    for (const s of specs) {
      if (this.byName.has(s.name)) throw new Error(`ParamSet: parameter '${s.name}' declared twice`);
      const v = values.get(s.name);
      if (!v) throw new Error(`ParamSet: no value for '${s.name}'`);
      if (v.length !== numel(s.shape)) throw new Error(`ParamSet: '${s.name}' has ${v.length} values, shape [${s.shape}] needs ${numel(s.shape)}`);
      this.byName.set(s.name, { name: s.name, shape: [...s.shape], data: v });
    }
  }

  /** Fresh parameters initialised as the official modules do, from a seeded RNG (spec order). */
  static init(specs: ParamSpec[], seed: number | Rng): ParamSet {
    const rng = typeof seed === 'number' ? new Rng(seed) : seed;
    const values = new Map<string, Float32Array>();
    for (const s of specs) {
      const n = numel(s.shape);
      const a = new Float32Array(n);
      const init = s.init;
      if (init.kind === 'uniform') for (let i = 0; i < n; i++) a[i] = (2 * rng.random() - 1) * init.bound;
      else if (init.kind === 'normal') for (let i = 0; i < n; i++) a[i] = (init.mean ?? 0) + init.std * rng.normal();
      else a.fill(init.value);
      values.set(s.name, a);
    }
    return new ParamSet(specs, values);
  }

  /**
   * Parameters from a state dict (keys exactly the spec names). Every spec key must be present
   * with its shape; values are copied to float32 (fp16 checkpoints are upcast). With `strict`,
   * any key of `sd` that is not a spec is an error too (as torch's load_state_dict(strict=True)).
   */
  static fromStateDict(specs: ParamSpec[], sd: Map<string, TensorLike>, opts: { strict?: boolean; what?: string } = {}): ParamSet {
    const what = opts.what ?? 'checkpoint';
    const missing = specs.filter((s) => !sd.has(s.name)).map((s) => s.name);
    if (missing.length) throw new Error(`${what}: missing key${missing.length > 1 ? 's' : ''} ${missing.slice(0, 8).map((k) => `'${k}'`).join(', ')}${missing.length > 8 ? ` (+${missing.length - 8} more)` : ''}`);
    if (opts.strict ?? true) {
      const known = new Set(specs.map((s) => s.name));
      const extra = [...sd.keys()].filter((k) => !known.has(k));
      if (extra.length) throw new Error(`${what}: unexpected key${extra.length > 1 ? 's' : ''} ${extra.slice(0, 8).map((k) => `'${k}'`).join(', ')}${extra.length > 8 ? ` (+${extra.length - 8} more)` : ''}`);
    }
    const values = new Map<string, Float32Array>();
    for (const s of specs) {
      const t = sd.get(s.name)!;
      if (!sameShape(t.shape, s.shape)) throw new Error(`${what}: '${s.name}' has shape [${t.shape.join(', ')}], expected [${s.shape.join(', ')}]`);
      values.set(s.name, Float32Array.from(toF32(t)));
    }
    return new ParamSet(specs, values);
  }

  /** The parameters in spec order, as the optimiser takes them (their `data` is updated in place). */
  get list(): ParamTensor[] { return [...this.byName.values()]; }
  get names(): string[] { return [...this.byName.keys()]; }
  get size(): number { return this.byName.size; }
  /** total number of scalars */
  get numel(): number { let n = 0; for (const p of this.byName.values()) n += p.data.length; return n; }
  has(name: string): boolean { return this.byName.has(name); }

  get(name: string): ParamTensor {
    const p = this.byName.get(name);
    if (!p) throw new Error(`ParamSet: no parameter '${name}'`);
    return p;
  }

  /** Declares every parameter as a graph input named by its key (trainable: fed at run time). */
  declare(g: Graph): ParamRefs {
    const refs = new Map<string, Tensor>();
    for (const p of this.byName.values()) refs.set(p.name, g.input(p.name, p.shape));
    return lookup(refs);
  }

  /** Bakes the current values into the graph as constants (a copy: later updates do not leak in). */
  constants(g: Graph): ParamRefs {
    const refs = new Map<string, Tensor>();
    for (const p of this.byName.values()) refs.set(p.name, g.constant(Float32Array.from(p.data), p.shape));
    return lookup(refs);
  }

  /** The feeds for a graph built with `declare`: key -> current values. */
  feeds(): Record<string, Float32Array> {
    const f: Record<string, Float32Array> = {};
    for (const p of this.byName.values()) f[p.name] = p.data;
    return f;
  }

  /** The state dict in the official key layout (float32 tensors; views of the live values). */
  toStateDict(): Map<string, TensorData<'float32'>> {
    const sd = new Map<string, TensorData<'float32'>>();
    for (const p of this.byName.values()) sd.set(p.name, new TensorData('float32', p.shape, p.data));
    return sd;
  }

  /** Overwrite the values from another set with the same keys and shapes. */
  copyFrom(other: ParamSet): void {
    for (const p of this.byName.values()) {
      const q = other.get(p.name);
      if (!sameShape(p.shape, q.shape)) throw new Error(`ParamSet.copyFrom: '${p.name}' has shape [${q.shape}], expected [${p.shape}]`);
      p.data.set(q.data);
    }
  }

  clone(): ParamSet {
    return new ParamSet(this.specs, new Map([...this.byName].map(([k, p]) => [k, Float32Array.from(p.data)])));
  }
}

function lookup(refs: Map<string, Tensor>): ParamRefs {
  return (name: string) => {
    const t = refs.get(name);
    if (!t) throw new Error(`no parameter '${name}' in this graph`);
    return t;
  };
}

/**
 * A state dict restricted to the keys under `prefix` (the prefix kept), e.g. the `mapper.` part of
 * a HairCLIP checkpoint. Returns the selected keys and the rest separately, so a loader can route
 * every key somewhere and report any it does not recognise.
 */
export function splitByPrefix<T>(sd: Map<string, T>, prefixes: string[]): { parts: Map<string, Map<string, T>>; rest: Map<string, T> } {
  const parts = new Map<string, Map<string, T>>(prefixes.map((p) => [p, new Map<string, T>()]));
  const rest = new Map<string, T>();
  for (const [k, v] of sd) {
    const p = prefixes.find((x) => k.startsWith(x));
    if (p !== undefined) parts.get(p)!.set(k, v);
    else rest.set(k, v);
  }
  return { parts, rest };
}

/** Strip `prefix` from every key (keys without it are an error naming the key). */
export function stripPrefix<T>(sd: Map<string, T>, prefix: string): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of sd) {
    if (!k.startsWith(prefix)) throw new Error(`key '${k}' does not start with '${prefix}'`);
    out.set(k.slice(prefix.length), v);
  }
  return out;
}
