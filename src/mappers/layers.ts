// Blocks shared by the three mappers, each written as the official module computes it.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { ParamRefs } from './params.ts';

/**
 * StyleGAN2 PixelNorm: x * rsqrt(mean(x^2, dim=1) + 1e-8). The mappers feed it w+ as [B, L, D],
 * so dim 1 is the LAYER axis: each channel is normalised over the L rows, not over the D
 * channels. All three projects inherit this quirk and their weights are trained on it.
 */
export function pixelNorm(x: Tensor): Tensor {
  return G.div(x, G.sqrt(G.add(G.reduceMean(G.mul(x, x), [1], true), 1e-8)));
}

/**
 * StyleGAN2 EqualLinear(in, out, lr_mul, activation='fused_lrelu') as StyleCLIP's copy computes
 * it: leaky_relu(x @ (W * lr_mul / sqrt(in))^T + b * lr_mul, 0.2) * sqrt(2). The stored weight
 * and bias are scaled at use, so gradients w.r.t. the stored tensors carry those factors.
 * (StyleCLIP's fused_act broadcasts the bias over the LAST axis of a 3-D input.)
 */
export function equalLinearLrelu(x: Tensor, p: ParamRefs, name: string, lrMul: number): Tensor {
  const w = p(`${name}.weight`);
  const scale = lrMul / Math.sqrt(w.shape[1]);
  const y = G.linear(x, G.mul(w, scale));
  return G.mul(G.leakyRelu(G.add(y, G.mul(p(`${name}.bias`), lrMul)), 0.2), Math.SQRT2);
}

/** torch nn.Linear with the weight [out, in] and, when the checkpoint has one, a bias. */
export function torchLinear(x: Tensor, p: ParamRefs, name: string, bias = true): Tensor {
  return G.linear(x, p(`${name}.weight`), bias ? p(`${name}.bias`) : null);
}

/**
 * The conditioning MLP of HairCLIP's ModulationModule and FFCLIP's att_module (gamma/beta):
 * Sequential(Linear, LayerNorm([D]) affine eps 1e-5, LeakyReLU(0.01), Linear) — keys .0, .1, .3.
 */
export function conditionMlp(e: Tensor, p: ParamRefs, name: string): Tensor {
  let h = torchLinear(e, p, `${name}.0`);
  h = G.layerNorm(h, p(`${name}.1.weight`), p(`${name}.1.bias`), 1e-5);
  h = G.leakyRelu(h, 0.01);
  return torchLinear(h, p, `${name}.3`);
}
