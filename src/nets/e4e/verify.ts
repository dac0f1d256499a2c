// `clipmapper verify` for an e4e/ fixture folder: encoder codes, pSp codes (+ latent_avg), the
// body taps and the base code (io.safetensors), and a VJP of sum(codes * R) (grad.safetensors).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { compareWithin, kinkSpread } from '../../verify/kinks.ts';
import { readmeAtol, fixtureTensor, hostF32, readFixture, suggestedAtol, sumAll, sumLossAtol } from '../common.ts';
import { e4eCodes, e4eEncode, loadE4e, type E4eTaps } from './e4e.ts';

/**
 * io.safetensors carries no tolerance metadata; its README's "suggested atol" column is read
 * when the folder has the README, else these values (that column for the published fixtures).
 */
const IO_ATOL_DEFAULT: Record<string, number> = {
  codes: 1e-6, codes_plus_latent_avg: 5e-6, 'act.c1': 5e-6, 'act.c2': 5e-6, 'act.c3': 2e-6, 'act.w0': 1e-6,
};

function checkpointIn(dir: string): string | undefined {
  return readdirSync(dir).find((f) => /e4e.*\.(pt|pth)$/i.test(f));
}

export function detect(dir: string): boolean {
  try { return checkpointIn(dir) !== undefined; } catch { return false; }
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ckpt = checkpointIn(dir);
  if (!ckpt) throw new Error(`verify e4e: no e4e checkpoint (*e4e*.pt) in ${dir}`);
  const io = readFixture(dir, 'io.safetensors');
  // the fixture's get_blocks layout (metadata `blocks`: [[in, depth, units], ...]) settles stage
  // boundaries the weights cannot show (a stage that keeps the width)
  const blocks = io.metadata.blocks ? (JSON.parse(io.metadata.blocks) as [number, number, number][]) : undefined;
  const net = loadE4e(join(dir, ckpt), 'e4e', { stages: blocks?.map(([inChannel, depth, units]) => ({ inChannel, depth, units })) });
  const lines: CompareLine[] = [];
  const IO_ATOL = { ...IO_ATOL_DEFAULT, ...readmeAtol(dir, 'io.safetensors') };

  {
    const t = (n: string) => fixtureTensor(io, n, 'io.safetensors');
    const x = t('input');
    const g = new G.Graph('e4e-io');
    const xi = g.input('x', x.shape);
    const taps: E4eTaps = {};
    const codes = e4eEncode(net, xi, { taps });
    const plus = e4eCodes(net, xi);
    const r = await evaluate({ codes, codes_plus_latent_avg: plus, 'act.c1': taps.c1!, 'act.c2': taps.c2!, 'act.c3': taps.c3!, 'act.w0': taps.w0! }, { x: hostF32(x) });
    lines.push(compare('io.latent_avg', net.latentAvg ?? new Float32Array(0), t('latent_avg').data as Float32Array, { atol: 0, rtol: 0 }));
    for (const name of Object.keys(IO_ATOL_DEFAULT)) {
      lines.push(compare(`io.${name}`, r[name].data as Float32Array, t(name).data as Float32Array, { atol: IO_ATOL[name], rtol: 0 }));
    }
  }

  {
    const gr = readFixture(dir, 'grad.safetensors');
    const atol = suggestedAtol(gr.metadata);
    const t = (n: string) => fixtureTensor(gr, n, 'grad.safetensors');
    const x = t('x'); const R = t('R');
    const g = new G.Graph('e4e-grad');
    const xi = g.input('x', x.shape); const Ri = g.input('R', R.shape);
    const codes = e4eEncode(net, xi);
    const loss = sumAll(G.mul(codes, Ri));
    const [gx] = G.grad(loss, [xi]);
    const feeds = { x: hostF32(x), R: hostF32(R) };
    const r = await evaluate({ codes, loss, gx }, feeds);
    for (const [name, key] of [['codes', 'codes'], ['loss', 'loss']] as const) {
      let a = atol[name] ?? 1e-5;
      if (name === 'loss') {
        // both sides are float32 sums: the reference's summation rounding (sumLossAtol) and ours
        // (our float32 loss vs the exact sum of our own terms) both add to the atol
        const Rv = R.data as Float32Array; const cv = r.codes.data as Float32Array;
        let exact = 0; for (let i = 0; i < cv.length; i++) exact += cv[i] * Rv[i];
        a = sumLossAtol(a + Math.abs((r.loss.data as Float32Array)[0] - exact), t('codes').data as Float32Array, Rv, (t('loss').data as Float32Array)[0]);
      }
      lines.push(compare(`grad.${name}`, r[key].data as Float32Array, t(name).data as Float32Array, { atol: a, rtol: 0 }));
    }
    // d loss / d x passes through every PReLU / LeakyReLU / ReLU of the encoder: elements behind
    // a unit that sits within rounding of its kink get that unit's branch jump added to their atol
    // (src/verify/kinks.ts); every other element keeps the strict tolerance
    const gradAt = async (xv: Float32Array) => [(await evaluate({ gx }, { x: { data: xv, shape: [...x.shape] }, R: hostF32(R) })).gx.data as Float32Array];
    const g0 = r.gx.data as Float32Array;
    const [spread] = await kinkSpread(gradAt, hostF32(x).data, [g0]);
    lines.push(compareWithin('grad.grad.x', g0, t('grad.x').data as Float32Array, atol['grad.x'] ?? 1e-5, spread));
  }
  return lines;
}
