// Training FFCLIP's DynamicMapper on free-form prompts (kristen-rang/FFCLIP Coach.py +
// train_configs.yaml; ffclip.md §4-6) as a TrainMethod on the step graph of src/train/step.ts.
//
// Per sample: a prompt drawn uniformly from the 53-entry face list (duplicates included), its
// CLIP text embedding e (raw encode_text, cached) is both the mapper's condition and the CLIP
// loss target; a batch holds B (latent, prompt) pairs.
//
//   x = G(w);  w_hat = w + M(w, e)  (no 0.1);  x_hat = G(w_hat)
//   L =  id 0.9       * mean_b (1 - <f(x_hat), f(x)>)
//      + clip 1.0     * sum_b L_clip(x_hat_b, e_b)          (summed over the batch, not averaged)
//      + latent 1.6   * mean |w_hat - w|
//      + embd 1.0     * mean |E_I(bicubic_ac(x_hat)) - E_I(bicubic_ac(x))|
//      + bg 2.0       * MSE(x * m, x_hat * m)
// Adam lr 5e-4 (eps 1e-8, no decay), gradients clipped to norm 5, MultiStepLR gamma 0.5 at
// [0.5, 0.75, 0.9, 0.95] of the run (the official epochs [10, 15, 18, 19] of 20), batch 8.
// The per-category CLIP weights the official calc_loss refers to (age_lambda, emotion_lambda)
// are undefined in the released code; every prompt gets clip_lambda (ffclip.md §2, §5.2).
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import type { Rng } from './rng.ts';
import type { StepResult, TrainMethod } from './trainer.ts';
import type { ParamTensor } from './optim.ts';
import { FfclipMapper, FFCLIP_ALPHA, type FfclipConfig } from '../mappers/ffclip.ts';
import { clipTextLoss, ffclipEmbeddingLoss } from '../losses/clip.ts';
import { identityLoss } from '../losses/identity.ts';
import { latentL1 } from '../losses/latent.ts';
import { backgroundLoss } from '../losses/parsing.ts';
import { defaultParserSize, parseMasks } from '../losses/masks.ts';
import { StepCache, ForwardSession, clipGradNorm } from './step.ts';
import { TextEmbeddings } from './embed.ts';
import { checkLambdas, imageOf, synthesize, weightedTotal, type PreviewRow, type TrainNets } from './common.ts';
import { FFCLIP_PROMPTS, type LatentRef, type LatentSource } from './data.ts';

export interface FfclipLambdas { id: number; clip: number; latent: number; embedding: number; background: number }
export const FFCLIP_LAMBDAS: FfclipLambdas = { id: 0.9, clip: 1.0, latent: 1.6, embedding: 1.0, background: 2.0 };
export const FFCLIP_DEFAULTS = { lr: 0.0005, optimizer: 'adam' as const, batch: 8, epochs: 20, gradClip: 5, milestones: [0.5, 0.75, 0.9, 0.95], gamma: 0.5 };

export interface FfclipTrainOptions {
  prompts?: readonly string[];
  batch?: number;
  lambdas?: Partial<FfclipLambdas>;
  mapper?: Partial<FfclipConfig>;
  initSeed?: number;
  /** clip_grad_norm_ max norm (0: off) */
  gradClip?: number;
  /** MultiStepLR milestones as fractions of the run, and its gamma */
  milestones?: number[];
  gamma?: number;
  parserSize?: number;
}

export interface FfclipSample { latents: LatentRef; prompts: string[] }

export const FFCLIP_TERMS = ['loss_id', 'loss_clip', 'loss_latent', 'loss_l1_embd', 'loss_background'] as const;

export class FfclipTrainer implements TrainMethod<FfclipSample> {
  readonly name = 'ffclip';
  readonly mapper: FfclipMapper;
  readonly batch: number;
  readonly prompts: readonly string[];
  readonly lambdas: FfclipLambdas;
  readonly opts: Record<string, unknown>;
  readonly parserSize: number;
  readonly gradClip: number;
  readonly milestones: number[];
  readonly gamma: number;
  /** gradient norm of the last step, before clipping */
  lastGradNorm = 0;
  private steps: StepCache;
  private text: TextEmbeddings;
  private previews = new Map<number, Promise<ForwardSession>>();

  constructor(readonly nets: TrainNets, readonly latents: LatentSource, readonly o: FfclipTrainOptions = {}) {
    this.lambdas = { ...FFCLIP_LAMBDAS, ...o.lambdas };
    checkLambdas({ ...this.lambdas });
    const l = this.lambdas;
    if (l.id > 0 && !nets.arcface) throw new Error('FFCLIP: the identity loss needs ArcFace IR-SE50 weights (--arcface), or set its lambda to 0');
    if (l.background > 0 && !nets.parser) throw new Error('FFCLIP: the background loss needs the face parser (--parser), or set its lambda to 0');
    const gen = nets.generator;
    this.batch = o.batch ?? FFCLIP_DEFAULTS.batch;
    this.prompts = o.prompts ?? FFCLIP_PROMPTS;
    if (!this.prompts.length) throw new Error('FFCLIP: no training prompts');
    this.parserSize = o.parserSize ?? defaultParserSize(gen.config.size);
    this.gradClip = o.gradClip ?? FFCLIP_DEFAULTS.gradClip;
    this.milestones = o.milestones ?? FFCLIP_DEFAULTS.milestones;
    this.gamma = o.gamma ?? FFCLIP_DEFAULTS.gamma;
    this.mapper = FfclipMapper.create({ width: gen.config.styleDim, layers: gen.nLatent, ...o.mapper }, o.initSeed ?? 0);
    if (this.mapper.config.embedWidth !== nets.clip.config.embedDim) {
      throw new Error(`FFCLIP: the mapper takes ${this.mapper.config.embedWidth}-d text embeddings (= w's width), CLIP gives ${nets.clip.config.embedDim}`);
    }
    this.opts = {
      batch_size: this.batch, stylegan_size: gen.config.size, id_lambda: l.id, clip_lambda: l.clip, latent_lambda: l.latent,
      embd_lambda: l.embedding, bgloss_lambda: l.background, grad_clip: this.gradClip, milestones: this.milestones, gamma: this.gamma,
      prompts: [...this.prompts],
    };
    this.steps = new StepCache(this.mapper.params);
    this.text = new TextEmbeddings(nets.clip);
  }

  get params(): ParamTensor[] { return this.mapper.params.list; }

  sample(rng: Rng): FfclipSample {
    const latents = this.latents.draw(rng, this.batch);
    return { latents, prompts: Array.from({ length: this.batch }, () => rng.choice(this.prompts)) };
  }
  describe(s: FfclipSample): string { return s.prompts.join('|'); }

  /** MultiStepLR: lr * gamma^(milestones passed) at this step of `total`. */
  lrScale(step: number, total: number): number {
    let k = 0;
    for (const m of this.milestones) if (step >= Math.round(m * total)) k++;
    return this.gamma ** k;
  }

  private lw(): Float32Array {
    const l = this.lambdas;
    return Float32Array.from([l.id, l.clip, l.latent, l.embedding, l.background]);
  }

  private session() {
    const { generator: gen, clip, arcface, parser } = this.nets;
    const B = this.batch; const L = gen.nLatent; const D = gen.config.styleDim; const E = clip.config.embedDim;
    const l = this.lambdas;
    return this.steps.get('main', () => ({
      name: `ffclip-step-b${B}`,
      inputs: [{ name: 'w', shape: [B, L, D] }, { name: 'e', shape: [B, E] }, { name: 'lambdas', shape: [FFCLIP_TERMS.length] }],
      build: (g, x, p) => {
        const w = x.w;
        const wHat = G.add(w, FFCLIP_ALPHA === 1 ? this.mapper.delta(w, x.e, p) : G.mul(this.mapper.delta(w, x.e, p), FFCLIP_ALPHA));
        const img = synthesize(gen, w);
        const imgHat = synthesize(gen, wHat);
        const cp = clip.params(g);
        const t: Record<string, Tensor> = {};
        if (l.id > 0) t.loss_id = identityLoss(arcface!, imgHat, img);
        if (l.clip > 0) t.loss_clip = clipTextLoss(clip, cp, imgHat, x.e, 'sum');
        if (l.latent > 0) t.loss_latent = latentL1(wHat, w);
        if (l.embedding > 0) t.loss_l1_embd = ffclipEmbeddingLoss(clip, cp, imgHat, img);
        if (l.background > 0) {
          const m = parseMasks(parser!, img, this.parserSize);
          const mHat = parseMasks(parser!, imgHat, this.parserSize);
          t.loss_background = backgroundLoss(img, imgHat, m.bg, mHat.bg);
        }
        return { ...t, loss: weightedTotal(t, x.lambdas, FFCLIP_TERMS) };
      },
    }));
  }

  async step(s: FfclipSample): Promise<StepResult> {
    const [session, w, e] = await Promise.all([this.session(), this.latents.resolve(s.latents), this.text.batch(s.prompts)]);
    const r = await session.run({ w, e, lambdas: this.lw() });
    if (this.gradClip > 0) this.lastGradNorm = clipGradNorm(r.grads, this.gradClip);
    return r;
  }

  async preview(samples: FfclipSample[], maxRows = 4): Promise<PreviewRow[]> {
    const gen = this.nets.generator;
    const rows: PreviewRow[] = [];
    for (const s of samples) {
      if (rows.length >= maxRows) break;
      const B = s.prompts.length;
      let ps = this.previews.get(B);
      if (!ps) {
        ps = ForwardSession.create(this.mapper.params, `ffclip-preview-b${B}`, [
          { name: 'w', shape: [B, gen.nLatent, gen.config.styleDim] }, { name: 'e', shape: [B, this.nets.clip.config.embedDim] },
        ], (_g, x, p) => ({ x: synthesize(gen, x.w), xHat: synthesize(gen, G.add(x.w, this.mapper.delta(x.w, x.e, p))) }));
        this.previews.set(B, ps);
      }
      const out = await (await ps).run({ w: await this.latents.resolve(s.latents), e: await this.text.batch(s.prompts) });
      for (let b = 0; b < B && rows.length < maxRows; b++) {
        rows.push({ label: s.prompts[b], images: [imageOf(out.x.data as Float32Array, out.x.shape, b), imageOf(out.xHat.data as Float32Array, out.xHat.shape, b)] });
      }
    }
    return rows;
  }
}
