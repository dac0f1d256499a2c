// Tiny, mutually compatible networks for the photo-edit tests, the server tests, the load bench
// and the browser test — written as ordinary checkpoint files so the CLI and the server load
// them through the same code as the real ones.
//
// The fixtures of test/fixtures were made one network at a time and do not fit together as they
// are (e4e gives w+ [8, 16]; the tiny G takes [8, 64]; the mapper fixtures are 32 wide; HairCLIP
// splits w+ at rows 4 and 8, so it needs a generator with more than 8 rows). So:
//   set 'g32'  the fixture G itself (test/fixtures/stylegan2/tiny_g.pt: 32 px, w+ [8, 64]) with a
//              StyleCLIP SingleMapper of width 64 (fresh init) and e4e = the fixture e4e's body
//              (input layer, IR-SE units, lateral convs: the stored weights) with its style heads
//              re-made for [8, 64];
//   set 'g64'  a 64 px generator with w+ [10, 32] (random init as the official constructor, seeded),
//              the fixture HairCLIP mapper (32 wide, CLIP width 32) as it is, an FFCLIP mapper of
//              width 32 with 10 rows (fresh init), e4e = the fixture body with heads for [10, 32];
//   both       the fixture tiny CLIP (embed 32) and the fixture tiny U-Net parser.
import { existsSync, mkdirSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { TensorData } from '../io/tensor.ts';
import { saveTorchZip, type Writable } from '../io/testing.ts';
import { serializeCheckpoint } from '../mappers/checkpoint.ts';
import { StyleClipMapper } from '../mappers/styleclip.ts';
import { FfclipMapper } from '../mappers/ffclip.ts';
import { loadE4e, e4eEncoderSpec, type E4eConfig } from '../nets/e4e/e4e.ts';
import { randomGenerator, type GeneratorConfig } from '../nets/stylegan2/stylegan2.ts';
import type { Weights } from '../nets/common.ts';
import { randomStateDict } from '../nets/testing.ts';
import { Rng } from '../train/rng.ts';

const FIX = (p: string) => fileURLToPath(new URL(`../../test/fixtures/${p}`, import.meta.url));
export const TEST_IMAGES = {
  astronaut: FIX('images/astronaut.png'),
  chelsea: FIX('images/chelsea.png'),
};

export interface TinySet {
  generator: string;
  e4e: string;
  mapper: string;
  clip: string;
  parser: string;
}
export interface TinyWeights {
  dir: string;
  /** StyleCLIP on the fixture G (32 px, w+ [8, 64]) */
  styleclip: TinySet;
  /** HairCLIP (the fixture mapper) on a 64 px G with w+ [10, 32] */
  hairclip: TinySet;
  /** FFCLIP on the same 64 px G */
  ffclip: TinySet;
}

const G64: GeneratorConfig = { size: 64, styleDim: 32, nMlp: 2, lrMlp: 0.01, channels: { 4: 32, 8: 32, 16: 32, 32: 32, 64: 32 }, blurSize: 4 };

/** The fixture e4e's body with style heads for w+ [rows, width] (new heads: seeded random init). */
function e4eFor(rows: number, width: number, seed: number): Uint8Array {
  const base = loadE4e(FIX('e4e/tiny_e4e.pt'));
  const c = base.config;
  const conv0 = c.styleConvs[0];
  const config: E4eConfig = {
    ...c, styleCount: rows, styleDim: width,
    styleConvs: Array.from({ length: rows }, (_, i) => (i < c.coarseInd ? conv0 : i < c.middleInd ? conv0 + 1 : conv0 + 2)),
  };
  const spec = e4eEncoderSpec(config);
  const fresh = randomStateDict(spec, seed);
  const sd: Record<string, Writable> = {};
  for (const k of spec) {
    const old = base.weights.sd.get(k.key);
    const keep = old && old.shape.length === k.shape.length && old.shape.every((d, i) => d === k.shape[i]) && !k.key.startsWith('styles.');
    const t = keep ? old : fresh.get(k.key)!;
    if (t) sd[`encoder.${k.key}`] = t;
  }
  const rng = new Rng(seed + 1);
  const avg = rng.normals(width).map((v) => v * 0.5);
  const latentAvg = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) latentAvg.set(avg, r * width);
  return saveTorchZip({
    state_dict: sd,
    opts: { stylegan_size: 2 ** ((rows + 2) / 2), encoder_type: 'Encoder4Editing', start_from_latent_avg: true },
    latent_avg: new TensorData('float32', [rows, width], latentAvg),
  }, { root: 'tiny_e4e' });
}

function generatorFile(config: GeneratorConfig, seed: number): Uint8Array {
  const gen = randomGenerator(config, seed);
  const sd: Record<string, Writable> = {};
  for (const [k, v] of (gen.P as Weights).sd) sd[k] = v;
  const avg = new Rng(seed + 7).normals(config.styleDim).map((v) => v * 0.3);
  return saveTorchZip({ g_ema: sd, latent_avg: new TensorData('float32', [config.styleDim], avg) }, { root: 'tiny_g64' });
}

const VERSION = 'v1';

/**
 * Writes the tiny weight files (once per checkout state: the folder is keyed by the fixtures'
 * hashes) and returns their paths. `dir` defaults to a folder under the OS temp dir.
 */
export function tinyWeights(dir?: string): TinyWeights {
  const h = createHash('sha256').update(VERSION);
  for (const f of ['e4e/tiny_e4e.pt', 'stylegan2/tiny_g.pt', 'mapper/tiny_hairclip_mapper.pt']) h.update(readFileSync(FIX(f)));
  const root = dir ?? join(tmpdir(), `clipmapper-tiny-${h.digest('hex').slice(0, 12)}`);
  mkdirSync(root, { recursive: true });
  const file = (name: string, make: () => Uint8Array) => {
    const p = join(root, name);
    if (!existsSync(p)) {
      const tmp = `${p}.tmp-${process.pid}`;
      writeFileSync(tmp, make());
      // rename is atomic: parallel test files may race to write the same file
      try { renameSync(tmp, p); } catch { /* another writer won */ }
    }
    return p;
  };
  const clip = FIX('clip/tiny_clip.safetensors');
  const parser = FIX('parsenet/tiny_parsenet.pt');
  const g64 = file('g64.pt', () => generatorFile(G64, 64));
  const e4e32 = file('e4e_8x64.pt', () => e4eFor(8, 64, 11));
  const e4e64 = file('e4e_10x32.pt', () => e4eFor(10, 32, 12));
  const styleclip = file('styleclip_single_64.pt', () => serializeCheckpoint(StyleClipMapper.create({ type: 'SingleMapper', width: 64 }, 5).checkpoint(), 'styleclip'));
  const ffclip = file('ffclip_10x32.pt', () => serializeCheckpoint(FfclipMapper.create({ width: 32, layers: 10 }, 6).checkpoint(), 'ffclip'));
  return {
    dir: root,
    styleclip: { generator: FIX('stylegan2/tiny_g.pt'), e4e: e4e32, mapper: styleclip, clip, parser },
    hairclip: { generator: g64, e4e: e4e64, mapper: FIX('mapper/tiny_hairclip_mapper.pt'), clip, parser },
    ffclip: { generator: g64, e4e: e4e64, mapper: ffclip, clip, parser },
  };
}
