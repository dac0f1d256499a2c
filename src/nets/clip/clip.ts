// ClipModel: loaded CLIP weights plus compiled sessions for the common uses — encode images and
// token ids, compare them, and the image VJP the training losses chain through.
//
// Sessions are built per batch size (shapes are static) and cached; weights are constants inside
// them. The graph builders of model.ts stay available through `params(g)` for callers that fuse
// CLIP into a bigger graph (e.g. a loss with its preprocessing).
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import type { TensorData } from '../../io/tensor.ts';
import { compile, type Compiled, type HostTensor } from '../../runtime/session.ts';
import { makeVjpPair, type Feed, type VjpPair } from '../../runtime/vjp.ts';
import { bindParams, clipLogits, encodeImage, encodeText, type ClipConfig, type Params, type Taps, type Weight } from './model.ts';
import { clipLossResize, embeddingResize } from './preprocess.ts';
import { tokenize, type SimpleTokenizer } from './tokenizer.ts';
import { clipWeightsFromStateDict, loadClipWeights, type ClipLoadOptions, type ClipWeights } from './weights.ts';

/** How pixels reach the ViT in an image session. */
export type ImagePreprocess =
  /** already CLIP-ready: [N, 3, R, R], normalised */
  | 'none'
  /** HairCLIP/StyleCLIP CLIPLoss: [N, 3, S, S] in [-1, 1] -> Upsample(7) + AvgPool(S/32), no mean/std */
  | 'clip-loss'
  /** the same resize, then Normalize(mean, std)(x * 0.5 + 0.5) (HairCLIPv2's corrected CLIPLoss) */
  | 'clip-loss-normalized'
  /** HairCLIP image embedding: [N, 3, S, S] in [-1, 1] -> AdaptiveAvgPool(224) -> Normalize(x*0.5+0.5) */
  | 'embedding';

export type TokenIds = Int32Array | BigInt64Array | HostTensor | readonly (readonly number[])[];

export class ClipModel {
  private sessions = new Map<string, Promise<Compiled>>();
  private pairs = new Map<string, VjpPair>();

  constructor(readonly config: ClipConfig, readonly weights: ReadonlyMap<string, Weight>) {}

  /** From a file (TorchScript archive, state dict, safetensors; OpenAI or Hugging Face keys). */
  static load(source: string | Uint8Array, opts: ClipLoadOptions = {}): ClipModel {
    return ClipModel.from(loadClipWeights(source, opts));
  }

  static fromStateDict(state: ReadonlyMap<string, TensorData>, opts: ClipLoadOptions = {}): ClipModel {
    return ClipModel.from(clipWeightsFromStateDict(state, opts));
  }

  static from(w: ClipWeights): ClipModel { return new ClipModel(w.config, w.weights); }

  // ---- graph builders bound to these weights ----

  /** Weights of this model in graph `g` (constants; `inputs` keys become graph inputs). */
  params(g: G.Graph, opts: { inputs?: Iterable<string> } = {}): Params {
    return bindParams(g, this.weights, opts);
  }

  encodeImageGraph(image: Tensor, taps?: Taps, p: Params = this.params(image.graph)): Tensor {
    return encodeImage(p, this.config, image, taps);
  }

  encodeTextGraph(tokens: Tensor, taps?: Taps, p: Params = this.params(tokens.graph)): Tensor {
    return encodeText(p, this.config, tokens, taps);
  }

  /** Pixels as `preprocess` describes them -> CLIP image features. */
  imageFeaturesGraph(x: Tensor, preprocess: ImagePreprocess, p: Params = this.params(x.graph)): Tensor {
    const img = preprocess === 'clip-loss' ? clipLossResize(x)
      : preprocess === 'clip-loss-normalized' ? clipLossResize(x, { normalize: true })
        : preprocess === 'embedding' ? embeddingResize(x, this.config.imageResolution) : x;
    return encodeImage(p, this.config, img);
  }

  logitsGraph(imageFeatures: Tensor, textFeatures: Tensor, p: Params = this.params(imageFeatures.graph)) {
    return clipLogits(p, imageFeatures, textFeatures);
  }

  // ---- compiled helpers ----

  private session(key: string, build: (g: G.Graph) => Record<string, Tensor>): Promise<Compiled> {
    let s = this.sessions.get(key);
    if (!s) {
      const g = new G.Graph(`clip-${key}`);
      s = compile(build(g), { name: `clip-${key}` });
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  private batchOf(data: Feed, perItem: number, what: string, shape?: readonly number[]): number {
    const n = (ArrayBuffer.isView(data) ? data : data.data).length;
    if (n === 0 || n % perItem !== 0) throw new Error(`ClipModel.${what}: ${n} values is not a whole number of items of ${perItem}`);
    if (shape && shape.reduce((a, b) => a * b, 1) !== n) throw new Error(`ClipModel.${what}: shape [${shape}] does not match ${n} values`);
    return n / perItem;
  }

  /** Pixels [N, 3, S, S] (see ImagePreprocess; S = image resolution for 'none') -> features [N, embed_dim]. */
  async encodeImage(pixels: Feed, opts: { preprocess?: ImagePreprocess; size?: number } = {}): Promise<HostTensor> {
    const pre = opts.preprocess ?? 'none';
    const S = opts.size ?? (ArrayBuffer.isView(pixels) ? this.config.imageResolution : pixels.shape[pixels.shape.length - 1]);
    const N = this.batchOf(pixels, 3 * S * S, 'encodeImage', ArrayBuffer.isView(pixels) ? undefined : pixels.shape);
    const c = await this.session(`image-${pre}-${N}x${S}`, (g) => ({ features: this.imageFeaturesGraph(g.input('image', [N, 3, S, S]), pre) }));
    return (await c.run({ image: pixels })).features;
  }

  /** Token ids [N, context_length] (clip.tokenize's rows) -> features [N, embed_dim]. */
  async encodeText(ids: TokenIds): Promise<HostTensor> {
    const tokens = this.tokenFeed(ids);
    const N = tokens.length / this.config.contextLength;
    const c = await this.session(`text-${N}`, (g) => ({ features: this.encodeTextGraph(g.input('tokens', [N, this.config.contextLength], 'int32')) }));
    return (await c.run({ tokens })).features;
  }

  /** clip.tokenize(texts) (official vocabulary unless `tokenizer` is given), then encode_text. */
  async encodeTexts(texts: string | readonly string[], opts: { truncate?: boolean; tokenizer?: SimpleTokenizer } = {}): Promise<HostTensor> {
    return this.encodeText(tokenize(texts, this.config.contextLength, opts.truncate ?? false, { tokenizer: opts.tokenizer }).data);
  }

  /** CLIP.forward: logits_per_image [Ni, Nt] and logits_per_text [Nt, Ni] for normalised pixels and token ids. */
  async logits(pixels: Feed, ids: TokenIds): Promise<{ logitsPerImage: HostTensor; logitsPerText: HostTensor }> {
    const R = this.config.imageResolution;
    const Ni = this.batchOf(pixels, 3 * R * R, 'logits');
    const tokens = this.tokenFeed(ids);
    const Nt = tokens.length / this.config.contextLength;
    const c = await this.session(`logits-${Ni}-${Nt}`, (g) => {
      const p = this.params(g);
      const img = this.encodeImageGraph(g.input('image', [Ni, 3, R, R]), undefined, p);
      const txt = this.encodeTextGraph(g.input('tokens', [Nt, this.config.contextLength], 'int32'), undefined, p);
      const { logitsPerImage, logitsPerText } = this.logitsGraph(img, txt, p);
      return { logitsPerImage, logitsPerText };
    });
    const r = await c.run({ image: pixels, tokens });
    return { logitsPerImage: r.logitsPerImage, logitsPerText: r.logitsPerText };
  }

  /**
   * Image -> features as a forward/VJP session pair for batch `batch` (inputs [batch, 3, S, S],
   * preprocessed as `preprocess` says): `forward([x])` gives [features], `vjp([x], [gFeatures])`
   * gives [d/dx]. For the training losses, which chain cotangents through G and CLIP.
   */
  imageVjp(batch: number, opts: { preprocess?: ImagePreprocess; size?: number } = {}): VjpPair {
    const pre = opts.preprocess ?? 'none';
    const S = opts.size ?? this.config.imageResolution;
    const key = `${pre}-${batch}x${S}`;
    let pair = this.pairs.get(key);
    if (!pair) {
      pair = makeVjpPair(([x]) => [this.imageFeaturesGraph(x, pre)], [{ name: 'image', shape: [batch, 3, S, S] }], { name: `clip-image-${key}` });
      this.pairs.set(key, pair);
    }
    return pair;
  }

  /** Drop compiled sessions (their ORT memory goes once nothing else refers to them). */
  dispose(): void { this.sessions.clear(); this.pairs.clear(); }

  /** Token ids as a checked int32 array of whole rows. */
  tokenFeed(ids: TokenIds): Int32Array {
    const L = this.config.contextLength;
    let flat: Int32Array;
    if (Array.isArray(ids)) {
      flat = new Int32Array(ids.length * L);
      (ids as readonly (readonly number[])[]).forEach((row, i) => {
        if (row.length !== L) throw new Error(`ClipModel: token row ${i} has ${row.length} ids, expected ${L} (pad with zeros as clip.tokenize does)`);
        flat.set(row, i * L);
      });
    } else {
      const data = ArrayBuffer.isView(ids) ? ids : (ids as HostTensor).data;
      flat = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number | bigint>, (v) => Number(v));
    }
    if (flat.length === 0 || flat.length % L !== 0) throw new Error(`ClipModel: ${flat.length} token ids is not a whole number of rows of ${L}`);
    for (let i = 0; i < flat.length; i++) {
      if (!(flat[i] >= 0 && flat[i] < this.config.vocabSize)) throw new Error(`ClipModel: token id ${flat[i]} at row ${Math.floor(i / L)}, position ${i % L} is outside the vocabulary [0, ${this.config.vocabSize})`);
    }
    return flat;
  }
}
