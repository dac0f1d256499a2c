// Condition embeddings and loss targets computed outside the step graph, with forward sessions
// (no gradient), as the official code computes them under no_grad / detach:
//
//   TextEmbeddings     CLIP encode_text(clip.tokenize(prompt)), raw (no L2 normalisation), one
//                      forward per prompt, cached: the text condition of HairCLIP / FFCLIP, and
//                      the target of every CLIP text loss.
//   ReferenceEncoder   a reference image (decoded, resized to the generator's size):
//                        mask      = hairmask(ref)                         (parser, class 13)
//                        embedding = encode_image(embedding preprocessing of ref * mask)
//                                    — HairCLIP's image condition (§3.4) and the target of its
//                                    reference-hairstyle loss (§6.3): the same tensor;
//                        avgLab    = average Lab colour over the hair mask (§6.4), the target of
//                                    its reference-colour loss;
//                      cached per file.
// The official references are 1024^2 CelebA-HQ images with no resize; here any image is resized
// (Lanczos, sharp) to the generator's resolution so a smaller test generator can use them too.
import * as G from '../graph/index.ts';
import { compile, type Compiled } from '../runtime/session.ts';
import type { ClipModel } from '../nets/clip/clip.ts';
import { tokenize } from '../nets/clip/tokenizer.ts';
import type { UnetNet } from '../nets/parsenet/unet.ts';
import { decodeImage } from '../io/image.ts';
import { embeddingFeatures } from '../losses/clip.ts';
import { imageToLab, maskedAverage } from '../losses/color.ts';
import { defaultParserSize, parseMasks } from '../losses/masks.ts';

export class TextEmbeddings {
  private cache = new Map<string, Promise<Float32Array>>();
  constructor(readonly clip: ClipModel) {}
  get width(): number { return this.clip.config.embedDim; }

  /** encode_text of one prompt, [E] (cached). */
  get(prompt: string): Promise<Float32Array> {
    let e = this.cache.get(prompt);
    if (!e) {
      e = (async () => {
        const ids = tokenize([prompt], this.clip.config.contextLength, true).data;
        return Float32Array.from((await this.clip.encodeText(ids)).data as Float32Array);
      })();
      this.cache.set(prompt, e);
      e.catch(() => this.cache.delete(prompt));
    }
    return e;
  }

  /** A [B, E] batch, one prompt per row. */
  async batch(prompts: readonly string[]): Promise<Float32Array> {
    const E = this.width;
    const out = new Float32Array(prompts.length * E);
    for (let i = 0; i < prompts.length; i++) out.set(await this.get(prompts[i]), i * E);
    return out;
  }
}

export interface ReferenceCode {
  /** CLIP features of the hair-masked reference, [E] */
  embedding: Float32Array;
  /** average Lab over its hair mask, [3] (0 when no hair is found) */
  avgLab: Float32Array;
  /** fraction of pixels labelled hair */
  hairFraction: number;
}

export class ReferenceEncoder {
  private session: Promise<Compiled> | null = null;
  private cache = new Map<string, Promise<ReferenceCode>>();
  constructor(readonly clip: ClipModel, readonly parser: UnetNet, readonly size: number, readonly parserSize = defaultParserSize(size)) {}

  private compiled(): Promise<Compiled> {
    return (this.session ??= (async () => {
      const g = new G.Graph('reference-encoder');
      const img = g.input('image', [1, 3, this.size, this.size]);
      const { hair } = parseMasks(this.parser, img, this.parserSize);
      const p = this.clip.params(g);
      const embedding = embeddingFeatures(this.clip, p, G.mul(img, hair));
      const avgLab = maskedAverage(imageToLab(img), hair);
      const hairFraction = G.reduceMean(hair);
      return compile({ embedding, avgLab, hairFraction }, { name: 'reference-encoder' });
    })());
  }

  /** The reference's image as the generator's size, [1, 3, S, S] in [-1, 1]. */
  async image(path: string): Promise<Float32Array> {
    return (await decodeImage(path, { size: this.size })).data as Float32Array;
  }

  encode(path: string): Promise<ReferenceCode> {
    let r = this.cache.get(path);
    if (!r) {
      r = (async () => {
        const c = await this.compiled();
        const out = await c.run({ image: await this.image(path) });
        return {
          embedding: Float32Array.from(out.embedding.data as Float32Array),
          avgLab: Float32Array.from(out.avgLab.data as Float32Array),
          hairFraction: (out.hairFraction.data as Float32Array)[0],
        };
      })();
      this.cache.set(path, r);
      r.catch(() => this.cache.delete(path));
    }
    return r;
  }
}
