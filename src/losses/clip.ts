// The CLIP losses of the three trainers, as graph builders on generated images in [-1, 1]:
//
//   clipTextLoss        StyleCLIP/HairCLIP/FFCLIP `CLIPLoss`: the image is resized by nearest
//                       Upsample(7) + AvgPool2d(size // 32) to 224 and fed to CLIP AS IS ([-1, 1],
//                       no mean/std: the quirk all three inherit); loss = 1 - logits_per_image / 100,
//                       logits = exp(logit_scale) * cos. With the released ViT-B/32 exp(logit_scale)
//                       is 100, so the loss is 1 - cos (hairclip.md §6.2); a CLIP with another
//                       logit scale (the tiny test CLIP: 14.3) keeps the official formula.
//   imageEmbeddingLoss  HairCLIP `ImageEmbddingLoss` (§6.3): both images hair-masked, each through
//                       AdaptiveAvgPool2d(224) -> x * 0.5 + 0.5 -> CLIP mean/std -> encode_image;
//                       CosineEmbeddingLoss(target +1) = mean over the batch of 1 - cos. The
//                       reference side is a detached target (computed once by a forward session).
//   ffclipEmbeddingLoss FFCLIP `loss_l1_embd` (ffclip.md §5.2): bicubic resize to 224 with
//                       align_corners=True, NO normalisation, encode_image of x_hat and of x, L1
//                       (mean) of the raw embedding difference; x's side carries no gradient.
//   clipScore           for evaluation: cos(E_I(x), E_T(text)) with CLIP's own preprocessing
//                       (antialiased bicubic to 224 of (x + 1) / 2, mean/std) — the metric of
//                       the papers' tables, not a training signal.
//
// Generalising the official resize to other sizes. The official code computes
// AvgPool2d(size // 32)(Upsample(scale_factor=7)(x)), which maps size -> 224 for any multiple
// of 32 (the tiny 32 px generator of the tests: 32 -> 224 -> 224, a pure 7x nearest upsample;
// 64 px: 448 -> 224). We write it as Upsample(s) + AvgPool(k) with s = R / gcd(S, R) and
// k = S / gcd(S, R) for a CLIP of input resolution R: for R = 224 and S a multiple of 32 that is
// exactly s = 7, k = S / 32, the official operator; other (S, R) pairs get the same kind of exact
// area resampling onto R. Computed as two constant matrices (no 7x image is materialised).
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { ClipModel } from '../nets/clip/clip.ts';
import type { Params } from '../nets/clip/model.ts';
import { embeddingResize, preprocessPhoto } from '../nets/clip/preprocess.ts';

function gcd(a: number, b: number): number { return b ? gcd(b, a % b) : a; }

/** The official CLIPLoss resize (Upsample(7) + AvgPool(S/32) for R = 224), generalised to any S and R. */
export function clipLossResize(x: Tensor, resolution = 224): Tensor {
  const [, C, H, W] = x.shape;
  if (x.rank !== 4 || C !== 3 || H !== W) throw new Error(`clipLossResize: need a square [N, 3, S, S] image, got [${x.shape.join(', ')}]`);
  const d = gcd(H, resolution);
  return G.upsamplePool(x, resolution / d, H / d);
}

/** 1 - cos along the last axis, per row: a [B, E] and b [B or 1, E] -> [B]. */
export function oneMinusCos(a: Tensor, b: Tensor): Tensor {
  return G.sub(1, G.cosineSimilarity(a, b, -1));
}

/** CLIP image features of the CLIPLoss input (resized, raw [-1, 1]), [B, E]: shared by several text targets. */
export function clipLossFeatures(clip: ClipModel, p: Params, xHat: Tensor): Tensor {
  return clip.encodeImageGraph(clipLossResize(xHat, clip.config.imageResolution), undefined, p);
}

/**
 * CLIPLoss per sample from the image features: 1 - exp(logit_scale) * cos(f, text) / 100, [B].
 * `text` [B, E] (one prompt per sample) or [1, E] (one prompt for the batch).
 */
export function clipTextLossFromFeatures(p: Params, f: Tensor, text: Tensor): Tensor {
  const scale = G.div(G.exp(p('logit_scale', [])), 100);
  return G.sub(1, G.mul(scale, G.cosineSimilarity(f, text, -1)));
}

/** CLIPLoss per sample, [B]. */
export function clipTextLossPerSample(clip: ClipModel, p: Params, xHat: Tensor, text: Tensor): Tensor {
  return clipTextLossFromFeatures(p, clipLossFeatures(clip, p, xHat), text);
}

/** CLIPLoss reduced over the batch: 'mean' (StyleCLIP/HairCLIP: `.mean()`) or 'sum' (FFCLIP: per-sample terms added). */
export function clipTextLoss(clip: ClipModel, p: Params, xHat: Tensor, text: Tensor, reduce: 'mean' | 'sum' = 'mean'): Tensor {
  return reduceBatch(clipTextLossPerSample(clip, p, xHat, text), reduce);
}

export function reduceBatch(l: Tensor, reduce: 'mean' | 'sum'): Tensor {
  return reduce === 'mean' ? G.reduceMean(l) : G.reduceSum(l);
}

/** CLIP image features of HairCLIP's embedding path (AdaptiveAvgPool(R), [0, 1], mean/std). */
export function embeddingFeatures(clip: ClipModel, p: Params, img: Tensor): Tensor {
  return clip.encodeImageGraph(embeddingResize(img, clip.config.imageResolution), undefined, p);
}

/**
 * HairCLIP ImageEmbddingLoss: mean over the batch of 1 - cos(E_I(x_hat * hairmask(x_hat)), target),
 * `target` the (detached) features of the hair-masked reference, [B, E].
 */
export function imageEmbeddingLoss(clip: ClipModel, p: Params, xHatMasked: Tensor, target: Tensor): Tensor {
  return G.reduceMean(oneMinusCos(embeddingFeatures(clip, p, xHatMasked), G.detach(target)));
}

/** FFCLIP's embedding input: F.interpolate(x, (R, R), mode='bicubic', align_corners=True), nothing else. */
export function ffclipEmbeddingInput(x: Tensor, resolution = 224): Tensor {
  return G.resize(x, [resolution, resolution], 'bicubic', { alignCorners: true });
}

/** FFCLIP loss_l1_embd: mean |E_I(bicubic(x_hat)) - E_I(bicubic(x))|, x's features detached. */
export function ffclipEmbeddingLoss(clip: ClipModel, p: Params, xHat: Tensor, x: Tensor): Tensor {
  const R = clip.config.imageResolution;
  const fHat = clip.encodeImageGraph(ffclipEmbeddingInput(xHat, R), undefined, p);
  const f = G.detach(clip.encodeImageGraph(ffclipEmbeddingInput(x, R), undefined, p));
  return G.reduceMean(G.abs(G.sub(fHat, f)));
}

/**
 * CLIP score for evaluation: cos(E_I(preprocess((x + 1) / 2)), text) per sample, [B], with CLIP's
 * own photo preprocessing (antialiased bicubic resize to R, centre crop, mean/std).
 */
export function clipScore(clip: ClipModel, p: Params, x: Tensor, text: Tensor): Tensor {
  const img = preprocessPhoto(G.add(G.mul(x, 0.5), 0.5), clip.config.imageResolution);
  return G.cosineSimilarity(clip.encodeImageGraph(img, undefined, p), text, -1);
}
