// Graph -> ONNX ModelProto bytes (opset 18), through protobufjs.
import { type Tensor, type OnnxNode, type EmitContext, type TypedArray } from './graph.ts';
import { ModelProto, AttributeType } from './onnx-proto.ts';
import { ONNX_DTYPE } from './ops/elementwise.ts';

export const OPSET = 18;
export const IR_VERSION = 8;

function rawBytes(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function valueInfo(name: string, t: Tensor) {
  return {
    name,
    type: { tensor_type: { elem_type: ONNX_DTYPE[t.dtype], shape: { dim: t.shape.map((d) => ({ dim_value: d })) } } },
  };
}

function attrProto(a: NonNullable<OnnxNode['attrs']>[number]) {
  if (a.f !== undefined) return { name: a.name, type: AttributeType.FLOAT, f: a.f };
  if (a.i !== undefined) return { name: a.name, type: AttributeType.INT, i: a.i };
  if (a.s !== undefined) return { name: a.name, type: AttributeType.STRING, s: new TextEncoder().encode(a.s) };
  if (a.floats !== undefined) return { name: a.name, type: AttributeType.FLOATS, floats: a.floats };
  if (a.ints !== undefined) return { name: a.name, type: AttributeType.INTS, ints: a.ints };
  throw new Error(`attribute '${a.name}' has no value`);
}

export interface SerializeOptions { name?: string; docString?: string }

/** Serialise the part of the graph needed for `outputs` (keyed by output name). */
export function toOnnx(outputs: Record<string, Tensor>, opts: SerializeOptions = {}): Uint8Array {
  const outs = Object.entries(outputs);
  if (!outs.length) throw new Error('toOnnx: no outputs');
  const g = outs[0][1].graph;
  // which nodes are needed
  const needed = new Set<number>();
  const stack = outs.map(([, t]) => t);
  const nodeSet = new Set<number>();
  const consts: Tensor[] = [];
  const inputs: Tensor[] = [];
  while (stack.length) {
    const t = stack.pop()!;
    if (needed.has(t.id)) continue;
    needed.add(t.id);
    if (t.kind === 'const') consts.push(t);
    else if (t.kind === 'input') inputs.push(t);
    else if (t.node && !nodeSet.has(t.node.id)) {
      nodeSet.add(t.node.id);
      for (const o of t.node.outputs) needed.add(o.id);
      stack.push(...t.node.inputs);
    }
  }
  const nameOf = (t: Tensor) => (t.kind === 'input' ? t.name! : t.kind === 'const' ? `c${t.id}` : `t${t.id}`);
  const initializers: unknown[] = consts.map((t) => ({
    name: nameOf(t), dims: [...t.shape], data_type: ONNX_DTYPE[t.dtype], raw_data: rawBytes(t.data!),
  }));
  const nodes: unknown[] = [];
  let tmp = 0;
  const ctx: EmitContext = {
    constI64(values, shape) {
      const name = `k${initializers.length}_${tmp++}`;
      initializers.push({ name, dims: shape ? [...shape] : [values.length], data_type: 7, raw_data: rawBytes(BigInt64Array.from(values, (v) => BigInt(v))) });
      return name;
    },
    constF32(values, shape) {
      const name = `k${initializers.length}_${tmp++}`;
      initializers.push({ name, dims: shape ? [...shape] : [values.length], data_type: 1, raw_data: rawBytes(Float32Array.from(values)) });
      return name;
    },
    tmp: () => `x${tmp++}`,
    push(n: OnnxNode) {
      nodes.push({
        input: n.inputs, output: n.outputs, op_type: n.opType, name: `n${nodes.length}`,
        domain: n.domain ?? '', attribute: (n.attrs ?? []).map(attrProto),
      });
    },
  };
  const order = [...nodeSet].sort((a, b) => a - b);
  for (const id of order) {
    const n = g.nodes[id];
    n.op.emit(ctx, n.inputs.map(nameOf), n.outputs.map(nameOf), n);
  }
  for (const [name, t] of outs) ctx.push({ opType: 'Identity', inputs: [nameOf(t)], outputs: [name] });
  inputs.sort((a, b) => a.id - b.id);
  const model = {
    ir_version: IR_VERSION,
    opset_import: [{ domain: '', version: OPSET }],
    producer_name: 'clipmapper',
    producer_version: '0.1.0',
    doc_string: opts.docString ?? '',
    graph: {
      name: opts.name ?? g.name,
      node: nodes,
      initializer: initializers,
      input: inputs.map((t) => valueInfo(t.name!, t)),
      output: outs.map(([name, t]) => valueInfo(name, t)),
    },
  };
  const err = ModelProto.verify(model);
  if (err) throw new Error(`toOnnx: ${err}`);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}
