// Latent regularisers.
//
//   latentL2  StyleCLIP/HairCLIP `loss_l2_latent` = nn.MSELoss()(w_hat, w): the mean of
//             (w_hat - w)^2 over every element (B * L * D). With w_hat = w + 0.1 * M it equals
//             0.01 * mean(M^2); it is built from the difference so either form can be passed.
//   latentL1  FFCLIP `loss_latent` ("L_norm") = mean |w - w_hat| = mean |Δw| over B * L * D.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';

/** nn.MSELoss()(w_hat, w). */
export function latentL2(wHat: Tensor, w: Tensor): Tensor {
  const d = G.sub(wHat, w);
  return G.reduceMean(G.mul(d, d));
}

/** mean |w_hat - w| (FFCLIP's L1 latent norm). */
export function latentL1(wHat: Tensor, w: Tensor): Tensor {
  return G.reduceMean(G.abs(G.sub(wHat, w)));
}
