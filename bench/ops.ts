// npm run bench:ops [-- --runs 7 --warmup 2 --threads N]
//
// Throughput of the conv that dominates StyleGAN2 synthesis — a [1,512,64,64] input through a
// 3x3, 512 -> 512 conv with padding 1 — built with our graph and run by ONNX Runtime:
//   forward; backward = input-gradient + weight-gradient from our VJP rules (src/graph/ops/conv.ts);
//   forward+backward as one session (y, gx, gw from x, w, gy), the way a training step runs it.
// Then the same in PyTorch on the CPU, side by side, when Debian's python3-torch is installed
// (bench/ops_peer.py under /usr/bin/python3), with the same number of intra-op threads.
// Each number is the median of several runs after warm-up; GFLOP/s counts 2 x multiply-adds
// (19.33 GFLOP per conv; the input- and weight-gradient have the same count), so fwd+bwd does 3x.
//
// It also measures ORT session options (graph optimisation level, intra-op threads, memory arena,
// execution mode) on the forward and fwd+bwd graphs, and the two gradient formulations we did not
// keep (ConvTranspose for the input-gradient, a batch/channel-swapped Conv for the weight-gradient)
// so the choice in conv.ts can be re-checked on other machines.
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import * as G from '../src/graph/index.ts';
import { convWeightGradByConv } from '../src/graph/ops/conv.ts';
import {
  CONV_BENCH, convBenchFeeds, convBenchGraph, convFlops, convPeakGflops, machineLine, timeInterleaved, type Timing,
  type TimingOptions,
  startPeer, torchMissing,
} from './common.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a non-negative number, got '${process.argv[i + 1]}'`);
  return v;
}
const timing: TimingOptions = { runs: arg('runs', 7), warmup: arg('warmup', 2) };
// ORT's default intra-op pool has one thread per physical core; PyTorch gets the same count.
const threadsArg = arg('threads', 0);
const threads = threadsArg || os.availableParallelism();

const F = convFlops();
const gflops = (flops: number, t: Timing) => flops / t.median / 1e9;
const fmt = (flops: number, t: Timing) => `${gflops(flops, t).toFixed(1).padStart(6)} GFLOP/s (${(t.median * 1e3).toFixed(1)} ms)`;

const feedData = convBenchFeeds();
const { x, w, gy, y, gx, gw } = convBenchGraph();

async function session(outs: Record<string, G.Tensor>, so: ort.InferenceSession.SessionOptions) {
  const s = await ort.InferenceSession.create(G.toOnnx(outs), { executionProviders: ['cpu'], ...so });
  const shapes: Record<string, readonly number[]> = { x: x.shape, w: w.shape, gy: gy.shape };
  const feeds = Object.fromEntries(s.inputNames.map((n) => [n, new ort.Tensor('float32', feedData[n], shapes[n] as number[])]));
  return { run: () => s.run(feeds), release: () => s.release() };
}
const PEER_PASSES = ['fwd', 'grad_input', 'grad_weight', 'fwd_bwd'] as const;

const { N, C, H, W, O, k, padding } = CONV_BENCH;
console.log(`conv [${N},${C},${H},${W}] * [${O},${C},${k},${k}], padding ${padding}: ${(F / 1e9).toFixed(2)} GFLOP per conv pass`);
console.log(`machine: ${machineLine()}; onnxruntime-node ${ort.env.versions?.node ?? ''}; median of ${timing.runs} runs after ${timing.warmup} warm-up`);

// ---------- ORT session options (all variants built first, then timed in turns) ----------
const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', ...(threadsArg ? { intraOpNumThreads: threadsArg } : {}) };
const variants: [string, ort.InferenceSession.SessionOptions][] = [
  ['graphOptimizationLevel all (project default)', base],
  ['graphOptimizationLevel disabled', { ...base, graphOptimizationLevel: 'disabled' }],
  ['graphOptimizationLevel basic', { ...base, graphOptimizationLevel: 'basic' }],
  ['graphOptimizationLevel extended', { ...base, graphOptimizationLevel: 'extended' }],
  ['intraOpNumThreads 1', { ...base, intraOpNumThreads: 1 }],
  ['intraOpNumThreads 2', { ...base, intraOpNumThreads: 2 }],
  ['enableCpuMemArena false', { ...base, enableCpuMemArena: false }],
  ['enableMemPattern false', { ...base, enableMemPattern: false }],
  ['executionMode parallel (interOpNumThreads 2)', { ...base, executionMode: 'parallel', interOpNumThreads: 2 }],
];
{
  const sessions: Record<string, Awaited<ReturnType<typeof session>>> = {};
  for (const [name, so] of variants) {
    sessions[`f ${name}`] = await session({ y }, so);
    sessions[`b ${name}`] = await session({ y, gx, gw }, so);
  }
  // frozen networks have constant weights, which lets ORT's optimiser move the conv to its
  // blocked NCHWc layout (not possible for a weight fed at run time, as StyleGAN2's modulated one)
  const gc = new G.Graph('bench-conv-const');
  const yConst = G.conv2d(gc.input('x', x.shape), gc.constant(feedData.w, w.shape), null, { padding });
  sessions.constWeight = await session({ y: yConst }, base);
  const t = await timeInterleaved(Object.fromEntries(Object.entries(sessions).map(([n, s]) => [n, s.run])), timing);
  console.log('\nORT session options                              forward                        fwd+bwd (one session)');
  for (const [name] of variants) console.log(`  ${name.padEnd(46)} ${fmt(F, t[`f ${name}`])}   ${fmt(3 * F, t[`b ${name}`])}`);
  console.log(`  ${'forward with a constant weight (frozen nets)'.padEnd(46)} ${fmt(F, t.constWeight)}`);
  for (const s of Object.values(sessions)) await s.release();
}

// ---------- ours (project-default options) vs PyTorch, in turns ----------
const gxConvT = G.convTranspose2d(gy, w, null, { padding });
const gwByConv = convWeightGradByConv(x, gy, w.shape, { strides: [1, 1], pads: [padding, padding, padding, padding], dilations: [1, 1], group: 1 });
const ours = {
  fwd: await session({ y }, base),
  gx: await session({ gx }, base),
  gw: await session({ gw }, base),
  all: await session({ y, gx, gw }, base),
  gxConvT: await session({ gxConvT }, base),
  gwByConv: await session({ gwByConv }, base),
};
const contenders: Record<string, () => Promise<unknown>> = Object.fromEntries(Object.entries(ours).map(([n, s]) => [n, s.run]));

const missing = torchMissing();
const peer = missing ? null : await startPeer<{ torch: string; threads: number; mkldnn: boolean }>('ops_peer.py',
  ['--serve', '--threads', String(threads), '--shape', [N, C, H, W, O, k, padding].join(',')]);
if (peer) for (const pass of PEER_PASSES) contenders[`torch ${pass}`] = () => peer.run(pass);
const t = await timeInterleaved(contenders, timing);
for (const s of Object.values(ours)) await s.release();
peer?.close();
const peak = await convPeakGflops({ ...timing, ...(threadsArg ? { threads: threadsArg } : {}) });

const tBwd = t.gx.median + t.gw.median;
console.log(`\nours (graph + ORT, graphOptimizationLevel all, ${threadsArg ? `${threadsArg} intra-op threads` : 'default intra-op threads'})`);
console.log(`  forward                                        ${fmt(F, t.fwd)}`);
console.log(`  input-gradient  (stride-1 Conv, flipped weight) ${fmt(F, t.gx)}   [as ConvTranspose: ${fmt(F, t.gxConvT)}]`);
console.log(`  weight-gradient (one MatMul per kernel tap)     ${fmt(F, t.gw)}   [as swapped Conv: ${fmt(F, t.gwByConv)}]`);
console.log(`  backward (input- + weight-gradient)            ${(2 * F / tBwd / 1e9).toFixed(1).padStart(6)} GFLOP/s (${(tBwd * 1e3).toFixed(1)} ms)`);
console.log(`  forward+backward (one session)                 ${fmt(3 * F, t.all)}`);
console.log(`  convPeakGflops() (bench/common.ts, via src/runtime): ${peak.toFixed(1)} GFLOP/s`);

if (!peer) {
  console.log(`\nPyTorch not available (${missing}): install Debian's python3-torch (apt-get install python3-torch) for the side-by-side numbers; skipping.`);
} else {
  const p = (pass: string) => t[`torch ${pass}`];
  const pBwd = p('grad_input').median + p('grad_weight').median;
  console.log(`\nPyTorch ${peer.info.torch} CPU (${peer.info.threads} threads, mkldnn ${peer.info.mkldnn ? 'on' : 'off'})`);
  console.log(`  forward                                        ${fmt(F, p('fwd'))}`);
  console.log(`  input-gradient  (aten.convolution_backward)     ${fmt(F, p('grad_input'))}`);
  console.log(`  weight-gradient (aten.convolution_backward)     ${fmt(F, p('grad_weight'))}`);
  console.log(`  backward (input- + weight-gradient)            ${(2 * F / pBwd / 1e9).toFixed(1).padStart(6)} GFLOP/s (${(pBwd * 1e3).toFixed(1)} ms)`);
  console.log(`  forward+backward (conv2d + .backward)          ${fmt(3 * F, p('fwd_bwd'))}`);
  console.log('\n  GFLOP/s          ours   pytorch   ours/pytorch');
  const row = (name: string, a: number, b: number) => console.log(`  ${name.padEnd(14)} ${a.toFixed(1).padStart(6)}   ${b.toFixed(1).padStart(7)}   ${(a / b).toFixed(2)}`);
  row('forward', gflops(F, t.fwd), gflops(F, p('fwd')));
  row('input-grad', gflops(F, t.gx), gflops(F, p('grad_input')));
  row('weight-grad', gflops(F, t.gw), gflops(F, p('grad_weight')));
  row('backward', 2 * F / tBwd / 1e9, 2 * F / pBwd / 1e9);
  row('fwd+bwd', gflops(3 * F, t.all), gflops(3 * F, p('fwd_bwd')));
  console.log('ratio of throughputs: ours fwd+bwd GFLOP/s / PyTorch fwd+bwd GFLOP/s (>1 = we are faster)');
  console.log(`conv ratio (ours/pytorch): ${(gflops(3 * F, t.all) / gflops(3 * F, p('fwd_bwd'))).toFixed(2)}`);
}

