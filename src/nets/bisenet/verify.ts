// `clipmapper verify` for a faceparse/ fixture folder (BiSeNet): logits, label map and the
// intermediate features (io.safetensors), and the VJP of sum(softmax(logits)[:, hair] * R)
// (grad.safetensors).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import type { TensorData } from '../../io/tensor.ts';
import { readmeAtol, fixtureTensor, hostF32, readFixture, suggestedAtol, sumAll, sumLossAtol } from '../common.ts';
import { BISENET_HAIR, bisenetForward, bisenetLabels, loadBisenet, type BisenetTaps } from './bisenet.ts';

/**
 * io.safetensors carries no tolerance metadata; its README's "suggested atol" column is read
 * when the folder has the README, else these values (that column for the published fixtures).
 */
const IO_ATOL_DEFAULT: Record<string, number> = {
  logits: 5e-6, 'act.resnet_feat8': 1e-5, 'act.resnet_feat16': 5e-6, 'act.resnet_feat32': 2e-6,
  'act.cp_feat8_up': 1e-5, 'act.cp_feat16_up': 2e-6, 'act.ffm': 1e-5,
};

function checkpointIn(dir: string): string | undefined {
  return readdirSync(dir).find((f) => /(bisenet.*|79999_iter)\.(pt|pth)$/i.test(f));
}

export function detect(dir: string): boolean {
  try { return checkpointIn(dir) !== undefined; } catch { return false; }
}

/**
 * Label maps [N, H, W] compared exactly wherever the reference logits [N, C, H, W] separate the
 * top two classes by more than `margin`; elsewhere float rounding may legitimately swap the argmax
 * (the fixture README's advice), so those pixels are counted and skipped.
 */
function compareLabels(name: string, got: BigInt64Array, ref: TensorData, logits: Float32Array, classes: number, margin: number): CompareLine {
  const [, H, W] = ref.shape;
  const plane = H * W;
  const refLabels = ref.data as Uint8Array;
  const kept: number[] = []; const keptRef: number[] = [];
  let skipped = 0;
  for (let p = 0; p < refLabels.length; p++) {
    const n = Math.floor(p / plane); const q = p % plane;
    let top1 = -Infinity; let top2 = -Infinity;
    for (let c = 0; c < classes; c++) {
      const v = logits[(n * classes + c) * plane + q];
      if (v > top1) { top2 = top1; top1 = v; } else if (v > top2) top2 = v;
    }
    if (top1 - top2 <= margin) { skipped++; continue; }
    kept.push(Number(got[p])); keptRef.push(refLabels[p]);
  }
  const line = compare(name, kept, keptRef, { atol: 0, rtol: 0 });
  return { ...line, rule: `exact where margin > ${margin} (${skipped} pixels skipped)` };
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ckpt = checkpointIn(dir);
  if (!ckpt) throw new Error(`verify faceparse: no BiSeNet checkpoint (*bisenet*.pt / 79999_iter.pth) in ${dir}`);
  const net = loadBisenet(join(dir, ckpt));
  const lines: CompareLine[] = [];
  const IO_ATOL = { ...IO_ATOL_DEFAULT, ...readmeAtol(dir, 'io.safetensors') };

  {
    const io = readFixture(dir, 'io.safetensors');
    const t = (n: string) => fixtureTensor(io, n, 'io.safetensors');
    const x = t('input');
    const g = new G.Graph('bisenet-io');
    const xi = g.input('x', x.shape);
    const taps: BisenetTaps = {};
    const { out } = bisenetForward(net, xi, taps);
    const r = await evaluate({
      logits: out, labels: bisenetLabels(out),
      'act.resnet_feat8': taps.feat8!, 'act.resnet_feat16': taps.feat16!, 'act.resnet_feat32': taps.feat32!,
      'act.cp_feat8_up': taps.cpFeat8!, 'act.cp_feat16_up': taps.cpFeat16!, 'act.ffm': taps.ffm!,
    }, { x: hostF32(x) });
    for (const name of Object.keys(IO_ATOL_DEFAULT)) {
      lines.push(compare(`io.${name}`, r[name].data as Float32Array, t(name).data as Float32Array, { atol: IO_ATOL[name], rtol: 0 }));
    }
    const refLogits = t('logits').data as Float32Array;
    // each of the two top logits may be off by the logits tolerance
    lines.push(compareLabels('io.parsing', r.labels.data as BigInt64Array, t('parsing'), refLogits, net.config.nClasses, 2 * IO_ATOL.logits));
  }

  {
    const gr = readFixture(dir, 'grad.safetensors');
    const atol = suggestedAtol(gr.metadata);
    const t = (n: string) => fixtureTensor(gr, n, 'grad.safetensors');
    const x = t('x'); const R = t('R');
    const g = new G.Graph('bisenet-grad');
    const xi = g.input('x', x.shape); const Ri = g.input('R', R.shape);
    const prob = G.select(G.softmax(bisenetForward(net, xi).out, 1), 1, BISENET_HAIR);
    const loss = sumAll(G.mul(prob, Ri));
    const [gx] = G.grad(loss, [xi]);
    const r = await evaluate({ prob, loss, gx }, { x: hostF32(x), R: hostF32(R) });
    for (const [name, key] of [['hair_prob', 'prob'], ['loss', 'loss'], ['grad.x', 'gx']] as const) {
      const a = atol[name] ?? 1e-5;
      const tl = name === 'loss' ? sumLossAtol(a, t('hair_prob').data as Float32Array, R.data as Float32Array, (t('loss').data as Float32Array)[0]) : a;
      lines.push(compare(`grad.${name}`, r[key].data as Float32Array, t(name).data as Float32Array, { atol: tl, rtol: 0 }));
    }
  }
  return lines;
}
