// Training HairCLIP (wty-ustc/HairCLIP mapper/training/coach.py; hairclip.md §6-7) as a
// TrainMethod on the step graph of src/train/step.ts. Batch 1, as the official code enforces.
//
// Per sample (src/train/data.ts hairSampler): a hairstyle condition (text or reference image) or
// none, a colour condition (text, in-domain or real reference image) or none. Their CLIP
// embeddings e_s, e_c (text: encode_text; image: encode_image of the hair-masked reference) are
// inputs of the step graph; an absent condition takes the mapper's cut path, which changes the
// graph, so there is one step session per (hairstyle present, colour present): at most 4,
// compiled when first needed.
//
//   x = G(w);  w_hat = w + 0.1 * M(w, e_s, e_c);  x_hat = G(w_hat)
//   L =  id 0.3             * L_id(x_hat, x)                                   always
//      + text 2.0           * L_clip(x_hat, e_s)                  hairstyle text
//      + text 2.0           * L_clip(x_hat, e_c)                  colour text
//      + si 5.0 * img 1.0   * (1 - cos(E_I(x_hat * P_h(x_hat)), e_s))      hairstyle image
//      + ci 0.02 * img 1.0  * L1(avgLab(x_hat | P_h), avgLab(r_c | P_h))    colour image
//      + mc 0.02 * attr 1.0 * L1(avgLab(x_hat | P_h), avgLab(x | P_h))      hairstyle edited, no colour
//      + bg 1.0 * attr 1.0  * MSE(x * m, x_hat * m),  m = not hair in both  always
//      + l2 0.8 * attr 1.0  * MSE(w_hat, w)                                 always
// Which of those apply to a sample is a weight vector fed with the sample (0 = skipped); terms
// whose lambda is 0 for the whole run are not built at all. The text condition's embedding is
// also the CLIP loss target, and the hairstyle image's embedding is also the target of the image
// loss (the official code encodes the same masked reference for both).
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { Rng } from './rng.ts';
import type { StepResult, TrainMethod } from './trainer.ts';
import type { ParamTensor } from './optim.ts';
import { HairClipMapper, HAIRCLIP_ALPHA, type HairClipConfig } from '../mappers/hairclip.ts';
import { clipLossFeatures, clipTextLossFromFeatures, imageEmbeddingLoss } from '../losses/clip.ts';
import { identityLoss } from '../losses/identity.ts';
import { latentL2 } from '../losses/latent.ts';
import { imageToLab, maskedAverage } from '../losses/color.ts';
import { backgroundLoss } from '../losses/parsing.ts';
import { defaultParserSize, parseMasks } from '../losses/masks.ts';
import { StepCache, ForwardSession } from './step.ts';
import { ReferenceEncoder, TextEmbeddings } from './embed.ts';
import { checkLambdas, imageOf, synthesize, weightedTotal, type PreviewRow, type TrainNets } from './common.ts';
import {
  HAIR_COLORS, HAIR_SAMPLING_DEFAULTS, HAIRSTYLES, colorPrompt, hairSampler, hairstylePrompt,
  type HairCondition, type HairReferences, type HairSample, type HairSampler, type HairSamplingOptions, type LatentRef, type LatentSource,
} from './data.ts';

/** train_options.py defaults (the group multipliers image/attribute folded in at use). */
export interface HairClipLambdas {
  text: number; image: number; attribute: number;
  imageHairstyle: number; imageColor: number; id: number; maintainColor: number; background: number; latentL2: number;
}
export const HAIRCLIP_LAMBDAS: HairClipLambdas = {
  text: 2.0, image: 1.0, attribute: 1.0, imageHairstyle: 5.0, imageColor: 0.02, id: 0.3, maintainColor: 0.02, background: 1.0, latentL2: 0.8,
};
export const HAIRCLIP_DEFAULTS = { lr: 0.0005, optimizer: 'ranger' as const, batch: 1, steps: 500000 };

export interface HairClipTrainOptions {
  lambdas?: Partial<HairClipLambdas>;
  sampling?: Partial<HairSamplingOptions>;
  hairstyles?: readonly string[];
  colors?: readonly string[];
  references?: Partial<HairReferences>;
  mapper?: Partial<HairClipConfig>;
  initSeed?: number;
  /** parser input size (default: half the generator size, 512 at 1024 as official) */
  parserSize?: number;
  /** warnings about folded sampling branches (default: console.warn) */
  warn?: (msg: string) => void;
}

export interface HairClipSample extends HairSample { latents: LatentRef }

/** Loss terms in the order of the weight vector (the official logged keys). */
export const HAIRCLIP_TERMS = [
  'loss_id', 'loss_text_hairstyle', 'loss_text_color', 'loss_img_hairstyle', 'loss_img_color',
  'loss_maintain_color_for_hairstyle', 'loss_background', 'loss_l2_latent',
] as const;
type Term = typeof HAIRCLIP_TERMS[number];

export class HairClipTrainer implements TrainMethod<HairClipSample> {
  readonly name = 'hairclip';
  readonly mapper: HairClipMapper;
  readonly lambdas: HairClipLambdas;
  readonly sampler: HairSampler;
  readonly opts: Record<string, unknown>;
  readonly parserSize: number;
  private steps: StepCache;
  private text: TextEmbeddings;
  private refs: ReferenceEncoder | null;
  private previews = new Map<string, Promise<ForwardSession>>();

  constructor(readonly nets: TrainNets, readonly latents: LatentSource, readonly o: HairClipTrainOptions = {}) {
    this.lambdas = { ...HAIRCLIP_LAMBDAS, ...o.lambdas };
    checkLambdas({ ...this.lambdas });
    const l = this.lambdas;
    const gen = nets.generator;
    if (gen.nLatent <= 8) throw new Error(`HairCLIP splits w+ at rows 4 and 8; the generator has only ${gen.nLatent} rows`);
    if (l.id * l.attribute > 0 && !nets.arcface) throw new Error('HairCLIP: the identity loss needs ArcFace IR-SE50 weights (--arcface), or set its lambda to 0');
    const refs: HairReferences = { hairstyle: o.references?.hairstyle ?? [], color: o.references?.color ?? [], colorInDomain: o.references?.colorInDomain ?? null };
    const anyRefs = refs.hairstyle.length + refs.color.length > 0 || refs.colorInDomain !== null;
    if (!nets.parser && (this.needsParser() || anyRefs)) {
      throw new Error('HairCLIP: the background, colour and reference losses need the face parser (--parser), or set their lambdas to 0 and give no reference images');
    }
    this.parserSize = o.parserSize ?? defaultParserSize(gen.config.size);
    const hairstyles = o.hairstyles ?? HAIRSTYLES;
    const colors = o.colors ?? HAIR_COLORS;
    this.sampler = hairSampler({ ...HAIR_SAMPLING_DEFAULTS, ...o.sampling }, refs, hairstyles, colors);
    for (const w of this.sampler.warnings) (o.warn ?? ((m: string) => console.warn(`warning: ${m}`)))(w);
    this.mapper = HairClipMapper.create({ width: gen.config.styleDim, embedWidth: nets.clip.config.embedDim, ...o.mapper }, o.initSeed ?? 0);
    if (this.mapper.config.embedWidth !== nets.clip.config.embedDim) throw new Error(`HairCLIP: mapper takes ${this.mapper.config.embedWidth}-d embeddings, CLIP gives ${nets.clip.config.embedDim}`);
    const s = this.sampler.options;
    this.opts = {
      ...this.mapper.opts, batch_size: 1, stylegan_size: gen.config.size,
      text_manipulation_lambda: l.text, image_manipulation_lambda: l.image, attribute_preservation_lambda: l.attribute,
      image_hairstyle_lambda: l.imageHairstyle, image_color_lambda: l.imageColor, id_lambda: l.id,
      maintain_color_lambda: l.maintainColor, background_lambda: l.background, latent_l2_lambda: l.latentL2,
      hairstyle_manipulation_prob: s.hairstyleProb, color_manipulation_prob: s.colorProb, both_manipulation_prob: s.bothProb,
      hairstyle_text_manipulation_prob: s.hairstyleTextProb, color_text_manipulation_prob: s.colorTextProb,
      color_in_domain_ref_manipulation_prob: s.colorInDomainRefProb,
      hairstyle_description: hairstyles.map(hairstylePrompt).join('\n'), color_description: colors.join(','),
    };
    this.steps = new StepCache(this.mapper.params);
    this.text = new TextEmbeddings(nets.clip);
    this.refs = nets.parser ? new ReferenceEncoder(nets.clip, nets.parser, gen.config.size, this.parserSize) : null;
  }

  private needsParser(): boolean {
    const l = this.lambdas;
    return l.background * l.attribute > 0 || l.maintainColor * l.attribute > 0 || l.imageColor * l.image > 0 || l.imageHairstyle * l.image > 0;
  }

  get params(): ParamTensor[] { return this.mapper.params.list; }

  sample(rng: Rng): HairClipSample {
    const latents = this.latents.draw(rng, 1);
    return { latents, ...this.sampler.sample(rng) };
  }
  describe(s: HairClipSample): string { return this.sampler.describe(s); }

  /** The per-sample weights of HAIRCLIP_TERMS (0 = this sample does not use the term). */
  weights(s: HairSample): Float32Array {
    const l = this.lambdas;
    const hs = s.hairstyle; const c = s.color;
    const w: Record<Term, number> = {
      loss_id: l.id * l.attribute,
      loss_text_hairstyle: hs?.kind === 'text' ? l.text : 0,
      loss_text_color: c?.kind === 'text' ? l.text : 0,
      loss_img_hairstyle: hs?.kind === 'image' ? l.imageHairstyle * l.image : 0,
      loss_img_color: c?.kind === 'image' ? l.imageColor * l.image : 0,
      loss_maintain_color_for_hairstyle: hs && !c ? l.maintainColor * l.attribute : 0,
      loss_background: l.background * l.attribute,
      loss_l2_latent: l.latentL2 * l.attribute,
    };
    return Float32Array.from(HAIRCLIP_TERMS.map((t) => w[t]));
  }

  private session(hair: boolean, color: boolean) {
    const { generator: gen, clip, arcface, parser } = this.nets;
    const L = gen.nLatent; const D = gen.config.styleDim; const E = clip.config.embedDim;
    const l = this.lambdas;
    const key = `${hair ? 'h' : '-'}${color ? 'c' : '-'}`;
    return this.steps.get(key, () => ({
      name: `hairclip-step-${key}`,
      inputs: [
        { name: 'w', shape: [1, L, D] },
        ...(hair ? [{ name: 'e_hair', shape: [1, E] }] : []),
        ...(color ? [{ name: 'e_color', shape: [1, E] }, { name: 'lab_color_ref', shape: [1, 3] }] : []),
        { name: 'lambdas', shape: [HAIRCLIP_TERMS.length] },
      ],
      build: (g, x, p) => {
        const w = x.w;
        const delta = this.mapper.delta(w, { hair: x.e_hair ?? null, color: x.e_color ?? null }, p);
        const wHat = G.add(w, G.mul(delta, HAIRCLIP_ALPHA));
        const img = synthesize(gen, w);
        const imgHat = synthesize(gen, wHat);
        const cp = clip.params(g);
        const t: Partial<Record<Term, Tensor>> = {};
        if (l.id * l.attribute > 0) t.loss_id = identityLoss(arcface!, imgHat, img);
        // one CLIP pass of x_hat serves both text losses
        if ((hair || color) && l.text > 0) {
          const f = clipLossFeatures(clip, cp, imgHat);
          if (hair) t.loss_text_hairstyle = G.reduceMean(clipTextLossFromFeatures(cp, f, x.e_hair));
          if (color) t.loss_text_color = G.reduceMean(clipTextLossFromFeatures(cp, f, x.e_color));
        }
        const wantImgHair = hair && l.imageHairstyle * l.image > 0;
        const wantImgColor = color && l.imageColor * l.image > 0;
        const wantMaintain = hair && !color && l.maintainColor * l.attribute > 0;
        const wantBg = l.background * l.attribute > 0;
        if (wantImgHair || wantImgColor || wantMaintain || wantBg) {
          const mHat = parseMasks(parser!, imgHat, this.parserSize);
          if (wantImgHair) t.loss_img_hairstyle = imageEmbeddingLoss(clip, cp, G.mul(imgHat, mHat.hair), x.e_hair);
          const avgHat = (wantImgColor || wantMaintain) ? G.reshape(maskedAverage(imageToLab(imgHat), mHat.hair), [1, 3]) : null;
          if (wantImgColor) t.loss_img_color = G.reduceMean(G.abs(G.sub(G.detach(x.lab_color_ref), avgHat!)));
          const m = (wantMaintain || wantBg) ? parseMasks(parser!, img, this.parserSize) : null;
          if (wantMaintain) {
            const avg = G.detach(G.reshape(maskedAverage(imageToLab(img), m!.hair), [1, 3]));
            t.loss_maintain_color_for_hairstyle = G.reduceMean(G.abs(G.sub(avg, avgHat!)));
          }
          if (wantBg) t.loss_background = backgroundLoss(img, imgHat, m!.bg, mHat.bg);
        }
        if (l.latentL2 * l.attribute > 0) t.loss_l2_latent = latentL2(wHat, w);
        const terms = t as Record<string, Tensor>;
        return { ...terms, loss: weightedTotal(terms, x.lambdas, HAIRCLIP_TERMS) };
      },
    }));
  }

  /** The embedding of a condition: text -> encode_text, image -> hair-masked reference features. */
  private async embed(c: HairCondition, what: 'hairstyle' | 'color'): Promise<{ e: Float32Array; lab: Float32Array | null }> {
    if (c.kind === 'text') return { e: await this.text.get(what === 'hairstyle' ? hairstylePrompt(c.name) : colorPrompt(c.name)), lab: null };
    if (!this.refs) throw new Error('HairCLIP: reference images need the face parser');
    const r = await this.refs.encode(c.path);
    return { e: r.embedding, lab: r.avgLab };
  }

  async step(s: HairClipSample): Promise<StepResult> {
    const hair = s.hairstyle !== null; const color = s.color !== null;
    const [session, w] = await Promise.all([this.session(hair, color), this.latents.resolve(s.latents)]);
    const feeds: Record<string, Float32Array> = { w, lambdas: this.weights(s) };
    if (s.hairstyle) feeds.e_hair = (await this.embed(s.hairstyle, 'hairstyle')).e;
    if (s.color) {
      const c = await this.embed(s.color, 'color');
      feeds.e_color = c.e;
      feeds.lab_color_ref = c.lab ?? new Float32Array(3);
    }
    const r = await session.run(feeds);
    // log the terms this sample uses (the official loss dict holds only those), and the total
    const lw = feeds.lambdas;
    const losses: Record<string, number> = {};
    HAIRCLIP_TERMS.forEach((t, k) => { if (lw[k] > 0 && r.losses[t] !== undefined) losses[t] = r.losses[t]; });
    losses.loss = r.losses.loss;
    return { losses, grads: r.grads };
  }

  /** [source, edited, reference image(s)] per sample. */
  async preview(samples: HairClipSample[], maxRows = 4): Promise<PreviewRow[]> {
    const gen = this.nets.generator;
    const rows: PreviewRow[] = [];
    for (const s of samples.slice(0, maxRows)) {
      const hair = s.hairstyle !== null; const color = s.color !== null;
      const key = `${hair ? 'h' : '-'}${color ? 'c' : '-'}`;
      let ps = this.previews.get(key);
      if (!ps) {
        const E = this.nets.clip.config.embedDim;
        ps = ForwardSession.create(this.mapper.params, `hairclip-preview-${key}`, [
          { name: 'w', shape: [1, gen.nLatent, gen.config.styleDim] },
          ...(hair ? [{ name: 'e_hair', shape: [1, E] }] : []),
          ...(color ? [{ name: 'e_color', shape: [1, E] }] : []),
        ], (_g, x, p) => ({
          x: synthesize(gen, x.w),
          xHat: synthesize(gen, G.add(x.w, G.mul(this.mapper.delta(x.w, { hair: x.e_hair ?? null, color: x.e_color ?? null }, p), HAIRCLIP_ALPHA))),
        }));
        this.previews.set(key, ps);
      }
      const feeds: Record<string, Float32Array> = { w: await this.latents.resolve(s.latents) };
      if (s.hairstyle) feeds.e_hair = (await this.embed(s.hairstyle, 'hairstyle')).e;
      if (s.color) feeds.e_color = (await this.embed(s.color, 'color')).e;
      const out = await (await ps).run(feeds);
      const images = [imageOf(out.x.data as Float32Array, out.x.shape, 0), imageOf(out.xHat.data as Float32Array, out.xHat.shape, 0)];
      for (const c of [s.hairstyle, s.color]) {
        if (c?.kind === 'image' && this.refs) images.push({ data: await this.refs.image(c.path), shape: [1, 3, gen.config.size, gen.config.size] });
      }
      rows.push({ label: this.describe(s), images });
    }
    return rows;
  }
}
