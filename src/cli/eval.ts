// `clipmapper eval`: score a trained mapper on a latent set (src/eval/eval.ts).
//
//   clipmapper eval --method hairclip --latents test_faces.pt --hairstyles "afro,bob cut" --colors purple
//   clipmapper eval --method ffclip --mapper runs/ff/mapper.pt --latents test.npy --prompts "Sad,Purple hair"
//   clipmapper eval --method styleclip --mapper runs/purple/mapper.pt --latents test_faces.pt
// prints CLIP score (source -> edit), identity similarity and PSNR/MSE outside the hair, per edit.
import type { Command } from 'commander';
import { num } from './train.ts';

interface EvalFlags {
  method?: string; mapper?: string; generator?: string; clip?: string; arcface?: string; parser?: string;
  offline?: boolean; cacheDir?: string; latents?: string; n?: string; truncation?: string; seed?: string; batch?: string;
  text?: string; prompts?: string; hairstyles?: string; colors?: string; alpha?: string; json?: boolean; quiet?: boolean;
}

export function evalCommand(program: Command): Command {
  const c = program.command('eval')
    .description('evaluate a trained mapper: CLIP score, identity similarity, PSNR outside the hair (the papers\' table)')
    .requiredOption('-m, --method <method>', 'styleclip | hairclip | ffclip')
    .option('--mapper <path|name>', 'mapper checkpoint (default: hairclip / ffclip-ffhq; StyleCLIP: required)')
    .option('--generator <path|name>', 'StyleGAN2 (default: the one inside the mapper checkpoint, else stylegan2-ffhq-config-f)')
    .option('--clip <path|name>', 'CLIP (default: inside the checkpoint, else clip-vit-b-32)')
    .option('--arcface <path|name|none>', "ArcFace IR-SE50 for the identity similarity (default ir-se50; 'none' to skip)")
    .option('--parser <path|name|none>', "face parser for the non-hair region (default parsenet; 'none': whole image)")
    .option('--offline', 'never download weights')
    .option('--cache-dir <dir>', 'weights cache')
    .option('--latents <file>', 'latents [N, L, D] (.pt / .npy / .safetensors); default: sampled from the mapping network')
    .option('-n, --n <count>', 'use the first n latents (default: all of a file, 16 sampled)')
    .option('--truncation <psi>', 'truncation of sampled latents (0.7)')
    .option('--batch <n>', 'batch size (4)')
    .option('--text <prompt>', 'StyleCLIP: the prompt the mapper was trained for (default: from its checkpoint); FFCLIP: one prompt')
    .option('--prompts <file|list>', 'FFCLIP prompts')
    .option('--hairstyles <file|list>', 'HairCLIP hairstyles')
    .option('--colors <list>', 'HairCLIP colours')
    .option('--alpha <a>', 'edit strength (default 0.1 StyleCLIP/HairCLIP, 1 FFCLIP)')
    .option('--json', 'print the rows as JSON')
    .option('-q, --quiet', 'no loading messages');
  c.action(async (o: EvalFlags) => {
    const method = o.method as 'styleclip' | 'hairclip' | 'ffclip';
    if (!['styleclip', 'hairclip', 'ffclip'].includes(method)) throw new Error(`--method must be styleclip, hairclip or ffclip, got '${o.method}'`);
    const { loadMapperNets } = await import('../train/nets.ts');
    const { latentSource, readList } = await import('../train/data.ts');
    const { evaluateMapper, evalCases, formatEvalTable } = await import('../eval/eval.ts');
    const log = o.quiet || o.json ? () => {} : (m: string) => console.error(m);
    const arcface = o.arcface !== 'none'; const parser = o.parser !== 'none';
    const nets = await loadMapperNets(method, { ...o, arcface: arcface ? o.arcface : undefined, parser: parser ? o.parser : undefined }, { clip: true, arcface, parser }, log);
    const src = await latentSource(nets.generator, o.latents, num(o.truncation, '--truncation', 0.7, { min: 0 }));
    const count = num(o.n, '--n', Number.isFinite(src.count) ? src.count : 16, { int: true, min: 1 });
    const latents = await src.resolve(Number.isFinite(src.count) ? { indices: Array.from({ length: Math.min(count, src.count) }, (_, i) => i) } : src.first(count));
    const prompt = o.text ?? (typeof nets.mapper.opts.description === 'string' ? nets.mapper.opts.description : undefined);
    const cases = evalCases(method, {
      prompt,
      prompts: o.prompts ? readList(o.prompts) : o.text ? [o.text] : undefined,
      hairstyles: o.hairstyles ? readList(o.hairstyles, { stripSuffix: 'hairstyle' }) : undefined,
      colors: o.colors ? readList(o.colors) : undefined,
    });
    const rows = await evaluateMapper(nets, {
      latents, cases, batch: num(o.batch, '--batch', 4, { int: true, min: 1 }),
      alpha: o.alpha !== undefined ? num(o.alpha, '--alpha', 0) : undefined,
      onProgress: (d, t) => { if (!o.quiet && !o.json && process.stderr.isTTY) process.stderr.write(`\r${d}/${t} batches`); },
    });
    if (!o.quiet && !o.json && process.stderr.isTTY) process.stderr.write('\n');
    if (o.json) console.log(JSON.stringify(rows, null, 2));
    else console.log(formatEvalTable(`${method} (${latents.length / (nets.generator.nLatent * nets.generator.config.styleDim)} latents, ${src.description})`, rows, { parser }));
  });
  return c;
}
