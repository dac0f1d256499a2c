// The identity loss of all three trainers (pSp/HairCLIP criteria/id_loss.py, IDLoss), on
// generated images in [-1, 1]:
//
//   f(I)  = IR-SE50(AdaptiveAvgPool(112)(AdaptiveAvgPool(256)(I)[35:223, 32:220]))   unit vectors
//   L_id  = mean over the batch of 1 - <f(x_hat), f(x)>,  f(x) detached (the target)
//
// The preprocessing is the official one for every size (src/nets/arcface/irse.ts idPreprocess):
// a non-256 image is AdaptiveAvgPool2d'ed to 256 first — an exact 4x4 mean from 1024, a nearest
// 8x replication from the 32 px test generator — then cropped to the face and pooled to 112.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { idFeatures, idLoss, type IrseNet } from '../nets/arcface/irse.ts';

/** IDLoss(x_hat, x): scalar; the features of x are a detached target. */
export function identityLoss(net: IrseNet, xHat: Tensor, x: Tensor): Tensor {
  return idLoss(idFeatures(net, xHat), G.detach(idFeatures(net, x)));
}

/** Identity similarity (IDS) per sample: <f(a), f(b)> (cosine of unit vectors), [B]. For evaluation. */
export function identitySimilarity(net: IrseNet, a: Tensor, b: Tensor): Tensor {
  return G.reduceSum(G.mul(idFeatures(net, a), idFeatures(net, b)), 1);
}
