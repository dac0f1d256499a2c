// `clipmapper edit <photo|folder>`: edit a real photo (or every image of a folder) end to end.
// `clipmapper export`: one edit as .onnx files + manifest.json.
//
//   clipmapper edit photo.jpg --hairstyle "afro" --color "purple" -o out.png [--grid]
//   clipmapper edit photo.jpg --hairstyle-ref ref.jpg | --color-ref ref.jpg
//   clipmapper edit photo.jpg --text "a face with a beard" --method ffclip
//   clipmapper edit photo.jpg --text "purple hair" --method styleclip     (picks styleclip-purple-hair)
//   clipmapper edit photos/ -o edited/                                    (batch, progress bar)
//   clipmapper edit --latents file.pt ...                                 (latent-file editing: see below)
//
// Weights: registry names resolved through the cache (downloaded on first use with a progress bar)
// or local paths: --generator --e4e --mapper --clip --parser. --offline never downloads.
//
// `edit --latents <file>` (editing latent codes instead of a photo) is implemented by
// src/cli/edit-latents.ts (`editLatents(opts, command)`), loaded when that option is given, so
// both forms share one command.
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { METHODS, type EditMethod, type WeightsSpec } from '../pipeline/nets.ts';
import type { EditConditions, PipelineOptions } from '../pipeline/editor.ts';
import type { ExecutionProvider } from '../runtime/session.ts';

export interface WeightFlags {
  generator?: string; e4e?: string; mapper?: string; clip?: string; parser?: string;
  offline?: boolean; cacheDir?: string; ep?: string; threads?: string; quiet?: boolean;
}

/** The weight / runtime flags every command that runs the pipeline takes. */
export function addWeightFlags(c: Command): Command {
  return c
    .option('--generator <path|name>', 'StyleGAN2 generator (default: the one inside the mapper or e4e checkpoint, else stylegan2-ffhq-config-f)')
    .option('--e4e <path|name>', 'e4e encoder (default: e4e-ffhq)')
    .option('--mapper <path|name>', 'mapper checkpoint (default: hairclip / ffclip-ffhq / styleclip-<text>)')
    .option('--clip <path|name>', 'CLIP (default: the one inside hairclip.pt, else clip-vit-b-32)')
    .option('--parser <path|name|none>', "face parser for the blend mask (default: parsenet; 'none': feathered whole crop)")
    .option('--offline', 'never download weights; fail with a message naming what is missing')
    .option('--cache-dir <dir>', 'weights cache (default: $CLIPMAPPER_CACHE or ~/.cache/clipmapper)')
    .option('--ep <provider>', 'ONNX Runtime execution provider: cpu, cuda, webgpu (default: $CLIPMAPPER_EP or cpu)')
    .option('--threads <n>', 'intra-op threads (default: all cores)')
    .option('-q, --quiet', 'no step messages');
}

export function weightsSpec(o: WeightFlags): WeightsSpec {
  const w: WeightsSpec = {};
  if (o.generator) w.generator = o.generator;
  if (o.e4e) w.e4e = o.e4e;
  if (o.mapper) w.mapper = o.mapper;
  if (o.clip) w.clip = o.clip;
  if (o.parser) w.parser = o.parser === 'none' ? null : o.parser;
  return w;
}

export function pipelineOptions(o: WeightFlags, text?: string): PipelineOptions {
  return {
    weights: weightsSpec(o),
    download: !o.offline,
    cacheDir: o.cacheDir,
    executionProvider: o.ep as ExecutionProvider | undefined,
    threads: o.threads !== undefined ? Number(o.threads) : undefined,
    progress: !o.quiet,
    text,
  };
}

interface EditFlags extends WeightFlags {
  method?: string; hairstyle?: string; color?: string; hairstyleRef?: string; colorRef?: string; text?: string;
  alpha?: string; out?: string; grid?: boolean; face?: string; latents?: string;
}

/** The method: --method, else ffclip for free text only, else hairclip. */
export function chooseMethod(o: { method?: string; text?: string; hairstyle?: string; color?: string; hairstyleRef?: string; colorRef?: string }): EditMethod {
  if (o.method) {
    if (!METHODS.includes(o.method as EditMethod)) throw new Error(`--method must be one of ${METHODS.join(', ')}, got '${o.method}'`);
    return o.method as EditMethod;
  }
  if (o.text && !o.hairstyle && !o.color && !o.hairstyleRef && !o.colorRef) return 'ffclip';
  return 'hairclip';
}

export function conditionsOf(o: EditFlags): EditConditions {
  const c: EditConditions = {};
  if (o.hairstyle) c.hairstyle = o.hairstyle;
  if (o.color) c.color = o.color;
  if (o.text) c.text = o.text;
  for (const [k, flag] of [['hairstyleRef', '--hairstyle-ref'], ['colorRef', '--color-ref']] as const) {
    const p = o[k];
    if (!p) continue;
    if (!existsSync(p)) throw new Error(`${flag}: no such file: ${p}`);
    c[k] = p;
  }
  if (o.alpha !== undefined) {
    const a = Number(o.alpha);
    if (!Number.isFinite(a)) throw new Error(`--alpha must be a number, got '${o.alpha}'`);
    c.alpha = a;
  }
  if (o.face !== undefined) {
    const n = Number(o.face);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--face must be a non-negative integer (0 = largest face), got '${o.face}'`);
    c.face = n;
  }
  return c;
}

async function runEdit(photo: string | undefined, o: EditFlags, cmd: Command): Promise<void> {
  if (o.latents) {
    // latent-file editing lives in its own module (another command's code path, one command)
    const spec = './edit-latents.ts';
    let mod: { editLatents?: (opts: EditFlags, cmd: Command) => Promise<void> };
    try {
      mod = await import(spec);
    } catch {
      throw new Error('--latents: latent-file editing is not available in this build (src/cli/edit-latents.ts is missing)');
    }
    if (photo) throw new Error('give either a photo or --latents, not both');
    await mod.editLatents!(o, cmd);
    return;
  }
  if (!photo) throw new Error('give a photo (or a folder of photos) to edit, or --latents <file>');
  if (!existsSync(photo)) throw new Error(`no such file or folder: ${photo}`);
  const method = chooseMethod(o);
  const cond = conditionsOf(o);
  const { pipeline } = await import('../pipeline/editor.ts');
  const { encodePng, gridImage } = await import('../pipeline/grid.ts');
  const isDir = statSync(photo).isDirectory();
  const { decodeImageRgb } = await import('../io/image.ts');
  if (!isDir) await decodeImageRgb(photo); // "not an image" before any weights load
  const editor = await pipeline(method, pipelineOptions(o, o.text));

  if (isDir) {
    const outDir = o.out ?? `${photo.replace(/[\\/]+$/, '')}_edited`;
    const s = await editor.editFolder(photo, outDir, cond, {
      grid: o.grid,
      progressBar: !o.quiet && Boolean(process.stderr.isTTY),
      onFile: (r) => { if (r.error && !o.quiet) process.stderr.write(`\nclipmapper: ${r.file}: ${r.error}\n`); },
    });
    console.log(`${s.ok.length} edited into ${resolve(outDir)}, ${s.failed.length} failed`);
    for (const f of s.failed) console.log(`  failed: ${f.file}: ${f.error}`);
    if (s.ok.length === 0 && s.failed.length > 0) process.exitCode = 1;
    return;
  }
  const out = o.out ?? `${basename(photo, extname(photo))}.${method}.png`;
  if (existsSync(out) && statSync(out).isDirectory()) throw new Error(`-o ${out} is a folder; give a file name`);
  const r = await editor(photo, cond);
  await mkdir(dirname(resolve(out)), { recursive: true });
  await writeFile(out, await encodePng(o.grid ? await gridImage(await decodeImageRgb(photo), r) : r.image));
  console.log(resolve(out));
}

export function editCommand(program: Command): Command {
  const c = program.command('edit')
    .description('edit a photo (or every image of a folder): detect + align the face, invert with e4e, apply the mapper, paste back')
    .argument('[photo]', 'photo file or folder of photos')
    .option('-m, --method <method>', `${METHODS.join(' | ')} (default: ffclip for --text alone, else hairclip)`)
    .option('--hairstyle <name>', 'HairCLIP hairstyle, e.g. "afro" (prompt "<name> hairstyle")')
    .option('--color <name>', 'HairCLIP hair colour, e.g. "purple" (prompt "<name> hair")')
    .option('--hairstyle-ref <image>', 'HairCLIP: copy the hairstyle of this photo')
    .option('--color-ref <image>', 'HairCLIP: copy the hair colour of this photo')
    .option('--text <text>', 'FFCLIP: the edit in words; StyleCLIP: names the released mapper')
    .option('--alpha <a>', 'strength: w_edit = w + alpha * M(w) (default 0.1 HairCLIP/StyleCLIP, 1 FFCLIP)')
    .option('-o, --out <file|dir>', 'output PNG (default <photo>.<method>.png); a folder for folder input')
    .option('--grid', 'write a before/after sheet instead of the edited photo alone')
    .option('--face <n>', 'which face when there are several (0 = largest)')
    .option('--latents <file>', 'edit latent codes from a file instead of a photo');
  addWeightFlags(c);
  c.action((photo: string | undefined, o: EditFlags, cmd: Command) => runEdit(photo, o, cmd));
  return c;
}

interface ExportFlags extends WeightFlags {
  method?: string; hairstyle?: string; color?: string; hairstyleRef?: string; colorRef?: string; text?: string;
  out: string; e4e?: string; withE4e?: boolean; withParser?: boolean;
}

export function exportCommand(program: Command): Command {
  const c = program.command('export')
    .description('write one trained edit (mapper + synthesis, optionally e4e and the parser) as .onnx files with a JSON manifest')
    .option('-m, --method <method>', METHODS.join(' | '))
    .option('--hairstyle <name>', 'HairCLIP hairstyle')
    .option('--color <name>', 'HairCLIP hair colour')
    .option('--hairstyle-ref <image>', 'HairCLIP hairstyle reference photo')
    .option('--color-ref <image>', 'HairCLIP colour reference photo')
    .option('--text <text>', 'FFCLIP text / StyleCLIP mapper name')
    .requiredOption('-o, --out <dir>', 'output folder (edit.onnx, [e4e.onnx, parser.onnx,] manifest.json)')
    .option('--with-e4e', 'also export the e4e encoder')
    .option('--with-parser', 'also export the face parser');
  addWeightFlags(c);
  c.action(async (o: ExportFlags) => {
    const method = chooseMethod(o);
    const cond = conditionsOf(o as EditFlags);
    const { pipeline } = await import('../pipeline/editor.ts');
    const { exportEdit } = await import('../pipeline/export.ts');
    const editor = await pipeline(method, { ...pipelineOptions(o, o.text), preloadDetector: false });
    const m = await exportEdit(editor, o.out, cond, { withE4e: o.withE4e, withParser: o.withParser });
    for (const f of Object.values(m.files)) console.log(`${join(resolve(o.out), f.file)}  ${(f.bytes / 1e6).toFixed(1)} MB  ${f.inputs.map((i) => `${i.name}[${i.shape}]`).join(', ')} -> ${f.outputs.map((i) => `${i.name}[${i.shape}]`).join(', ')}`);
    console.log(join(resolve(o.out), 'manifest.json'));
  });
  return c;
}
