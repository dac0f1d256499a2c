// `clipmapper train styleclip|hairclip|ffclip`: train a mapper (src/train).
//
//   clipmapper train styleclip --prompt "purple hair" --out runs/purple [--latents train_faces.pt]
//   clipmapper train hairclip --out runs/hair [--hairstyle-refs celeba_hq_train/ --color-refs celeba_hq_train/]
//   clipmapper train ffclip --out runs/ff [--prompts prompts.txt]
//   ... --resume                 continue from <out>/checkpoints/latest.safetensors (exactly)
//
// Networks: --generator --clip --arcface --parser take a path or a registry name (downloaded on
// first use; --offline never downloads). Latents: --latents (e4e .pt [N, 18, 512], .npy,
// .safetensors), else sampled from G's mapping network with --truncation (0.7).
// Writes into --out: log.jsonl (one line per step), checkpoints/latest.safetensors (parameters,
// optimiser, RNG: exact resume), mapper.pt (the mapper in the official checkpoint layout, loadable
// by `clipmapper edit` / `eval` and the official code), images/step_NNNNNN.png (+ .txt labels),
// opts.json.
import type { Command } from 'commander';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

interface CommonFlags {
  generator?: string; clip?: string; arcface?: string; parser?: string; offline?: boolean; cacheDir?: string;
  latents?: string; truncation?: string;
  steps?: string; lr?: string; optimizer?: string; batch?: string; seed?: string; initSeed?: string;
  out: string; resume?: boolean; saveInterval?: string; imageInterval?: string; quiet?: boolean; threads?: string;
}

export function num(v: string | undefined, flag: string, dflt: number, o: { int?: boolean; min?: number } = {}): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || (o.int && !Number.isInteger(n)) || (o.min !== undefined && n < o.min)) {
    throw new Error(`${flag} must be ${o.int ? 'an integer' : 'a number'}${o.min !== undefined ? ` >= ${o.min}` : ''}, got '${v}'`);
  }
  return n;
}

function addCommon(c: Command): Command {
  return c
    .requiredOption('-o, --out <dir>', 'output folder (log.jsonl, checkpoints/, mapper.pt, images/)')
    .option('--generator <path|name>', 'StyleGAN2 generator (default stylegan2-ffhq-config-f)')
    .option('--clip <path|name>', 'CLIP (default clip-vit-b-32)')
    .option('--arcface <path|name>', 'ArcFace IR-SE50 for the identity loss (default ir-se50)')
    .option('--parser <path|name>', 'face parser for the hair / background losses (default parsenet)')
    .option('--offline', 'never download weights')
    .option('--cache-dir <dir>', 'weights cache (default $CLIPMAPPER_CACHE or ~/.cache/clipmapper)')
    .option('--latents <file>', 'training latents [N, L, D] (.pt from e4e, .npy, .safetensors); default: sampled from the mapping network')
    .option('--truncation <psi>', 'truncation of the sampled latents (default 0.7)')
    .option('--steps <n>', 'optimiser steps')
    .option('--lr <lr>', 'learning rate')
    .option('--optimizer <name>', 'ranger | adam')
    .option('--batch <n>', 'batch size')
    .option('--seed <n>', 'seed of the data / condition sampling (default 0)')
    .option('--init-seed <n>', 'seed of the mapper initialisation (default: --seed)')
    .option('--resume', 'continue from <out>/checkpoints/latest.safetensors')
    .option('--save-interval <n>', 'checkpoint every n steps (default 2000)')
    .option('--image-interval <n>', 'preview grid every n steps, 0 = never (default 100)')
    .option('--threads <n>', 'intra-op threads (default: all cores)')
    .option('-q, --quiet', 'no progress bar');
}

interface RunSpec<S> {
  method: string;
  flags: CommonFlags;
  defaults: { lr: number; optimizer: 'ranger' | 'adam'; batch: number; steps: number | ((count: number, batch: number) => number) };
  needs: (batch: number) => { arcface: boolean; parser: boolean };
  make: (nets: import('../train/common.ts').TrainNets, latents: import('../train/data.ts').LatentSource, batch: number, initSeed: number) => import('../train/trainer.ts').TrainMethod<S> & { mapper: { checkpoint(): { state_dict: Map<string, import('../io/tensor.ts').TensorData>; opts: Record<string, unknown> } } };
}

async function run<S>(spec: RunSpec<S>): Promise<void> {
  const f = spec.flags;
  const { settings } = await import('../runtime/session.ts');
  if (f.threads !== undefined) settings.threads = num(f.threads, '--threads', 0, { int: true, min: 0 });
  const out = resolve(f.out);
  const ckpt = join(out, 'checkpoints', 'latest.safetensors');
  if (!f.resume && existsSync(ckpt)) throw new Error(`${out} already holds a training checkpoint; pass --resume to continue it, or choose another --out`);
  const log = f.quiet ? () => {} : (m: string) => console.error(m);
  const optimizer = (f.optimizer ?? spec.defaults.optimizer) as 'ranger' | 'adam';
  if (optimizer !== 'ranger' && optimizer !== 'adam') throw new Error(`--optimizer must be ranger or adam, got '${f.optimizer}'`);
  const batch = num(f.batch, '--batch', spec.defaults.batch, { int: true, min: 1 });
  const seed = num(f.seed, '--seed', 0, { int: true, min: 0 });
  const initSeed = num(f.initSeed, '--init-seed', seed, { int: true, min: 0 });
  const lr = num(f.lr, '--lr', spec.defaults.lr, { min: 0 });

  const { loadTrainNets } = await import('../train/nets.ts');
  const { latentSource } = await import('../train/data.ts');
  const nets = await loadTrainNets(f, spec.needs(batch), log);
  const latents = await latentSource(nets.generator, f.latents, num(f.truncation, '--truncation', 0.7, { min: 0 }));
  log(`latents: ${latents.description}${Number.isFinite(latents.count) ? ` (${latents.count})` : ''}`);
  const method = spec.make(nets, latents, batch, initSeed);
  const d = spec.defaults.steps;
  const steps = num(f.steps, '--steps', typeof d === 'number' ? d : d(Number.isFinite(latents.count) ? latents.count : 5000, batch), { int: true, min: 1 });

  const { Trainer } = await import('../train/trainer.ts');
  const { writeGrid } = await import('../train/grid.ts');
  const { writeCheckpoint } = await import('../mappers/checkpoint.ts');
  mkdirSync(out, { recursive: true });
  const saveInterval = num(f.saveInterval, '--save-interval', 2000, { int: true, min: 1 });
  const opts = { method: spec.method, steps, lr, optimizer, batch, seed, init_seed: initSeed, latents: latents.description, ...method.opts };
  writeFileSync(join(out, 'opts.json'), JSON.stringify(opts, null, 2) + '\n');
  const mapperPath = join(out, 'mapper.pt');
  const saveMapper = () => writeCheckpoint(mapperPath, { state_dict: method.mapper.checkpoint().state_dict, opts: method.opts });
  const trainer = new Trainer(method, {
    outDir: out, steps, optimizer, lr, seed, saveInterval, logInterval: 1,
    imageInterval: num(f.imageInterval, '--image-interval', 100, { int: true, min: 0 }),
    resume: Boolean(f.resume),
    progress: !f.quiet && Boolean(process.stderr.isTTY),
    writeGrid,
    onStep: (step) => { if (step % saveInterval === 0 || step === steps) saveMapper(); },
  });
  log(`training ${spec.method}: ${steps} steps, ${optimizer} lr ${lr}, batch ${batch}, ${method.params.reduce((a, p) => a + p.data.length, 0).toLocaleString('en-US')} parameters -> ${out}`);
  const entries = await trainer.run();
  if (!entries.length && trainer.step >= steps) log(`already trained to step ${trainer.step} (--steps ${steps})`);
  saveMapper();
  const last = entries[entries.length - 1];
  console.log(`${mapperPath}${last ? `  step ${last.step}, loss ${Number(last.loss).toFixed(4)}` : ''}`);
}

function lam(v: string | undefined, flag: string): number | undefined {
  return v === undefined ? undefined : num(v, flag, 0, { min: 0 });
}
function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function trainCommand(program: Command): Command {
  const train = program.command('train').description('train a mapper: styleclip | hairclip | ffclip');

  // ---- StyleCLIP ----
  const sc = addCommon(train.command('styleclip').description('StyleCLIP latent mapper for one prompt (Ranger lr 0.5, batch 2, 50k steps)'))
    .requiredOption('--prompt <text>', 'the edit, e.g. "purple hair" (StyleCLIP --description)')
    .option('--mapper-type <type>', 'levels | single (default levels: coarse/medium/fine sub-mappers)')
    .option('--no-coarse-mapper', 'levels: no coarse sub-mapper')
    .option('--no-medium-mapper', 'levels: no medium sub-mapper')
    .option('--no-fine-mapper', 'levels: no fine sub-mapper (keeps colours)')
    .option('--clip-lambda <x>', 'CLIP loss weight (1.0)')
    .option('--l2-lambda <x>', 'latent L2 weight (0.8)')
    .option('--id-lambda <x>', 'identity loss weight (0.1; 0 = no ArcFace)');
  sc.action(async (o: CommonFlags & { prompt: string; mapperType?: string; coarseMapper: boolean; mediumMapper: boolean; fineMapper: boolean; clipLambda?: string; l2Lambda?: string; idLambda?: string }) => {
    const { StyleClipTrainer, STYLECLIP_DEFAULTS, STYLECLIP_LAMBDAS } = await import('../train/styleclip.ts');
    const type = (o.mapperType ?? 'levels').toLowerCase();
    if (type !== 'levels' && type !== 'single') throw new Error(`--mapper-type must be levels or single, got '${o.mapperType}'`);
    const lambdas = { ...STYLECLIP_LAMBDAS, ...defined({ clip: lam(o.clipLambda, '--clip-lambda'), l2: lam(o.l2Lambda, '--l2-lambda'), id: lam(o.idLambda, '--id-lambda') }) };
    await run({
      method: 'styleclip', flags: o, defaults: STYLECLIP_DEFAULTS,
      needs: () => ({ arcface: lambdas.id > 0, parser: false }),
      make: (nets, latents, batch, initSeed) => new StyleClipTrainer(nets, latents, {
        prompt: o.prompt, batch, lambdas, initSeed,
        mapper: type === 'single' ? { type: 'SingleMapper' } : { type: 'LevelsMapper', levels: { coarse: o.coarseMapper, medium: o.mediumMapper, fine: o.fineMapper } },
      }),
    });
  });

  // ---- HairCLIP ----
  const hc = addCommon(train.command('hairclip').description('HairCLIP: one mapper for every hairstyle and colour, text or reference image (Ranger lr 5e-4, batch 1)'))
    .option('--hairstyles <file|list>', 'hairstyle names: hairstyle_list.txt or "afro,bob cut" (default: the 44 of HairCLIP)')
    .option('--colors <list>', 'colour names, comma-separated (default: the 12 of HairCLIP)')
    .option('--hairstyle-refs <dir>', 'real hairstyle reference images (e.g. CelebA-HQ train)')
    .option('--color-refs <dir>', 'real colour reference images')
    .option('--color-refs-in-domain <dir>', 'generated colour references: <dir>/<colour> hair/*.jpg')
    .option('--hairstyle-prob <p>', 'hairstyle-only samples (0.5)')
    .option('--color-prob <p>', 'colour-only samples (0.2)')
    .option('--both-prob <p>', 'samples editing both (0.27); the rest are no-edit')
    .option('--hairstyle-text-prob <p>', 'hairstyle given as text rather than an image (0.5)')
    .option('--color-text-prob <p>', 'colour given as text (0.5)')
    .option('--color-in-domain-prob <p>', 'colour given as an in-domain reference (0.25)')
    .option('--text-lambda <x>', '2.0').option('--image-lambda <x>', '1.0').option('--attribute-lambda <x>', '1.0')
    .option('--image-hairstyle-lambda <x>', '5.0').option('--image-color-lambda <x>', '0.02').option('--id-lambda <x>', '0.3')
    .option('--maintain-color-lambda <x>', '0.02').option('--background-lambda <x>', '1.0').option('--l2-lambda <x>', '0.8')
    .option('--parser-size <n>', 'parser input size (default: half the image size, 512 at 1024)');
  hc.action(async (o: CommonFlags & Record<string, string | undefined>) => {
    const { HairClipTrainer, HAIRCLIP_DEFAULTS, HAIRCLIP_LAMBDAS } = await import('../train/hairclip.ts');
    const { HAIR_COLORS, HAIRSTYLES, HAIR_SAMPLING_DEFAULTS, inDomainColorRefs, listImages, readList } = await import('../train/data.ts');
    const lambdas = {
      ...HAIRCLIP_LAMBDAS, ...defined({
        text: lam(o.textLambda, '--text-lambda'), image: lam(o.imageLambda, '--image-lambda'), attribute: lam(o.attributeLambda, '--attribute-lambda'),
        imageHairstyle: lam(o.imageHairstyleLambda, '--image-hairstyle-lambda'), imageColor: lam(o.imageColorLambda, '--image-color-lambda'),
        id: lam(o.idLambda, '--id-lambda'), maintainColor: lam(o.maintainColorLambda, '--maintain-color-lambda'),
        background: lam(o.backgroundLambda, '--background-lambda'), latentL2: lam(o.l2Lambda, '--l2-lambda'),
      }),
    };
    const prob = (v: string | undefined, flag: string) => (v === undefined ? undefined : num(v, flag, 0, { min: 0 }));
    const sampling = {
      ...HAIR_SAMPLING_DEFAULTS, ...defined({
        hairstyleProb: prob(o.hairstyleProb, '--hairstyle-prob'), colorProb: prob(o.colorProb, '--color-prob'), bothProb: prob(o.bothProb, '--both-prob'),
        hairstyleTextProb: prob(o.hairstyleTextProb, '--hairstyle-text-prob'), colorTextProb: prob(o.colorTextProb, '--color-text-prob'),
        colorInDomainRefProb: prob(o.colorInDomainProb, '--color-in-domain-prob'),
      }),
    };
    const hairstyles = o.hairstyles ? readList(o.hairstyles, { stripSuffix: 'hairstyle' }) : HAIRSTYLES;
    const colors = o.colors ? readList(o.colors) : HAIR_COLORS;
    const references = {
      hairstyle: o.hairstyleRefs ? listImages(o.hairstyleRefs) : [],
      color: o.colorRefs ? listImages(o.colorRefs) : [],
      colorInDomain: o.colorRefsInDomain ? inDomainColorRefs(o.colorRefsInDomain, colors) : null,
    };
    const l = lambdas;
    const needParser = references.hairstyle.length + references.color.length > 0 || references.colorInDomain !== null
      || l.background * l.attribute > 0 || l.maintainColor * l.attribute > 0;
    await run({
      method: 'hairclip', flags: o, defaults: HAIRCLIP_DEFAULTS,
      needs: (batch) => {
        if (batch !== 1) throw new Error('HairCLIP trains with batch 1 (as the official code enforces: every sample has its own conditions)');
        return { arcface: l.id * l.attribute > 0, parser: needParser };
      },
      make: (nets, latents, _batch, initSeed) => new HairClipTrainer(nets, latents, {
        lambdas, sampling, hairstyles, colors, references, initSeed,
        parserSize: o.parserSize !== undefined ? num(o.parserSize, '--parser-size', 512, { int: true, min: 16 }) : undefined,
        warn: (m) => console.error(`warning: ${m}`),
      }),
    });
  });

  // ---- FFCLIP ----
  const ff = addCommon(train.command('ffclip').description('FFCLIP: one mapper for free-form text (Adam lr 5e-4, batch 8, 20 epochs)'))
    .option('--prompts <file|list>', 'training prompts: a file (one per line) or "a,b,c" (default: FFCLIP\'s 53-entry face list)')
    .option('--epochs <n>', 'epochs over the latents when --steps is not given (20)')
    .option('--grad-clip <x>', 'gradient norm clip (5; 0 = off)')
    .option('--id-lambda <x>', '0.9').option('--clip-lambda <x>', '1.0').option('--latent-lambda <x>', '1.6')
    .option('--embedding-lambda <x>', '1.0').option('--background-lambda <x>', '2.0')
    .option('--parser-size <n>', 'parser input size (default: half the image size)');
  ff.action(async (o: CommonFlags & Record<string, string | undefined>) => {
    const { FfclipTrainer, FFCLIP_DEFAULTS, FFCLIP_LAMBDAS } = await import('../train/ffclip.ts');
    const { FFCLIP_PROMPTS, readList } = await import('../train/data.ts');
    const lambdas = {
      ...FFCLIP_LAMBDAS, ...defined({
        id: lam(o.idLambda, '--id-lambda'), clip: lam(o.clipLambda, '--clip-lambda'), latent: lam(o.latentLambda, '--latent-lambda'),
        embedding: lam(o.embeddingLambda, '--embedding-lambda'), background: lam(o.backgroundLambda, '--background-lambda'),
      }),
    };
    const prompts = o.prompts ? readList(o.prompts) : FFCLIP_PROMPTS;
    const epochs = num(o.epochs, '--epochs', FFCLIP_DEFAULTS.epochs, { int: true, min: 1 });
    await run({
      method: 'ffclip', flags: o,
      defaults: { ...FFCLIP_DEFAULTS, steps: (count, batch) => epochs * Math.ceil(count / batch) },
      needs: () => ({ arcface: lambdas.id > 0, parser: lambdas.background > 0 }),
      make: (nets, latents, batch, initSeed) => new FfclipTrainer(nets, latents, {
        prompts, batch, lambdas, initSeed,
        gradClip: num(o.gradClip, '--grad-clip', FFCLIP_DEFAULTS.gradClip, { min: 0 }),
        parserSize: o.parserSize !== undefined ? num(o.parserSize, '--parser-size', 512, { int: true, min: 16 }) : undefined,
      }),
    });
  });
  return train;
}
