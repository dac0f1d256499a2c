// `clipmapper verify` for an arcface/ fixture folder: the IR-SE backbone forward (io.safetensors),
// the cosine-loss gradient and HairCLIP's ID loss with its gradient (grad.safetensors).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { compareWithin, kinkSpread } from '../../verify/kinks.ts';
import { readmeAtol, fixtureTensor, hostF32, readFixture, suggestedAtol, u8ToFloat } from '../common.ts';
import { idFeatures, idLoss, irseForward, loadIrse, type IrseStage, type IrseTaps } from './irse.ts';

/**
 * io.safetensors carries no tolerance metadata; its README's "suggested atol" column is read
 * when the folder has the README, else these values (that column for the published fixtures).
 */
const IO_ATOL_DEFAULT: Record<string, number> = { embedding: 5e-6, 'act.body': 5e-6, 'act.output_layer_prenorm': 1e-5 };

function checkpointIn(dir: string): string | undefined {
  return readdirSync(dir).find((f) => /ir_?se.*\.(pt|pth)$/i.test(f));
}

/**
 * The patched get_blocks list the fixture records (`blocks`: [[in_channel, depth, num_units], ...]).
 * The weights show every unit's widths but not which unit opens a stage when two adjacent stages
 * share a depth; the recorded list settles it (and is checked against the weights).
 */
function stagesFromMetadata(meta: Record<string, string>): IrseStage[] | undefined {
  if (!meta.blocks) return undefined;
  const b = JSON.parse(meta.blocks) as unknown;
  if (!Array.isArray(b) || !b.every((s) => Array.isArray(s) && s.length === 3 && s.every(Number.isInteger))) {
    throw new Error(`verify arcface: io.safetensors metadata 'blocks' is not a list of [in_channel, depth, num_units]: ${meta.blocks}`);
  }
  return (b as number[][]).map(([inChannel, depth, units]) => ({ inChannel, depth, units }));
}

/**
 * An input gradient against its per-tensor atol, widened only at the elements behind a PReLU / ReLU
 * that sits within rounding of its kink (src/verify/kinks.ts: float32 summation order may put such
 * a unit on the other side than the reference did); every other element keeps the strict atol.
 * `gradAt` re-evaluates the gradient at a moved input.
 */
async function compareGradient(
  name: string, got: Float32Array, ref: Float32Array, atol: number, x: Float32Array,
  gradAt: (x: Float32Array) => Promise<Float32Array>,
): Promise<CompareLine> {
  const [spread] = await kinkSpread(async (xv) => [await gradAt(xv)], x, [got]);
  return compareWithin(name, got, ref, atol, spread);
}

export function detect(dir: string): boolean {
  try { return checkpointIn(dir) !== undefined; } catch { return false; }
}

export async function verify(dir: string): Promise<CompareLine[]> {
  const ckpt = checkpointIn(dir);
  if (!ckpt) throw new Error(`verify arcface: no IR-SE checkpoint (*irse*.pt / *ir_se*.pth) in ${dir}`);
  const io = readFixture(dir, 'io.safetensors');
  const net = loadIrse(join(dir, ckpt), 'IR-SE backbone', { stages: stagesFromMetadata(io.metadata) });
  const lines: CompareLine[] = [];
  const IO_ATOL = { ...IO_ATOL_DEFAULT, ...readmeAtol(dir, 'io.safetensors') };

  // --- forward and hooks
  const x = fixtureTensor(io, 'input', 'io.safetensors');
  {
    const g = new G.Graph('irse-io');
    const xi = g.input('x', x.shape);
    const taps: IrseTaps = {};
    const emb = irseForward(net, xi, taps);
    const r = await evaluate({ embedding: emb, 'act.body': taps.body!, 'act.output_layer_prenorm': taps.prenorm! }, { x: hostF32(x) });
    for (const name of Object.keys(IO_ATOL_DEFAULT)) {
      lines.push(compare(`io.${name}`, r[name].data as Float32Array, fixtureTensor(io, name, 'io.safetensors').data as Float32Array, { atol: IO_ATOL[name], rtol: 0 }));
    }
  }

  const gr = readFixture(dir, 'grad.safetensors');
  const atol = suggestedAtol(gr.metadata);
  const ref = (n: string) => fixtureTensor(gr, n, 'grad.safetensors').data as Float32Array;
  const tol = (n: string) => ({ atol: atol[n] ?? 1e-5, rtol: 0 });

  // --- cosine path: sum_b (1 - cos(net(x)_b, e_b)), gradient w.r.t. x
  {
    const cx = fixtureTensor(gr, 'cos.x'); const ce = fixtureTensor(gr, 'cos.e');
    const g = new G.Graph('irse-cos');
    const xi = g.input('x', cx.shape); const ei = g.input('e', ce.shape);
    const emb = irseForward(net, xi);
    const loss = G.reduceSum(G.sub(1, G.cosineSimilarity(emb, ei, 1)));
    const [gx] = G.grad(loss, [xi]);
    const r = await evaluate({ emb, loss, gx }, { x: hostF32(cx), e: hostF32(ce) });
    lines.push(compare('grad.cos.embedding', r.emb.data as Float32Array, ref('cos.embedding'), tol('cos.embedding')));
    lines.push(compare('grad.cos.loss', r.loss.data as Float32Array, ref('cos.loss'), tol('cos.loss')));
    const gradAt = async (xv: Float32Array) => (await evaluate({ gx }, { x: { data: xv, shape: [...cx.shape] }, e: hostF32(ce) })).gx.data as Float32Array;
    lines.push(await compareGradient('grad.cos.grad.x', r.gx.data as Float32Array, ref('cos.grad.x'), tol('cos.grad.x').atol, hostF32(cx).data, gradAt));
  }

  // --- HairCLIP IDLoss(y_hat, y = mirror of y_hat); the target features are detached. IDLoss pools
  // its crop to 112, so a folder for a 224-input backbone cannot have this part
  if (gr.tensors.has('idloss.y_hat_u8')) {
    const u8 = fixtureTensor(gr, 'idloss.y_hat_u8');
    const shape = [...u8.shape];
    const yHat = u8ToFloat(u8, 128, 1 / 128);
    const Wd = shape[3];
    const y = new Float32Array(yHat.length);
    for (let i = 0; i < yHat.length; i += Wd) for (let j = 0; j < Wd; j++) y[i + j] = yHat[i + Wd - 1 - j];
    const g = new G.Graph('irse-idloss');
    const yh = g.input('y_hat', shape); const yi = g.input('y', shape);
    const fyh = idFeatures(net, yh);
    const fy = idFeatures(net, yi);
    const loss = idLoss(fyh, fy);
    const [gyh] = G.grad(loss, [yh]); // y does not depend on y_hat: its features act as a constant
    const r = await evaluate({ fyh, fy, loss, gyh }, { y_hat: { data: yHat, shape }, y: { data: y, shape } });
    lines.push(compare('grad.idloss.y_hat_feats', r.fyh.data as Float32Array, ref('idloss.y_hat_feats'), tol('idloss.y_hat_feats')));
    lines.push(compare('grad.idloss.y_feats', r.fy.data as Float32Array, ref('idloss.y_feats'), tol('idloss.y_feats')));
    lines.push(compare('grad.idloss.loss', r.loss.data as Float32Array, ref('idloss.loss'), tol('idloss.loss')));
    // only y_hat moves: y (and with it the detached target features) stays fixed
    const gradAt = async (v: Float32Array) => (await evaluate({ gyh }, { y_hat: { data: v, shape }, y: { data: y, shape } })).gyh.data as Float32Array;
    lines.push(await compareGradient('grad.idloss.grad.y_hat', r.gyh.data as Float32Array, ref('idloss.grad.y_hat'), tol('idloss.grad.y_hat').atol, yHat, gradAt));
  }
  return lines;
}
