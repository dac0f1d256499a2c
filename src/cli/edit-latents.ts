// `clipmapper edit --latents <file>`: edit latent codes (e4e .pt [N, L, D], .npy, .safetensors)
// with a mapper, without a photo (photos go through src/pipeline; see src/cli/edit.ts, which
// loads this module when --latents is given).
//
//   clipmapper edit --latents test_faces.pt --method hairclip --hairstyle afro --color purple -o afro.png
//   clipmapper edit --latents w.pt --method ffclip --text "a smiling man with grey hair" -o out.png
//   clipmapper edit --latents w.pt --method styleclip --mapper runs/purple/mapper.pt -o edits/
// Output: a PNG grid, one row per latent (source | edited), for at most 8 latents; with -o naming
// a folder (existing, or ending in '/'), one PNG per latent (NNNNN.png, the edit only) for all of them.
import type { Command } from 'commander';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import * as G from '../graph/index.ts';
import { compile } from '../runtime/session.ts';
import { chooseMethod } from './edit.ts';

interface Flags {
  latents?: string; method?: string; hairstyle?: string; color?: string; hairstyleRef?: string; colorRef?: string; text?: string;
  alpha?: string; out?: string; generator?: string; mapper?: string; clip?: string; parser?: string; offline?: boolean; cacheDir?: string; quiet?: boolean;
}

const GRID_ROWS = 8;

export async function editLatents(o: Flags, _cmd?: Command): Promise<void> {
  if (!o.latents) throw new Error('--latents <file> is required');
  const method = chooseMethod(o);
  const { loadMapperNets } = await import('../train/nets.ts');
  const { loadLatents, hairstylePrompt, colorPrompt } = await import('../train/data.ts');
  const { TextEmbeddings, ReferenceEncoder } = await import('../train/embed.ts');
  const { HairClipMapper, HAIRCLIP_ALPHA } = await import('../mappers/hairclip.ts');
  const { StyleClipMapper, STYLECLIP_ALPHA } = await import('../mappers/styleclip.ts');
  const { FFCLIP_ALPHA } = await import('../mappers/ffclip.ts');
  const { synthesize } = await import('../train/common.ts');
  const { gridTensor } = await import('../train/grid.ts');
  const { writeImage } = await import('../io/image.ts');
  const { TensorData } = await import('../io/tensor.ts');
  const log = o.quiet ? () => {} : (m: string) => console.error(m);

  const refs = Boolean(o.hairstyleRef || o.colorRef);
  if (method === 'hairclip' && !o.hairstyle && !o.color && !refs) throw new Error('HairCLIP: give --hairstyle, --color, --hairstyle-ref and/or --color-ref');
  if (method === 'ffclip' && !o.text) throw new Error('FFCLIP: give the edit with --text');
  if (method !== 'hairclip' && refs) throw new Error('reference images (--hairstyle-ref / --color-ref) are a HairCLIP condition');
  const nets = await loadMapperNets(method, { ...o, parser: o.parser === 'none' ? undefined : o.parser }, { clip: method !== 'styleclip', arcface: false, parser: refs }, log);
  const gen = nets.generator;
  const set = loadLatents(o.latents);
  const [N, L, D] = set.shape;
  if (L !== gen.nLatent || D !== gen.config.styleDim) throw new Error(`${o.latents}: latents are [${L}, ${D}] per code, the generator takes w+ [${gen.nLatent}, ${gen.config.styleDim}]`);
  const alpha = o.alpha !== undefined ? Number(o.alpha) : method === 'ffclip' ? FFCLIP_ALPHA : method === 'hairclip' ? HAIRCLIP_ALPHA : STYLECLIP_ALPHA;
  if (!Number.isFinite(alpha)) throw new Error(`--alpha must be a number, got '${o.alpha}'`);

  // conditions: text embeddings, or hair-masked reference features (HairCLIP; text wins, as official)
  const feeds: Record<string, Float32Array> = {};
  const desc: string[] = [];
  if (nets.clip && method !== 'styleclip') {
    const text = new TextEmbeddings(nets.clip);
    const ref = refs ? new ReferenceEncoder(nets.clip, nets.parser!, gen.config.size) : null;
    if (method === 'ffclip') { feeds.e = await text.get(o.text!); desc.push(o.text!); } else {
      if (o.hairstyle) { feeds.e_hair = await text.get(hairstylePrompt(o.hairstyle)); desc.push(hairstylePrompt(o.hairstyle)); } else if (o.hairstyleRef) { feeds.e_hair = (await ref!.encode(o.hairstyleRef)).embedding; desc.push(`hairstyle of ${basename(o.hairstyleRef)}`); }
      if (o.color) { feeds.e_color = await text.get(colorPrompt(o.color)); desc.push(colorPrompt(o.color)); } else if (o.colorRef) { feeds.e_color = (await ref!.encode(o.colorRef)).embedding; desc.push(`colour of ${basename(o.colorRef)}`); }
    }
  } else desc.push(String(nets.mapper.opts.description ?? 'styleclip'));

  // one latent at a time: x = G(w), x_hat = G(w + alpha M(w, c))
  const g = new G.Graph('edit-latents');
  const w = g.input('w', [1, L, D]);
  const p = nets.mapper.params.constants(g);
  const E = nets.clip?.config.embedDim ?? 0;
  let delta: G.Tensor;
  if (nets.mapper instanceof StyleClipMapper) delta = nets.mapper.delta(w, p);
  else if (nets.mapper instanceof HairClipMapper) delta = nets.mapper.delta(w, { hair: feeds.e_hair ? g.input('e_hair', [1, E]) : null, color: feeds.e_color ? g.input('e_color', [1, E]) : null }, p);
  else delta = nets.mapper.delta(w, g.input('e', [1, E]), p);
  const session = await compile({ x: synthesize(gen, w), xHat: synthesize(gen, G.add(w, G.mul(delta, alpha))) }, { name: 'edit-latents' });

  const outArg = o.out ?? `${basename(o.latents, extname(o.latents))}.${method}.png`;
  const toDir = outArg.endsWith('/') || (existsSync(outArg) && statSync(outArg).isDirectory());
  const count = toDir ? N : Math.min(N, GRID_ROWS);
  if (!toDir && N > GRID_ROWS) log(`editing the first ${GRID_ROWS} of ${N} latents (give a folder with -o for all of them)`);
  if (toDir) mkdirSync(outArg, { recursive: true });
  const rows: { label: string; images: { data: Float32Array; shape: number[] }[] }[] = [];
  const S = gen.config.size;
  for (let i = 0; i < count; i++) {
    const r = await session.run({ w: set.data.subarray(i * L * D, (i + 1) * L * D), ...feeds });
    const img = { data: r.xHat.data as Float32Array, shape: [1, 3, S, S] };
    if (toDir) {
      const path = join(outArg, `${String(i).padStart(5, '0')}.png`);
      await writeImage(path, new TensorData('float32', img.shape, img.data));
      console.log(resolve(path));
    } else rows.push({ label: `${i}: ${desc.join(', ')}`, images: [{ data: r.x.data as Float32Array, shape: [1, 3, S, S] }, img] });
  }
  if (!toDir) {
    // one PNG: rows of source | edited
    await writeImage(outArg, gridTensor(rows));
    console.log(resolve(outArg));
  }
}
