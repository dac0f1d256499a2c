// Reverse-mode autodiff over our graph.
//
// `vjp(outputs, cotangents, wrt)` appends the gradient graph: it walks, in reverse creation order,
// only the nodes that lie on a path from `wrt` to `outputs`, calls each op's VJP rule (defined
// beside the op's forward in src/graph/ops) and sums cotangents that meet at a tensor.
//
// A training step is ONE graph per method and configuration (src/train/step.ts): source latents,
// the mapper's parameters (graph inputs), condition embeddings, loss targets and loss weights go
// in; x = G(w), w_hat = w + a * M(w, c), x_hat = G(w_hat), every loss term and the total are
// built inside, and `grad(total, params)` is appended by this walker. The frozen networks' weights
// are constants shared by every use in the graph (G appears twice, CLIP up to three times, with
// one initializer each). Parser masks and targets that must not carry gradient go through
// `detach` (StopGradient); x = G(w) needs nothing, as no path leads from the parameters to it.
//
// Why one fused graph rather than per-network forward/VJP sessions chained in TypeScript (what
// src/runtime/vjp.ts offers, and what this file's header used to prescribe):
//  - no recomputation: a VJP session re-runs its network's forward, so a chained step ran G's
//    forward on w_hat twice (once for the losses, once inside its VJP) and CLIP/ArcFace likewise;
//    fused, each forward runs once and the backward reads the activations it kept;
//  - no host round trips: per-network sessions move the 1024^2 images and their cotangents
//    through JavaScript memory several times per step; fused, they stay inside ORT;
//  - ORT sees the whole step, so it orders, fuses and frees across network boundaries (its
//    memory planner releases each activation after its last use in the backward);
//  - the walker only visits nodes on a path from the parameters to the loss, so the frozen
//    branches (x = G(w), the targets, the masks) stay forward-only.
// The costs, and why they are acceptable: one session per configuration (a few; HairCLIP's cut
// flags change the mapper's structure, so up to 4, compiled lazily); peak memory holds the
// activations of one G backward plus the losses' networks at once — bench/train.ts at 1024
// (HairCLIP, batch 1, CPU): 6.7 GB RSS after compiling and running the first step, 9.0 GB peak
// over the whole benchmark (weights held twice, by JS and ORT, included), well inside 24 GB; ONNX's
// 2 GB protobuf cap counts initializers once each, and G (~120 MB), the ViT-B/32 image tower
// (~350 MB), IR-SE50 (~175 MB) and the parser (~8 MB) fit. Per-network VJP sessions remain
// available (src/runtime/vjp.ts) for verification and one-off gradients.
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
