// Test helpers for the trainers: the tiny official-format networks of test/fixtures, fitted
// together (src/pipeline/testing.ts: the 32 px fixture G for StyleCLIP; a 64 px G with w+ [10, 32]
// for HairCLIP and FFCLIP, whose row split / 32-d text need it), and a fixed evaluation batch.
import { fileURLToPath } from 'node:url';
import { ClipModel } from '../nets/clip/clip.ts';
import { loadIrse } from '../nets/arcface/irse.ts';
import { loadParsenet } from '../nets/parsenet/unet.ts';
import { loadGenerator } from '../nets/stylegan2/stylegan2.ts';
import { tinyWeights, TEST_IMAGES } from '../pipeline/testing.ts';
import type { TrainNets } from './common.ts';
import type { StepResult } from './trainer.ts';

const FIX = (p: string) => fileURLToPath(new URL(`../../test/fixtures/${p}`, import.meta.url));

export const TINY = {
  clip: FIX('clip/tiny_clip.safetensors'),
  arcface: FIX('arcface/tiny_irse.pt'),
  parser: FIX('parsenet/tiny_parsenet.pt'),
  g32: FIX('stylegan2/tiny_g.pt'),
  /** the 64 px generator file (written once per checkout state, src/pipeline/testing.ts) */
  g64: () => tinyWeights().hairclip.generator,
  images: [TEST_IMAGES.astronaut, TEST_IMAGES.chelsea],
};

/** The tiny networks with the 32 px (w+ [8, 64]) or 64 px (w+ [10, 32]) generator. */
export function tinyNets(size: 32 | 64): TrainNets {
  return {
    generator: loadGenerator(size === 32 ? TINY.g32 : TINY.g64()),
    clip: ClipModel.load(TINY.clip),
    arcface: loadIrse(TINY.arcface),
    parser: loadParsenet(TINY.parser),
  };
}

/** Mean of each loss term over fixed samples, parameters untouched (the step's gradient is discarded). */
export async function meanLosses<S>(step: (s: S) => Promise<StepResult>, samples: S[]): Promise<Record<string, number>> {
  const sum: Record<string, number> = {}; const cnt: Record<string, number> = {};
  for (const s of samples) {
    const r = await step(s);
    for (const [k, v] of Object.entries(r.losses)) { sum[k] = (sum[k] ?? 0) + v; cnt[k] = (cnt[k] ?? 0) + 1; }
  }
  return Object.fromEntries(Object.keys(sum).map((k) => [k, sum[k] / cnt[k]]));
}
