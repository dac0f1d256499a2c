// The graph: tensor handles with static shapes and dtypes, and nodes that apply ops.
//
// A network is written as ordinary TypeScript calls (`conv2d(x, w)`, `add(a, b)`), which record
// nodes here; nothing is computed until the graph is serialised to ONNX and run by ONNX Runtime
// (src/runtime). Every op is registered once in a table (`defineOp`) with its shape inference,
// its ONNX emitter and its VJP rule, so the forward and the gradient of an op live side by side
// in the op's file (src/graph/ops/*), as in tinygrad's gradient table.

export type DType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
export type Shape = readonly number[];

export type TypedArray =
  | Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array;

export type Attrs = Record<string, unknown>;

/** What an op's emitter writes: one ONNX node. Attribute types are explicit (1 vs 1.0 matters). */
export interface OnnxAttr {
  name: string;
  f?: number; i?: number; s?: string; floats?: number[]; ints?: number[];
}
export interface OnnxNode { opType: string; inputs: string[]; outputs: string[]; attrs?: OnnxAttr[]; domain?: string }

export interface EmitContext {
  /** name of an int64 initializer holding `values` (shape [values.length] unless `shape` given) */
  constI64(values: readonly number[], shape?: readonly number[]): string;
  constF32(values: readonly number[], shape?: readonly number[]): string;
  /** a fresh intermediate value name */
  tmp(): string;
  push(node: OnnxNode): void;
}

export interface OpDef {
  name: string;
  /** output shapes and dtypes from input tensors and attrs; throws on bad input */
  infer(inputs: Tensor[], attrs: Attrs): { shape: Shape; dtype: DType }[];
  emit(ctx: EmitContext, ins: string[], outs: string[], node: Node): void;
  /**
   * Vector-Jacobian product: given the cotangents of the node's outputs (null where the output
   * does not reach the loss), return the cotangent of each input (null: not differentiable).
   */
  vjp?(node: Node, gy: (Tensor | null)[]): (Tensor | null)[];
}

const OPS = new Map<string, OpDef>();
export function defineOp(def: OpDef): OpDef {
  if (OPS.has(def.name)) throw new Error(`op '${def.name}' defined twice`);
  OPS.set(def.name, def);
  return def;
}
/** Every registered op (the op table), e.g. for tests that check each VJP rule is covered. */
export function listOps(): OpDef[] {
  return [...OPS.values()];
}
export function getOp(name: string): OpDef {
  const d = OPS.get(name);
  if (!d) throw new Error(`unknown op '${name}'`);
  return d;
}

export class Node {
  constructor(
    readonly id: number,
    readonly op: OpDef,
    readonly inputs: Tensor[],
    readonly attrs: Attrs,
    public outputs: Tensor[] = [],
  ) {}
}

export type TensorKind = 'input' | 'const' | 'op';

export class Tensor {
  /** for kind 'const': the value */
  data?: TypedArray;
  /** for kind 'input': the feed name */
  name?: string;
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: DType,
    readonly kind: TensorKind,
    readonly node: Node | null = null,
    readonly index = 0,
  ) {}
  get rank(): number { return this.shape.length; }
  get size(): number { return numel(this.shape); }
  toString(): string { return `Tensor#${this.id}(${this.kind}${this.name ? ' ' + this.name : ''}, [${this.shape.join(',')}], ${this.dtype})`; }
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const ELEM_BYTES: Record<DType, number> = {
  float32: 4, float16: 2, float64: 8, int64: 8, int32: 4, int8: 1, uint8: 1, bool: 1,
};
export function elemBytes(d: DType): number { return ELEM_BYTES[d]; }

export class Graph {
  private nextId = 0;
  readonly inputs: Tensor[] = [];
  readonly nodes: Node[] = [];
  private scalarCache = new Map<string, Tensor>();
  private inputNames = new Set<string>();

  constructor(readonly name = 'clipmapper') {}

  /** A feed: a value given at run time (latents, images, trainable parameters, cotangents). */
  input(name: string, shape: Shape, dtype: DType = 'float32'): Tensor {
    if (this.inputNames.has(name)) throw new Error(`graph input '${name}' declared twice`);
    checkShape(shape, `input '${name}'`);
    this.inputNames.add(name);
    const t = new Tensor(this, this.nextId++, [...shape], dtype, 'input');
    t.name = name;
    this.inputs.push(t);
    return t;
  }

  /** A constant (frozen weight, buffer): serialised as an initializer. */
  constant(data: TypedArray, shape: Shape, dtype?: DType): Tensor {
    const dt = dtype ?? dtypeOf(data);
    checkShape(shape, 'constant');
    if (data.length !== numel(shape)) {
      throw new Error(`constant: ${data.length} values for shape [${shape.join(', ')}]`);
    }
    const t = new Tensor(this, this.nextId++, [...shape], dt, 'const');
    t.data = data;
    return t;
  }

  /** A float32 scalar (rank 0), shared between uses. */
  scalar(v: number, dtype: DType = 'float32'): Tensor {
    const key = `${dtype}:${Object.is(v, -0) ? '-0' : v}`;
    let t = this.scalarCache.get(key);
    if (!t) {
      const data = dtype === 'int64' ? BigInt64Array.of(BigInt(v)) : dtype === 'float32' ? Float32Array.of(v)
        : dtype === 'int32' ? Int32Array.of(v) : dtype === 'bool' ? Uint8Array.of(v ? 1 : 0) : Float64Array.of(v);
      t = this.constant(data, [], dtype);
      this.scalarCache.set(key, t);
    }
    return t;
  }

  zeros(shape: Shape, dtype: DType = 'float32'): Tensor {
    // a broadcast scalar keeps the model small
    return apply('Expand', [this.scalar(0, dtype)], { shape: [...shape] })[0];
  }

  /** internal: record a node */
  _node(op: OpDef, inputs: Tensor[], attrs: Attrs): Tensor[] {
    const node = new Node(this.nodes.length, op, inputs, attrs);
    const outs = op.infer(inputs, attrs);
    node.outputs = outs.map((o, i) => new Tensor(this, this.nextId++, o.shape, o.dtype, 'op', node, i));
    this.nodes.push(node);
    return node.outputs;
  }
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what}: bad shape [${shape.join(', ')}]`);
  }
}

export function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint16Array) return 'float16';
  return 'uint8';
}

/** Apply a registered op to tensors of one graph. */
export function apply(opName: string, inputs: Tensor[], attrs: Attrs = {}): Tensor[] {
  if (!inputs.length) throw new Error(`${opName}: no inputs`);
  const g = inputs[0].graph;
  for (const t of inputs) {
    if (!(t instanceof Tensor)) throw new Error(`${opName}: input is not a Tensor (${String(t)})`);
    if (t.graph !== g) throw new Error(`${opName}: inputs come from different graphs`);
  }
  return g._node(getOp(opName), inputs, attrs);
}

export type TensorLike = Tensor | number;
/** Lift a number to a scalar constant of the graph of `like`. */
export function lift(x: TensorLike, like: Tensor): Tensor {
  return typeof x === 'number' ? like.graph.scalar(x, like.dtype === 'float64' ? 'float64' : like.dtype.startsWith('int') ? like.dtype : 'float32') : x;
}

// ---------- shape helpers shared by op files ----------

export function broadcastShapes(...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const k = s.length - rank + i;
      const v = k >= 0 ? s[k] : 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v) throw new Error(`shapes [${shapes.map((x) => x.join(',')).join('] and [')}] do not broadcast`);
      d = v;
    }
    out.push(d);
  }
  return out;
}

export function normAxis(axis: number, rank: number, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${what} ${axis} out of range for rank ${rank}`);
  return a;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
