// The graphs of a photo edit, shared by the pipeline (compiled for onnxruntime-node) and by
// `clipmapper export` (serialised to .onnx for any ONNX Runtime, the browser's included):
//
//   encode     image [1, 3, Se, Se] in [-1, 1] (FFHQ-aligned crop)  -> w [1, L, D]      (e4e + latent_avg)
//   synthesis  w [B, L, D]                                          -> image [B, 3, S, S] in [-1, 1]
//              (the generator's stored noise buffers: randomize_noise=False, as e4e/HairCLIP inference)
//   parse      image [B, 3, S, S] in [-1, 1]                        -> labels [B, P, P] int32
//   edit       w [1, L, D], alpha [1]                               -> w_edit, image   (mapper with its
//              condition embeddings and parameters baked in as constants, then synthesis)
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { e4eCodes, e4eInputSize, type E4eNet } from '../nets/e4e/e4e.ts';
import type { Generator } from '../nets/stylegan2/stylegan2.ts';
import { parserInput, unetForward, PARSENET_HAIR } from '../nets/parsenet/unet.ts';
import { bisenetInput, bisenetLogits, BISENET_HAIR } from '../nets/bisenet/bisenet.ts';
import { HairClipMapper } from '../mappers/hairclip.ts';
import { StyleClipMapper } from '../mappers/styleclip.ts';
import { FfclipMapper } from '../mappers/ffclip.ts';
import type { FaceParser, Mapper } from './nets.ts';

/** e4e: aligned crop -> w+ (pSp's codes, latent_avg added when the model was trained from it). */
export function encodeGraph(e4e: E4eNet, g = new G.Graph('e4e')): Record<string, Tensor> {
  const S = e4eInputSize(e4e.config);
  return { w: e4eCodes(e4e, g.input('image', [1, 3, S, S])) };
}

/** The synthesis network on w+ with the stored noise buffers. */
export function synthesisGraph(gen: Generator, batch: number, g = new G.Graph('synthesis')): Record<string, Tensor> {
  const w = g.input('w', [batch, gen.nLatent, gen.config.styleDim]);
  return { image: gen.synthesis(w, gen.noiseConstants(g)) };
}

/** Label classes per parser family: hair, and the head region the blend mask covers (face parts + hair + hat + ears). */
export function parserClasses(p: FaceParser): { hair: number; head: number[] } {
  // CelebAMask-HQ order (parsenet): 1-12 face parts, 13 hair, 14 hat, 15 earring; 0 background, 16-18 neck/cloth
  if (p.kind === 'parsenet') return { hair: PARSENET_HAIR, head: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] };
  // face-parsing.PyTorch order: 1-13 face parts, 17 hair, 18 hat; 14-16 neck/cloth
  return { hair: BISENET_HAIR, head: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18] };
}

/** The side the parser runs at for an S x S image: 512 at S = 1024 (HairCLIP's shrink), S itself when smaller. */
export function parserSize(p: FaceParser, S: number): number {
  const m = p.kind === 'parsenet' ? 16 : 32;
  const s = Math.min(512, S);
  return Math.max(m, Math.floor(s / m) * m);
}

/** image [B, 3, S, S] in [-1, 1] -> argmax labels [B, P, P] (int32). */
export function parseGraph(p: FaceParser, batch: number, S: number, g = new G.Graph('parser')): Record<string, Tensor> {
  const img = g.input('image', [batch, 3, S, S]);
  const P = parserSize(p, S);
  const logits = p.kind === 'parsenet'
    ? unetForward(p.net, parserInput(img, P))
    : bisenetLogits(p.net, bisenetInput(img, { range: 'signed', size: P }));
  return { labels: G.cast(G.argmax(logits, 1), 'int32') };
}

/** Condition embeddings of one edit, [1, E] each (HairCLIP: hair and/or colour; FFCLIP: text). */
export interface ConditionEmbeddings {
  hair?: Float32Array | null;
  color?: Float32Array | null;
  text?: Float32Array | null;
}

/** The mapper's M(w) with its current parameters and the condition embeddings as constants. */
export function mapperDeltaGraph(mapper: Mapper, w: Tensor, cond: ConditionEmbeddings): Tensor {
  const g = w.graph;
  const p = mapper.params.constants(g);
  if (mapper instanceof HairClipMapper) {
    const E = mapper.config.embedWidth;
    const c = (e?: Float32Array | null) => (e ? g.constant(Float32Array.from(e), [1, E]) : null);
    if (!cond.hair && !cond.color) throw new Error('HairCLIP edit: no hairstyle and no colour condition');
    return mapper.delta(w, { hair: c(cond.hair), color: c(cond.color) }, p);
  }
  if (mapper instanceof FfclipMapper) {
    if (!cond.text) throw new Error('FFCLIP edit: no text condition');
    return mapper.delta(w, g.constant(Float32Array.from(cond.text), [1, mapper.config.embedWidth]), p);
  }
  if (mapper instanceof StyleClipMapper) return mapper.delta(w, p);
  throw new Error('unknown mapper');
}

/** One trained edit: w, alpha -> w_edit = w + alpha * M(w), and its image. */
export function editGraph(mapper: Mapper, gen: Generator, cond: ConditionEmbeddings, g = new G.Graph('edit')): Record<string, Tensor> {
  const w = g.input('w', [1, gen.nLatent, gen.config.styleDim]);
  const alpha = g.input('alpha', [1]);
  const wEdit = G.add(w, G.mul(alpha, mapperDeltaGraph(mapper, w, cond)));
  return { w_edit: wEdit, image: gen.synthesis(wEdit, gen.noiseConstants(g)) };
}
