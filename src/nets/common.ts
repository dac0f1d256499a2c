// Shared pieces of the pretrained-network ports: reading a checkpoint into a state dict, checking
// it against the key list an architecture demands, handing weights to a graph, the few blocks
// every PyTorch CNN repeats (Conv, BatchNorm in inference mode, PReLU), and small helpers the
// verify modules share (reading golden fixture folders).
//
// How a network file uses it (see src/nets/arcface/irse.ts for a complete example):
//   1. infer the configuration from the tensor shapes of the state dict (`indices`, `shapeOf`);
//   2. list the keys/shapes that configuration needs (`KeySpec[]`, built with `bnSpec`/`convSpec`),
//      in state_dict() order, so the same list is checked against the official *_keys.json;
//   3. `validateStateDict` refuses missing, unexpected and mis-shaped tensors by name (BatchNorm's
//      `num_batches_tracked` is optional: files written by PyTorch < 0.4.1 do not have it);
//   4. `new Weights(...)` gives the float32 values and graph constants by key.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { loadCheckpoint, flattenStateDict } from '../io/torch.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { TensorData, isFloatDType, toFloat32Array, dtypeCode } from '../io/tensor.ts';
import type { PickleValue } from '../io/pickle.ts';
import { isPyDict } from '../io/pickle.ts';

export type StateDict = ReadonlyMap<string, TensorData>;

/** One state-dict entry an architecture needs. */
export interface KeySpec {
  key: string;
  shape: readonly number[];
  /** safetensors-style code: every weight is F32 (F16/BF16/F64 files are accepted and upcast), counters I64 */
  dtype: 'F32' | 'I64';
  /** may be absent from a file (BatchNorm `num_batches_tracked`) */
  optional?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Reading checkpoints

/** The object tree of a `.pt`/`.pth` file (zip or legacy pickle), or bytes already read. */
export function readCheckpoint(source: string | Uint8Array): PickleValue {
  return loadCheckpoint(source);
}

/**
 * A checkpoint whose root is the state dict itself (`torch.save(net.state_dict())`, as
 * model_ir_se50.pth, parsenet.pth, 79999_iter.pth): every tensor under its dotted key.
 */
export function bareStateDict(root: PickleValue, what: string): Map<string, TensorData> {
  if (root instanceof TensorData) throw new Error(`${what}: the checkpoint is a single tensor, not a state dict`);
  if (!isPyDict(root)) throw new Error(`${what}: the checkpoint root is not a dict (a whole pickled module? save its state_dict() instead)`);
  const sd = flattenStateDict(root);
  if (!sd.size) throw new Error(`${what}: the checkpoint holds no tensors`);
  return sd;
}

// ---------------------------------------------------------------------------------------------
// Key lists and validation

/** Conv2d / ConvTranspose2d / Linear weight (+ bias). */
export function convSpec(prefix: string, weightShape: readonly number[], bias: boolean): KeySpec[] {
  const s: KeySpec[] = [{ key: `${prefix}.weight`, shape: weightShape, dtype: 'F32' }];
  if (bias) s.push({ key: `${prefix}.bias`, shape: [weightShape[0]], dtype: 'F32' });
  return s;
}

/** BatchNorm1d/2d(c): [weight, bias,] running_mean, running_var, num_batches_tracked (optional). */
export function bnSpec(prefix: string, c: number, affine = true): KeySpec[] {
  const s: KeySpec[] = [];
  if (affine) s.push({ key: `${prefix}.weight`, shape: [c], dtype: 'F32' }, { key: `${prefix}.bias`, shape: [c], dtype: 'F32' });
  s.push(
    { key: `${prefix}.running_mean`, shape: [c], dtype: 'F32' },
    { key: `${prefix}.running_var`, shape: [c], dtype: 'F32' },
    { key: `${prefix}.num_batches_tracked`, shape: [], dtype: 'I64', optional: true },
  );
  return s;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Strict load_state_dict: every non-optional key present with its exact shape, no key the
 * architecture does not know, floats where floats belong. Throws one error listing the problems,
 * each naming its key.
 */
export function validateStateDict(what: string, sd: StateDict, spec: readonly KeySpec[]): void {
  const problems: string[] = [];
  const known = new Set<string>();
  for (const k of spec) {
    known.add(k.key);
    const t = sd.get(k.key);
    if (!t) {
      if (!k.optional) problems.push(`missing '${k.key}' ${fmt(k.shape)}`);
      continue;
    }
    if (t.shape.length !== k.shape.length || t.shape.some((d, i) => d !== k.shape[i])) {
      problems.push(`'${k.key}' has shape ${fmt(t.shape)}, the architecture needs ${fmt(k.shape)}`);
    }
    if (k.dtype === 'F32' && !isFloatDType(t.dtype)) problems.push(`'${k.key}' is ${dtypeCode(t.dtype)}, expected a float tensor`);
  }
  for (const key of sd.keys()) if (!known.has(key)) problems.push(`unexpected key '${key}' ${fmt(sd.get(key)!.shape)}`);
  if (problems.length) {
    const shown = problems.slice(0, 12);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
    throw new Error(`${what}: state dict does not match the architecture:\n  ${shown.join('\n  ')}${more}`);
  }
}

/** The shape of a key, or an error naming it (for configuration inference). */
export function shapeOf(sd: StateDict, key: string, what: string): readonly number[] {
  const t = sd.get(key);
  if (!t) throw new Error(`${what}: missing '${key}' (needed to infer the configuration)`);
  return t.shape;
}

/** The integer indices `i` of keys `${prefix}${i}.…`, ascending (e.g. the units of a Sequential). */
export function indices(sd: StateDict, prefix: string): number[] {
  const out = new Set<number>();
  for (const k of sd.keys()) {
    if (!k.startsWith(prefix)) continue;
    const m = /^(\d+)\./.exec(k.slice(prefix.length));
    if (m) out.add(Number(m[1]));
  }
  return [...out].sort((a, b) => a - b);
}

/** Indices 0..n-1 with no gaps, or an error naming the first missing one. */
export function contiguousCount(sd: StateDict, prefix: string, what: string): number {
  const idx = indices(sd, prefix);
  idx.forEach((v, i) => { if (v !== i) throw new Error(`${what}: '${prefix}${i}.*' is missing (found '${prefix}${v}.*')`); });
  return idx.length;
}

/**
 * A network from a bare state dict (a map, or a checkpoint path / bytes holding one), strict like
 * load_state_dict: its config inferred from the keys and shapes, then every key and shape checked.
 */
export function loadBareNet<C>(
  source: string | Uint8Array | StateDict, what: string,
  infer: (sd: StateDict, what: string) => C, spec: (config: C) => KeySpec[],
): { config: C; weights: Weights } {
  const sd = source instanceof Map ? source : bareStateDict(readCheckpoint(source as string | Uint8Array), what);
  const config = infer(sd, what);
  validateStateDict(what, sd, spec(config));
  return { config, weights: new Weights(what, sd) };
}

// ---------------------------------------------------------------------------------------------
// Weights in graphs

/** A validated state dict as float32 arrays and per-graph constants. */
export class Weights {
  private readonly f32 = new Map<string, Float32Array>();
  private readonly bound = new WeakMap<G.Graph, Map<string, Tensor>>();

  constructor(readonly what: string, readonly sd: StateDict) {}

  has(key: string): boolean { return this.sd.has(key); }

  shape(key: string): readonly number[] {
    const t = this.sd.get(key);
    if (!t) throw new Error(`${this.what}: missing weight '${key}'`);
    return t.shape;
  }

  /** float32 values (upcast once from F16/BF16/F64 files; a view into the file for F32). */
  data(key: string): Float32Array {
    let d = this.f32.get(key);
    if (!d) {
      const t = this.sd.get(key);
      if (!t) throw new Error(`${this.what}: missing weight '${key}'`);
      d = toFloat32Array(t);
      this.f32.set(key, d);
    }
    return d;
  }

  /** The weight as a constant of graph `g` (one initializer per key per graph). */
  tensor(g: G.Graph, key: string): Tensor {
    let m = this.bound.get(g);
    if (!m) { m = new Map(); this.bound.set(g, m); }
    let t = m.get(key);
    if (!t) {
      t = g.constant(this.data(key), this.shape(key));
      m.set(key, t);
    }
    return t;
  }
}

/** nn.Conv2d by prefix: `prefix.weight` and, when the file has it, `prefix.bias`. */
export function conv2d(W: Weights, prefix: string, x: Tensor, opts: G.ConvOpts = {}): Tensor {
  const g = x.graph;
  const b = W.has(`${prefix}.bias`) ? W.tensor(g, `${prefix}.bias`) : null;
  return G.conv2d(x, W.tensor(g, `${prefix}.weight`), b, opts);
}

/** nn.ConvTranspose2d by prefix (weight [Cin, Cout, kh, kw]). */
export function convTranspose2d(W: Weights, prefix: string, x: Tensor, opts: G.ConvOpts = {}): Tensor {
  const g = x.graph;
  const b = W.has(`${prefix}.bias`) ? W.tensor(g, `${prefix}.bias`) : null;
  return G.convTranspose2d(x, W.tensor(g, `${prefix}.weight`), b, opts);
}

/** nn.Linear by prefix. */
export function linear(W: Weights, prefix: string, x: Tensor): Tensor {
  const g = x.graph;
  const b = W.has(`${prefix}.bias`) ? W.tensor(g, `${prefix}.bias`) : null;
  return G.linear(x, W.tensor(g, `${prefix}.weight`), b);
}

/**
 * BatchNorm1d/2d in eval mode (running statistics), eps 1e-5 as PyTorch's default; the affine
 * weight/bias are used when present (BatchNorm1d(affine=False) has neither).
 */
export function batchNorm(W: Weights, prefix: string, x: Tensor, eps = 1e-5): Tensor {
  return G.batchNorm2d(x, {
    weight: W.has(`${prefix}.weight`) ? W.data(`${prefix}.weight`) : undefined,
    bias: W.has(`${prefix}.bias`) ? W.data(`${prefix}.bias`) : undefined,
    mean: W.data(`${prefix}.running_mean`),
    var: W.data(`${prefix}.running_var`),
  }, eps);
}

/** nn.PReLU(C): per-channel negative slope `prefix.weight`. */
export function prelu(W: Weights, prefix: string, x: Tensor): Tensor {
  return G.prelu(x, W.tensor(x.graph, `${prefix}.weight`));
}

// ---------------------------------------------------------------------------------------------
// Resampling that src/graph does not provide

/**
 * F.interpolate(mode='bilinear', align_corners=True) along one axis as a matrix [out, in]:
 * src = dst * (in-1)/(out-1), computed in float32 as PyTorch's CPU kernel does for float inputs.
 */
export function bilinearAlignCornersMatrix(inSize: number, outSize: number): Float32Array {
  const f = Math.fround;
  const A = new Float32Array(outSize * inSize);
  const scale = outSize > 1 ? f((inSize - 1) / (outSize - 1)) : 0;
  for (let o = 0; o < outSize; o++) {
    const src = f(scale * o);
    const i0 = Math.floor(src);
    const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    const l1 = f(src - i0);
    const l0 = f(1 - l1);
    A[o * inSize + i0] += l0;
    A[o * inSize + i1] += l1;
  }
  return A;
}

/** F.interpolate(x, size, mode='bilinear', align_corners=True) on [..., H, W]. */
export function resizeBilinearAlignCorners(x: Tensor, size: readonly [number, number]): Tensor {
  const [H, W] = x.shape.slice(-2);
  const [Ho, Wo] = size;
  return G.resample2d(x, bilinearAlignCornersMatrix(H, Ho), bilinearAlignCornersMatrix(W, Wo), Ho, Wo);
}

/**
 * The sum of every element, reduced one axis at a time from the last: short float32 partial sums,
 * closer to PyTorch's pairwise `.sum()` than one long accumulation (matters for losses summed over
 * whole images, whose fixtures are compared at ~1e-6 relative).
 */
export function sumAll(x: Tensor): Tensor {
  let s = x;
  for (let a = x.rank - 1; a >= 0; a--) s = G.reduceSum(s, a);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Fixture helpers for the verify modules

/** A safetensors file of a fixture folder, with an error naming the folder when it is absent. */
export function readFixture(dir: string, file: string): { tensors: Map<string, TensorData>; metadata: Record<string, string> } {
  const p = join(dir, file);
  if (!existsSync(p)) throw new Error(`verify: ${dir} has no ${file}`);
  return readSafetensors(readFileSync(p));
}

/** A tensor of a fixture file by name (error naming file and tensor when absent). */
export function fixtureTensor(f: { tensors: Map<string, TensorData> }, name: string, file = 'fixture'): TensorData {
  const t = f.tensors.get(name);
  if (!t) throw new Error(`verify: ${file} has no tensor '${name}'`);
  return t;
}

/** The per-tensor `suggested_atol` map of a fixture file's metadata ({} when absent). */
export function suggestedAtol(metadata: Record<string, string>): Record<string, number> {
  const s = metadata.suggested_atol;
  return s ? (JSON.parse(s) as Record<string, number>) : {};
}

/**
 * The "suggested atol" column of a fixture folder's README tables for one file: rows
 * `| <file> | \`<tensor>\` | ... | <atol> |` ({} when the folder has no README or no such rows).
 * io.safetensors files carry no tolerance metadata; their README rows do.
 */
export function readmeAtol(dir: string, file: string): Record<string, number> {
  const p = join(dir, 'README.md');
  if (!existsSync(p)) return {};
  const out: Record<string, number> = {};
  for (const line of readFileSync(p, 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || cells[1] !== file) continue;
    const name = /^`([^`]+)`$/.exec(cells[2])?.[1];
    const last = cells.filter((c) => c !== '').pop() ?? '';
    const v = Number(last);
    if (name && last !== '' && Number.isFinite(v) && v > 0) out[name] = v;
  }
  return out;
}

/** Host data of a graph input: float32 values with their shape. */
export function hostF32(t: TensorData): { data: Float32Array; shape: number[] } {
  return { data: toFloat32Array(t), shape: [...t.shape] };
}

/** U8 images of the fixtures: (u8 - offset) * scale in float32 (exact for the fixture recipes). */
export function u8ToFloat(t: TensorData, offset: number, scale: number): Float32Array {
  const src = t.data as Uint8Array;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = (src[i] - offset) * scale;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parameter sources for blocks written once for both frozen and differentiated weights

/**
 * Where a network's blocks get their parameters from: `Weights` gives checkpoint constants;
 * `InputWeights` turns chosen keys into graph inputs (to differentiate w.r.t. them, e.g. in
 * tests against gradient fixtures). `data` always gives the stored float32 values (buffers
 * that an op takes as host data, such as FIR kernels).
 */
export interface ParamSource {
  tensor(g: G.Graph, key: string): Tensor;
  shape(key: string): readonly number[];
  data(key: string): Float32Array;
}

/**
 * The keys selected by `asInput` as graph inputs named after the key (one per graph), the rest
 * as constants of `weights`. `feeds()` gives the stored values for those inputs.
 */
export class InputWeights implements ParamSource {
  private readonly bound = new WeakMap<G.Graph, Map<string, Tensor>>();
  constructor(readonly weights: Weights, readonly asInput: (key: string) => boolean) {}

  tensor(g: G.Graph, key: string): Tensor {
    if (!this.asInput(key)) return this.weights.tensor(g, key);
    let m = this.bound.get(g);
    if (!m) { m = new Map(); this.bound.set(g, m); }
    let t = m.get(key);
    if (!t) {
      t = g.input(key, this.weights.shape(key));
      m.set(key, t);
    }
    return t;
  }
  shape(key: string): readonly number[] { return this.weights.shape(key); }
  data(key: string): Float32Array { return this.weights.data(key); }

  /** The input tensors `g` declared so far, by key. */
  inputs(g: G.Graph): Map<string, Tensor> { return new Map(this.bound.get(g) ?? []); }

  /** Feeds (stored values) for every input declared on `g`. */
  feeds(g: G.Graph): Record<string, { data: Float32Array; shape: number[] }> {
    const out: Record<string, { data: Float32Array; shape: number[] }> = {};
    for (const key of this.bound.get(g)?.keys() ?? []) out[key] = { data: this.data(key), shape: [...this.shape(key)] };
    return out;
  }
}

/**
 * The tolerance of a stored float32 loss `sum(a * b)`: the suggested atol plus how far the stored
 * value lies from the exact (float64) sum of its own stored terms — the reference's summation
 * rounding. A loss summed over a whole image (9216 signed terms in the parser fixtures) carries
 * ~1e-6 of it, as much as the README's suggested atol; the terms themselves (and the gradients)
 * keep their own tight tolerances. Rounded up to 2 significant digits.
 */
export function sumLossAtol(suggested: number, a: ArrayLike<number>, b: ArrayLike<number>, storedSum: number): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  const v = suggested + Math.abs(s - storedSum);
  const p = 10 ** (Math.floor(Math.log10(v)) - 1);
  return Number((Math.ceil(v / p) * p).toPrecision(2));
}
