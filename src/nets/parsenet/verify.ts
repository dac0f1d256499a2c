// `clipmapper verify` for a parsenet/ fixture folder: the U-Net forward, labels and hair mask
// (io.safetensors), a VJP through the network (grad.safetensors), and HairCLIP's background and
// average-Lab losses with their gradients (losses.safetensors).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { fixtureTensor, hostF32, readFixture, suggestedAtol, sumAll, sumLossAtol, u8ToFloat } from '../common.ts';
import { backgroundLoss, backgroundLossMask } from '../../losses/parsing.ts';
import { avgLabLoss, imageToLab, maskedAverage, xyzToLab, rgbToXyz } from '../../losses/color.ts';
import { PARSENET_HAIR, backgroundMask, classMask, hairMask, loadParsenet, parseLabels, parserInput, unetForward } from './unet.ts';

const EXACT = { atol: 0, rtol: 0 };

function checkpointIn(dir: string): string | undefined {
  return readdirSync(dir).find((f) => /parsenet.*\.(pt|pth)$/i.test(f));
}

export function detect(dir: string): boolean {
  try { return checkpointIn(dir) !== undefined; } catch { return false; }
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ckpt = checkpointIn(dir);
  if (!ckpt) throw new Error(`verify parsenet: no parser checkpoint (*parsenet*.pt / .pth) in ${dir}`);
  const net = loadParsenet(join(dir, ckpt));
  const lines: CompareLine[] = [];

  // --- io: shrink, logits, labels, hair mask at full resolution
  {
    const io = readFixture(dir, 'io.safetensors');
    const atol = suggestedAtol(io.metadata);
    const t = (n: string) => fixtureTensor(io, n, 'io.safetensors');
    const xu8 = t('x_u8');
    const shape = [...xu8.shape];
    const size = t('parser_input').shape[2];
    const g = new G.Graph('parsenet-io');
    const x = g.input('x', shape);
    const pin = parserInput(x, size);
    const logits = unetForward(net, pin);
    const r = await evaluate({
      pin, logits, labels: parseLabels(logits),
      mask: classMask(logits, PARSENET_HAIR, [shape[2], shape[3]]),
    }, { x: { data: u8ToFloat(xu8, 128, 1 / 128), shape } });
    lines.push(compare('io.parser_input', r.pin.data as Float32Array, t('parser_input').data as Float32Array, { atol: atol.parser_input ?? 1e-7, rtol: 0 }));
    lines.push(compare('io.logits', r.logits.data as Float32Array, t('logits').data as Float32Array, { atol: atol.logits ?? 5e-5, rtol: 0 }));
    lines.push(compare('io.labels', r.labels.data as BigInt64Array, t('labels').data as Uint8Array, EXACT));
    lines.push(compare('io.hair_mask', r.mask.data as Float32Array, t('hair_mask').data as Uint8Array, EXACT));
  }

  // --- grad: sum(softmax(net(p))[:, hair] * R), d/dp
  {
    const gr = readFixture(dir, 'grad.safetensors');
    const atol = suggestedAtol(gr.metadata);
    const t = (n: string) => fixtureTensor(gr, n, 'grad.safetensors');
    const p = t('parser_input'); const R = t('R');
    const g = new G.Graph('parsenet-grad');
    const pi = g.input('p', p.shape); const Ri = g.input('R', R.shape);
    const prob = G.select(G.softmax(unetForward(net, pi), 1), 1, PARSENET_HAIR);
    const loss = sumAll(G.mul(prob, Ri));
    const [gp] = G.grad(loss, [pi]);
    const r = await evaluate({ prob, loss, gp }, { p: hostF32(p), R: hostF32(R) });
    for (const [name, key] of [['hair_prob', 'prob'], ['loss', 'loss'], ['grad.parser_input', 'gp']] as const) {
      const a = atol[name] ?? 1e-5;
      const tl = name === 'loss' ? sumLossAtol(a, t('hair_prob').data as Float32Array, R.data as Float32Array, (t('loss').data as Float32Array)[0]) : a;
      lines.push(compare(`grad.${name}`, r[key].data as Float32Array, t(name).data as Float32Array, { atol: tl, rtol: 0 }));
    }
  }

  // --- HairCLIP losses: masks from the parser, BackgroundLoss and AvgLabLoss, d/dx_hat
  {
    const ls = readFixture(dir, 'losses.safetensors');
    const atol = suggestedAtol(ls.metadata);
    const t = (n: string) => fixtureTensor(ls, n, 'losses.safetensors');
    const tol = (n: string) => ({ atol: atol[n] ?? 1e-5, rtol: 0 });
    const shape = [...t('x_u8').shape];
    // the parser size is named in the metadata ("AdaptiveAvgPool2d((48,48))"); otherwise HairCLIP's
    // 2x relation between image and parser input (1024 -> 512), which the fixture keeps
    const named = /AdaptiveAvgPool2d\(\((\d+),\s*(\d+)\)\)/.exec(ls.metadata.sizes ?? '');
    const opts = { parserSize: named ? Number(named[1]) : shape[2] / 2 };
    const g = new G.Graph('parsenet-losses');
    const x = g.input('x', shape); const xh = g.input('x_hat', shape); const ref = g.input('ref', shape);
    const hx = hairMask(net, x, opts); const hxh = hairMask(net, xh, opts); const href = hairMask(net, ref, opts);
    const bgMask = backgroundLossMask(backgroundMask(net, x, opts), backgroundMask(net, xh, opts));
    const bg = backgroundLoss(x, xh, backgroundMask(net, x, opts), backgroundMask(net, xh, opts));
    const color = avgLabLoss(ref, xh, href, hxh);
    const maintain = avgLabLoss(x, xh, hx, hxh);
    const [gBg] = G.grad(bg, [xh]);
    const [gColor] = G.grad(color, [xh]);
    const [gMaintain] = G.grad(maintain, [xh]);
    const avgX = maskedAverage(imageToLab(x), hx);
    const avgXh = maskedAverage(imageToLab(xh), hxh);
    const avgRef = maskedAverage(imageToLab(ref), href);
    const r = await evaluate({ hx, hxh, href, bgMask, bg, gBg, color, gColor, maintain, gMaintain, avgX, avgXh, avgRef }, {
      x: { data: u8ToFloat(t('x_u8'), 128, 1 / 128), shape },
      x_hat: { data: u8ToFloat(t('x_hat_u8'), 128, 17 / 2048), shape },
      ref: { data: u8ToFloat(t('ref_u8'), 128, 1 / 128), shape },
    });
    const cmp = (name: string, key: string, tl = tol(name)) =>
      lines.push(compare(`losses.${name}`, r[key].data as Float32Array, t(name).data as Float32Array, tl));
    cmp('hair_mask.x', 'hx', EXACT); cmp('hair_mask.x_hat', 'hxh', EXACT); cmp('hair_mask.ref', 'href', EXACT);
    cmp('bg.mask', 'bgMask', EXACT);
    cmp('bg.loss', 'bg'); cmp('bg.grad.x_hat', 'gBg');
    cmp('lab_avg.x', 'avgX'); cmp('lab_avg.x_hat', 'avgXh'); cmp('lab_avg.ref', 'avgRef');
    cmp('color.loss', 'color'); cmp('color.grad.x_hat', 'gColor');
    cmp('maintain.loss', 'maintain'); cmp('maintain.grad.x_hat', 'gMaintain');

    // the Lab conversion alone
    const rgb = t('lab.rgb'); const R = t('lab.R');
    const g2 = new G.Graph('lab');
    const ri = g2.input('rgb', rgb.shape); const Ri = g2.input('R', R.shape);
    const lab = xyzToLab(rgbToXyz(ri));
    const [grgb] = G.grad(G.reduceSum(G.mul(lab, Ri)), [ri]);
    const r2 = await evaluate({ lab, grgb }, { rgb: hostF32(rgb), R: hostF32(R) });
    lines.push(compare('losses.lab.out', r2.lab.data as Float32Array, t('lab.out').data as Float32Array, tol('lab.out')));
    lines.push(compare('losses.lab.grad.rgb', r2.grgb.data as Float32Array, t('lab.grad.rgb').data as Float32Array, tol('lab.grad.rgb')));
  }
  return lines;
}
