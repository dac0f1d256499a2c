// Training a StyleCLIP latent mapper for one text prompt (orpatashnik/StyleCLIP mapper/training/
// coach.py; hairclip.md §10.2-10.3), as a TrainMethod on the step graph of src/train/step.ts:
//
//   w ~ latents (file or mapping network)         x = G(w)
//   w_hat = w + 0.1 * M(w)                         x_hat = G(w_hat)
//   loss = id_lambda * L_id(x_hat, x) + clip_lambda * mean_b L_clip(x_hat, t) + l2_lambda * MSE(w_hat, w)
//
// Defaults (train_options.py): clip 1.0, latent_l2 0.8, id 0.1; Ranger lr 0.5, batch 2, 50,000
// steps, LevelsMapper. t = encode_text(tokenize(prompt)), computed once. A loss weight of 0
// removes the term (and its network) from the graph, as the official `if lambda > 0`.
import * as G from '../graph/index.ts';
import type { Rng } from './rng.ts';
import type { StepResult, TrainMethod } from './trainer.ts';
import type { ParamTensor } from './optim.ts';
import { StyleClipMapper, STYLECLIP_ALPHA, type StyleClipConfig } from '../mappers/styleclip.ts';
import { clipTextLoss } from '../losses/clip.ts';
import { identityLoss } from '../losses/identity.ts';
import { latentL2 } from '../losses/latent.ts';
import { StepCache, ForwardSession } from './step.ts';
import { TextEmbeddings } from './embed.ts';
import { checkLambdas, imageOf, synthesize, weightedTotal, type PreviewRow, type TrainNets } from './common.ts';
import type { LatentRef, LatentSource } from './data.ts';

export interface StyleClipLambdas { clip: number; l2: number; id: number }
export const STYLECLIP_LAMBDAS: StyleClipLambdas = { clip: 1.0, l2: 0.8, id: 0.1 };
export const STYLECLIP_DEFAULTS = { lr: 0.5, optimizer: 'ranger' as const, batch: 2, steps: 50000 };

export interface StyleClipTrainOptions {
  prompt: string;
  batch?: number;
  lambdas?: Partial<StyleClipLambdas>;
  /** mapper architecture (default LevelsMapper, all levels, width = w's, depth 4) */
  mapper?: Partial<StyleClipConfig>;
  /** seed of the mapper's initialisation */
  initSeed?: number;
}

export interface StyleClipSample { latents: LatentRef }

const TERMS = ['loss_clip', 'loss_l2_latent', 'loss_id'] as const;

export class StyleClipTrainer implements TrainMethod<StyleClipSample> {
  readonly name = 'styleclip';
  readonly mapper: StyleClipMapper;
  readonly batch: number;
  readonly lambdas: StyleClipLambdas;
  readonly opts: Record<string, unknown>;
  private steps: StepCache;
  private text: TextEmbeddings;
  private previews = new Map<number, Promise<ForwardSession>>();

  constructor(readonly nets: TrainNets, readonly latents: LatentSource, readonly o: StyleClipTrainOptions) {
    this.batch = o.batch ?? STYLECLIP_DEFAULTS.batch;
    this.lambdas = { ...STYLECLIP_LAMBDAS, ...o.lambdas };
    checkLambdas({ ...this.lambdas });
    if (this.lambdas.id > 0 && !nets.arcface) throw new Error('StyleCLIP: the identity loss (id lambda > 0) needs ArcFace IR-SE50 weights (--arcface), or set its lambda to 0');
    const gen = nets.generator;
    this.mapper = StyleClipMapper.create({ width: gen.config.styleDim, ...o.mapper }, o.initSeed ?? 0);
    if (this.mapper.config.width !== gen.config.styleDim) throw new Error(`StyleCLIP: mapper width ${this.mapper.config.width}, the generator's w is ${gen.config.styleDim}`);
    this.opts = {
      ...this.mapper.opts, description: o.prompt, batch_size: this.batch,
      clip_lambda: this.lambdas.clip, latent_l2_lambda: this.lambdas.l2, id_lambda: this.lambdas.id,
      stylegan_size: gen.config.size,
    };
    this.steps = new StepCache(this.mapper.params);
    this.text = new TextEmbeddings(nets.clip);
  }

  get params(): ParamTensor[] { return this.mapper.params.list; }

  sample(rng: Rng): StyleClipSample { return { latents: this.latents.draw(rng, this.batch) }; }
  describe(): string { return this.o.prompt; }

  private session() {
    const { generator: gen, clip, arcface } = this.nets;
    const B = this.batch; const L = gen.nLatent; const D = gen.config.styleDim; const E = clip.config.embedDim;
    return this.steps.get('main', () => ({
      name: `styleclip-step-b${B}`,
      inputs: [{ name: 'w', shape: [B, L, D] }, { name: 'text', shape: [1, E] }, { name: 'lambdas', shape: [TERMS.length] }],
      build: (g, x, p) => {
        const w = x.w;
        const wHat = G.add(w, G.mul(this.mapper.delta(w, p), STYLECLIP_ALPHA));
        const img = synthesize(gen, w);
        const imgHat = synthesize(gen, wHat);
        const cp = clip.params(g);
        const terms: Record<string, G.Tensor> = {};
        if (this.lambdas.clip > 0) terms.loss_clip = clipTextLoss(clip, cp, imgHat, x.text, 'mean');
        if (this.lambdas.l2 > 0) terms.loss_l2_latent = latentL2(wHat, w);
        if (this.lambdas.id > 0) terms.loss_id = identityLoss(arcface!, imgHat, img);
        return { ...terms, loss: weightedTotal(terms, x.lambdas, TERMS) };
      },
    }));
  }

  async step(s: StyleClipSample): Promise<StepResult> {
    const [session, w, text] = await Promise.all([this.session(), this.latents.resolve(s.latents), this.text.get(this.o.prompt)]);
    const lw = Float32Array.from(TERMS.map((t) => (t === 'loss_clip' ? this.lambdas.clip : t === 'loss_l2_latent' ? this.lambdas.l2 : this.lambdas.id)));
    return session.run({ w, text, lambdas: lw });
  }

  /** source | edited, for the first rows of the given samples (at most `maxRows`). */
  async preview(samples: StyleClipSample[], maxRows = 4): Promise<PreviewRow[]> {
    const rows: PreviewRow[] = [];
    for (const s of samples) {
      if (rows.length >= maxRows) break;
      const w = await this.latents.resolve(s.latents);
      const B = w.length / (this.nets.generator.nLatent * this.nets.generator.config.styleDim);
      const out = await (await this.previewSession(B)).run({ w });
      for (let b = 0; b < B && rows.length < maxRows; b++) {
        rows.push({ label: this.o.prompt, images: [imageOf(out.x.data as Float32Array, out.x.shape, b), imageOf(out.xHat.data as Float32Array, out.xHat.shape, b)] });
      }
    }
    return rows;
  }

  private previewSession(B: number): Promise<ForwardSession> {
    let s = this.previews.get(B);
    if (!s) {
      const gen = this.nets.generator;
      s = ForwardSession.create(this.mapper.params, `styleclip-preview-b${B}`, [{ name: 'w', shape: [B, gen.nLatent, gen.config.styleDim] }], (_g, x, p) => ({
        x: synthesize(gen, x.w),
        xHat: synthesize(gen, G.add(x.w, G.mul(this.mapper.delta(x.w, p), STYLECLIP_ALPHA))),
      }));
      this.previews.set(B, s);
    }
    return s;
  }
}
