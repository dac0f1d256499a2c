// `clipmapper verify` for an arcface/ fixture folder: the IR-SE backbone forward (io.safetensors),
// the cosine-loss gradient and HairCLIP's ID loss with its gradient (grad.safetensors).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { evaluate, type HostTensor } from '../../runtime/session.ts';
import { compare, type CompareLine } from '../../verify/compare.ts';
import { readmeAtol, fixtureTensor, hostF32, readFixture, suggestedAtol, u8ToFloat } from '../common.ts';
import { idFeatures, idLoss, irseForward, loadIrse, type IrseStage, type IrseTaps } from './irse.ts';
import { explainByKinkFlips, type KinkSite } from './kinks.ts';

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
 * A gradient against its per-tensor atol; when that fails, the one float32 effect the atol does not
 * cover is tested (kinks.ts): a pre-activation within ~1e-7 of a PReLU/ReLU kink that our summation
 * order puts on the other side. The line passes only if flipping a few such elements accounts for
 * the whole difference; its rule then names them.
 */
async function compareGradient(
  name: string, got: Float32Array, ref: Float32Array, atol: number,
  build: (g: G.Graph) => { loss: Tensor; wrt: Tensor; sites: KinkSite[] }, feeds: Record<string, HostTensor>,
): Promise<CompareLine> {
  const line = compare(name, got, ref, { atol, rtol: 0 });
  if (line.pass) return line;
  const ex = await explainByKinkFlips({ build, feeds, got, ref, atol });
  if (!ex) return line;
  const where = ex.flips.map((f) => `${f.site}[${f.index}] z=${f.z.toExponential(1)}`).join(', ');
  return { ...line, pass: true, rule: `atol ${atol} after ${ex.flips.length} kink flip(s) (${where}): max ${ex.maxAbs.toExponential(2)}` };
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
    const build = (g: G.Graph) => {
      const xi = g.input('x', cx.shape); const ei = g.input('e', ce.shape);
      const taps: IrseTaps = { kinks: [] };
      const emb = irseForward(net, xi, taps);
      const loss = G.reduceSum(G.sub(1, G.cosineSimilarity(emb, ei, 1)));
      return { xi, emb, loss, wrt: xi, sites: taps.kinks! };
    };
    const { xi, emb, loss } = build(new G.Graph('irse-cos'));
    const [gx] = G.grad(loss, [xi]);
    const feeds = { x: hostF32(cx), e: hostF32(ce) };
    const r = await evaluate({ emb, loss, gx }, feeds);
    lines.push(compare('grad.cos.embedding', r.emb.data as Float32Array, ref('cos.embedding'), tol('cos.embedding')));
    lines.push(compare('grad.cos.loss', r.loss.data as Float32Array, ref('cos.loss'), tol('cos.loss')));
    lines.push(await compareGradient('grad.cos.grad.x', r.gx.data as Float32Array, ref('cos.grad.x'), tol('cos.grad.x').atol, build, feeds));
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
    const build = (g: G.Graph) => {
      const yh = g.input('y_hat', shape); const yi = g.input('y', shape);
      const taps: IrseTaps = { kinks: [] }; // only y_hat's path is differentiated
      const fyh = idFeatures(net, yh, taps);
      const fy = idFeatures(net, yi);
      return { yh, fyh, fy, loss: idLoss(fyh, fy), wrt: yh, sites: taps.kinks! };
    };
    const { yh, fyh, fy, loss } = build(new G.Graph('irse-idloss'));
    const [gyh] = G.grad(loss, [yh]); // y does not depend on y_hat: its features act as a constant
    const feeds = { y_hat: { data: yHat, shape }, y: { data: y, shape } };
    const r = await evaluate({ fyh, fy, loss, gyh }, feeds);
    lines.push(compare('grad.idloss.y_hat_feats', r.fyh.data as Float32Array, ref('idloss.y_hat_feats'), tol('idloss.y_hat_feats')));
    lines.push(compare('grad.idloss.y_feats', r.fy.data as Float32Array, ref('idloss.y_feats'), tol('idloss.y_feats')));
    lines.push(compare('grad.idloss.loss', r.loss.data as Float32Array, ref('idloss.loss'), tol('idloss.loss')));
    lines.push(await compareGradient('grad.idloss.grad.y_hat', r.gyh.data as Float32Array, ref('idloss.grad.y_hat'), tol('idloss.grad.y_hat').atol, build, feeds));
  }
  return lines;
}
