// Evaluating a trained mapper on a latent set, in the layout of the papers' tables
// (hairclip.md §12, ffclip.md §8): for each edit (prompt / hairstyle / colour),
//
//   CLIP score   cos(E_I(x), E_T(prompt)) with CLIP's own preprocessing (antialiased bicubic to
//                224, mean/std), for the source x = G(w) and the edit x_hat = G(w + a M(w, c));
//                the edit should raise it
//   IDS          identity similarity: cos(ArcFace(x_hat), ArcFace(x)) (IR-SE50, the ID-loss crop)
//   PSNR / MSE   on the pixels that are not hair in either image (parser masks, as HairCLIP's
//                background loss defines the region to preserve), images in [-1, 1]:
//                MSE = sum m (x - x_hat)^2 / (3 sum m),  PSNR = 10 log10(2^2 / MSE)
//                (without a parser: over the whole image)
// each the mean over the latents. A combined HairCLIP edit (hairstyle and colour) scores the mean
// of its two prompts' cosines. One forward session per (condition variant, batch size), with the
// mapper's parameters baked in as constants.
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { compile, type Compiled } from '../runtime/session.ts';
import { clipScore } from '../losses/clip.ts';
import { identitySimilarity } from '../losses/identity.ts';
import { defaultParserSize, parseMasks } from '../losses/masks.ts';
import { HairClipMapper, HAIRCLIP_ALPHA } from '../mappers/hairclip.ts';
import { StyleClipMapper, STYLECLIP_ALPHA } from '../mappers/styleclip.ts';
import { FfclipMapper, FFCLIP_ALPHA } from '../mappers/ffclip.ts';
import { synthesize } from '../train/common.ts';
import { TextEmbeddings } from '../train/embed.ts';
import { colorPrompt, hairstylePrompt } from '../train/data.ts';
import type { MapperNets } from '../train/nets.ts';

/** One edit to evaluate: the prompts it is scored against and the conditions fed to the mapper. */
export interface EvalCase {
  label: string;
  /** CLIP-score prompts (the score is the mean of their cosines) */
  prompts: string[];
  /** HairCLIP conditions (text) / FFCLIP text; StyleCLIP: none */
  hairstyle?: string;
  color?: string;
  text?: string;
}

export interface EvalRow {
  label: string;
  n: number;
  clipSource: number;
  clipEdit: number;
  ids: number | null;
  mse: number;
  psnr: number;
  /** fraction of pixels in the preserved region (1 without a parser) */
  region: number;
}

/** The edits of a method from lists: StyleCLIP its prompt; HairCLIP each hairstyle, each colour, each pair; FFCLIP each prompt. */
export function evalCases(method: MapperNets['method'], o: { prompt?: string; hairstyles?: string[]; colors?: string[]; prompts?: string[] }): EvalCase[] {
  if (method === 'styleclip') {
    if (!o.prompt) throw new Error('StyleCLIP evaluation needs the prompt the mapper was trained for (--text, or opts.description in the checkpoint)');
    return [{ label: o.prompt, prompts: [o.prompt] }];
  }
  if (method === 'ffclip') {
    if (!o.prompts?.length) throw new Error('FFCLIP evaluation needs prompts (--prompts / --text)');
    return o.prompts.map((t) => ({ label: t, prompts: [t], text: t }));
  }
  const hs = o.hairstyles ?? []; const cs = o.colors ?? [];
  if (!hs.length && !cs.length) throw new Error('HairCLIP evaluation needs --hairstyles and/or --colors');
  const cases: EvalCase[] = [];
  for (const h of hs) cases.push({ label: hairstylePrompt(h), prompts: [hairstylePrompt(h)], hairstyle: h });
  for (const c of cs) cases.push({ label: colorPrompt(c), prompts: [colorPrompt(c)], color: c });
  for (const h of hs) for (const c of cs) cases.push({ label: `${hairstylePrompt(h)} + ${colorPrompt(c)}`, prompts: [hairstylePrompt(h), colorPrompt(c)], hairstyle: h, color: c });
  return cases;
}

export interface EvaluateOptions {
  /** w+ codes [N, L, D] */
  latents: Float32Array;
  cases: EvalCase[];
  batch?: number;
  /** edit strength (default: the method's: 0.1 StyleCLIP/HairCLIP, 1 FFCLIP) */
  alpha?: number;
  parserSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export async function evaluateMapper(n: MapperNets, o: EvaluateOptions): Promise<EvalRow[]> {
  const gen = n.generator;
  const L = gen.nLatent; const D = gen.config.styleDim;
  const per = L * D;
  const N = o.latents.length / per;
  if (!Number.isInteger(N) || N < 1) throw new Error(`evaluation latents: ${o.latents.length} values is not [N, ${L}, ${D}]`);
  if (!n.clip) throw new Error('evaluation needs CLIP (for the CLIP score and the text conditions)');
  const clip = n.clip;
  const B = Math.min(o.batch ?? 4, N);
  const E = clip.config.embedDim;
  const alpha = o.alpha ?? (n.mapper instanceof FfclipMapper ? FFCLIP_ALPHA : n.mapper instanceof HairClipMapper ? HAIRCLIP_ALPHA : STYLECLIP_ALPHA);
  const parserSize = o.parserSize ?? defaultParserSize(gen.config.size);
  const text = new TextEmbeddings(clip);
  const sessions = new Map<string, Promise<Compiled>>();

  const session = (c: EvalCase): Promise<Compiled> => {
    const hair = c.hairstyle !== undefined; const color = c.color !== undefined;
    const key = `${hair ? 'h' : '-'}${color ? 'c' : '-'}${c.text !== undefined ? 't' : '-'}${c.prompts.length}`;
    let s = sessions.get(key);
    if (!s) {
      const g = new G.Graph(`eval-${key}`);
      const w = g.input('w', [B, L, D]);
      const prompts = c.prompts.map((_, i) => g.input(`prompt${i}`, [1, E]));
      const p = n.mapper.params.constants(g);
      let delta: Tensor;
      if (n.mapper instanceof StyleClipMapper) delta = n.mapper.delta(w, p);
      else if (n.mapper instanceof HairClipMapper) {
        delta = n.mapper.delta(w, { hair: hair ? G.expand(g.input('e_hair', [1, E]), [B, E]) : null, color: color ? G.expand(g.input('e_color', [1, E]), [B, E]) : null }, p);
      } else delta = n.mapper.delta(w, G.expand(g.input('e_text', [1, E]), [B, E]), p);
      const wHat = G.add(w, G.mul(delta, alpha));
      const x = synthesize(gen, w);
      const xHat = synthesize(gen, wHat);
      const cp = clip.params(g);
      const score = (img: Tensor) => G.div(prompts.map((t) => clipScore(clip, cp, img, t)).reduce((a, b) => G.add(a, b)), prompts.length);
      const outs: Record<string, Tensor> = { clipSource: score(x), clipEdit: score(xHat) };
      if (n.arcface) outs.ids = identitySimilarity(n.arcface, xHat, x);
      let m: Tensor;
      if (n.parser) {
        const a = parseMasks(n.parser, x, parserSize); const b = parseMasks(n.parser, xHat, parserSize);
        m = G.mul(a.bg, b.bg);
      } else m = G.expand(g.scalar(1), [B, 1, gen.config.size, gen.config.size]);
      const d = G.sub(x, xHat);
      outs.sse = G.reduceSum(G.mul(G.mul(d, d), m), [1, 2, 3]);
      outs.count = G.mul(G.reduceSum(m, [1, 2, 3]), 3);
      s = compile(outs, { name: `eval-${key}` });
      sessions.set(key, s);
    }
    return s;
  };

  const rows: EvalRow[] = [];
  let done = 0;
  const total = o.cases.length * Math.ceil(N / B);
  for (const c of o.cases) {
    const s = await session(c);
    const feeds: Record<string, Float32Array> = {};
    for (let i = 0; i < c.prompts.length; i++) feeds[`prompt${i}`] = await text.get(c.prompts[i]);
    if (c.hairstyle !== undefined) feeds.e_hair = await text.get(hairstylePrompt(c.hairstyle));
    if (c.color !== undefined) feeds.e_color = await text.get(colorPrompt(c.color));
    if (c.text !== undefined && n.mapper instanceof FfclipMapper) feeds.e_text = await text.get(c.text);
    const acc = { clipSource: 0, clipEdit: 0, ids: 0, mse: 0, psnr: 0, region: 0 };
    for (let b0 = 0; b0 < N; b0 += B) {
      const w = new Float32Array(B * per);
      for (let b = 0; b < B; b++) w.set(o.latents.subarray(((b0 + b) % N) * per, ((b0 + b) % N + 1) * per), b * per);
      const r = await s.run({ w, ...feeds });
      const k = Math.min(B, N - b0);
      for (let b = 0; b < k; b++) {
        acc.clipSource += (r.clipSource.data as Float32Array)[b];
        acc.clipEdit += (r.clipEdit.data as Float32Array)[b];
        if (r.ids) acc.ids += (r.ids.data as Float32Array)[b];
        const cnt = (r.count.data as Float32Array)[b];
        const mse = cnt > 0 ? (r.sse.data as Float32Array)[b] / cnt : 0;
        acc.mse += mse;
        acc.psnr += mse > 0 ? 10 * Math.log10(4 / mse) : 100;
        acc.region += cnt / (3 * gen.config.size * gen.config.size);
      }
      o.onProgress?.(++done, total);
    }
    rows.push({
      label: c.label, n: N, clipSource: acc.clipSource / N, clipEdit: acc.clipEdit / N, ids: n.arcface ? acc.ids / N : null,
      mse: acc.mse / N, psnr: acc.psnr / N, region: acc.region / N,
    });
  }
  return rows;
}

/** The table: one row per edit and their mean, columns as the papers report them. */
export function formatEvalTable(method: string, rows: EvalRow[], o: { parser: boolean } = { parser: true }): string {
  const region = o.parser ? 'non-hair' : 'image';
  const head = ['edit', 'n', 'CLIP score src -> edit (↑)', 'IDS (↑)', `PSNR ${region} dB (↑)`, `MSE ${region} (↓)`];
  const fmt = (r: EvalRow) => [
    r.label, String(r.n), `${r.clipSource.toFixed(4)} -> ${r.clipEdit.toFixed(4)}`,
    r.ids === null ? 'n/a' : r.ids.toFixed(4), r.psnr.toFixed(2), r.mse.toFixed(5),
  ];
  const mean = (k: keyof EvalRow) => rows.reduce((a, r) => a + (r[k] as number), 0) / rows.length;
  const body = rows.map(fmt);
  if (rows.length > 1) {
    body.push(fmt({
      label: 'mean', n: rows[0].n, clipSource: mean('clipSource'), clipEdit: mean('clipEdit'),
      ids: rows[0].ids === null ? null : mean('ids'), mse: mean('mse'), psnr: mean('psnr'), region: mean('region'),
    }));
  }
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [`${method}`, line(head), sep, ...body.slice(0, rows.length).map(line), ...(rows.length > 1 ? [sep, line(body[body.length - 1])] : [])].join('\n');
}
