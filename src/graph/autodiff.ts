// Reverse-mode autodiff over our graph.
//
// `vjp(outputs, cotangents, wrt)` appends the gradient graph: it walks, in reverse creation order,
// only the nodes that lie on a path from `wrt` to `outputs`, calls each op's VJP rule (defined
// beside the op's forward in src/graph/ops) and sums cotangents that meet at a tensor.
//
// Scaling to a training step through StyleGAN2-1024 + CLIP + IR-SE50 + a parser: we do NOT build
// one graph for the whole step. Each frozen network gets its own pair of sessions, a forward one
// and a VJP one that takes (input, output cotangent) and recomputes the forward inside itself
// (src/runtime/vjp.ts). The trainer chains cotangents through them in TypeScript. Why:
//  - a single fused graph would hold every activation of every network at once, and ONNX
//    protobufs cap at 2 GB of weights per model;
//  - per-network sessions are compiled once per input shape and reused by every loss and step,
//    and each can run on its own execution provider;
//  - recomputation costs one extra forward of G per step, while ORT frees the VJP session's
//    activations as soon as they are consumed.
import type { Node, Tensor } from './graph.ts';
import { add } from './ops/elementwise.ts';

export function vjp(outputs: Tensor[], cotangents: Tensor[], wrt: Tensor[]): Tensor[] {
  if (outputs.length !== cotangents.length) throw new Error('vjp: one cotangent per output');
  outputs.forEach((o, i) => {
    const c = cotangents[i];
    if (o.shape.length !== c.shape.length || o.shape.some((d, k) => d !== c.shape[k])) {
      throw new Error(`vjp: cotangent [${c.shape}] for output [${o.shape}]`);
    }
  });
  const g = outputs[0].graph;
  // forward reachability from wrt
  const depends = new Set<number>(wrt.map((t) => t.id));
  const nodes = g.nodes;
  const live = new Set<Node>();
  for (const n of nodes) {
    if (n.inputs.some((t) => depends.has(t.id))) {
      live.add(n);
      for (const o of n.outputs) depends.add(o.id);
    }
  }
  // backward reachability from outputs
  const needed = new Set<number>(outputs.map((t) => t.id));
  const path: Node[] = [];
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (!live.has(n) || !n.outputs.some((o) => needed.has(o.id))) continue;
    path.push(n);
    for (const t of n.inputs) needed.add(t.id);
  }
  const grads = new Map<number, Tensor>();
  const accum = (t: Tensor, gt: Tensor) => {
    const prev = grads.get(t.id);
    grads.set(t.id, prev ? add(prev, gt) : gt);
  };
  outputs.forEach((o, i) => accum(o, cotangents[i]));
  for (const n of path) {
    const gy = n.outputs.map((o) => grads.get(o.id) ?? null);
    if (gy.every((x) => x === null)) continue;
    if (!n.op.vjp) throw new Error(`vjp: op '${n.op.name}' has no gradient rule but lies between the inputs and the loss`);
    const gin = n.op.vjp(n, gy);
    n.inputs.forEach((t, k) => {
      const gt = gin[k];
      if (gt && depends.has(t.id)) accum(t, gt);
    });
  }
  return wrt.map((t) => grads.get(t.id) ?? g.zeros(t.shape, t.dtype));
}

/** Gradient of a one-element loss w.r.t. `wrt` (seed 1). */
export function grad(loss: Tensor, wrt: Tensor[]): Tensor[] {
  if (loss.size !== 1) throw new Error(`grad: loss must have one element, got [${loss.shape}]`);
  const one = loss.graph.constant(new Float32Array(1).fill(1), loss.shape);
  return vjp([loss], [one], wrt);
}
