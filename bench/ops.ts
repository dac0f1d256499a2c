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
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as G from '../src/graph/index.ts';
import { convWeightGradByConv } from '../src/graph/ops/conv.ts';
import {
  CONV_BENCH, convBenchFeeds, convBenchGraph, convFlops, convPeakGflops, machineLine, timeRuns, type Timing,
  type TimingOptions,
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
const threads = arg('threads', 0) || os.availableParallelism();

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
async function measure(outs: Record<string, G.Tensor>, so: ort.InferenceSession.SessionOptions): Promise<Timing> {
  const s = await session(outs, so);
  try { return await timeRuns(s.run, timing); } finally { await s.release(); }
}

const { N, C, H, W, O, k, padding } = CONV_BENCH;
console.log(`conv [${N},${C},${H},${W}] * [${O},${C},${k},${k}], padding ${padding}: ${(F / 1e9).toFixed(2)} GFLOP per conv pass`);
console.log(`machine: ${machineLine()}; onnxruntime-node ${ort.env.versions?.node ?? ''}; median of ${timing.runs} runs after ${timing.warmup} warm-up`);

// ---------- ORT session options ----------
const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
const variants: [string, ort.InferenceSession.SessionOptions][] = [
  ['graphOptimizationLevel all (project default)', base],
  ['graphOptimizationLevel disabled', { graphOptimizationLevel: 'disabled' }],
  ['graphOptimizationLevel basic', { graphOptimizationLevel: 'basic' }],
  ['graphOptimizationLevel extended', { graphOptimizationLevel: 'extended' }],
  ['intraOpNumThreads 1', { ...base, intraOpNumThreads: 1 }],
  ['intraOpNumThreads 2', { ...base, intraOpNumThreads: 2 }],
  ['enableCpuMemArena false', { ...base, enableCpuMemArena: false }],
  ['enableMemPattern false', { ...base, enableMemPattern: false }],
  ['executionMode parallel (interOpNumThreads 2)', { ...base, executionMode: 'parallel', interOpNumThreads: 2 }],
];
console.log('\nORT session options             forward                      fwd+bwd (one session)');
for (const [name, so] of variants) {
  const tf = await measure({ y }, so);
  const tb = await measure({ y, gx, gw }, so);
  console.log(`  ${name.padEnd(46)} ${fmt(F, tf)}   ${fmt(3 * F, tb)}`);
}

// ---------- ours: each pass, and the formulations not kept ----------
const tFwd = await measure({ y }, base);
const tGx = await measure({ gx }, base);
const tGw = await measure({ gw }, base);
const tAll = await measure({ y, gx, gw }, base);
const gxConvT = G.convTranspose2d(gy, w, null, { padding });
const gwByConv = convWeightGradByConv(x, gy, w.shape, { strides: [1, 1], pads: [padding, padding, padding, padding], dilations: [1, 1], group: 1 });
const tGxConvT = await measure({ gxConvT }, base);
const tGwByConv = await measure({ gwByConv }, base);
const tBwd = tGx.median + tGw.median;
const peak = await convPeakGflops(timing);

console.log(`\nours (graph + ORT, ${threads === os.availableParallelism() ? 'default threads' : `${threads} threads`})`);
console.log(`  forward                                        ${fmt(F, tFwd)}`);
console.log(`  input-gradient  (stride-1 Conv, flipped weight) ${fmt(F, tGx)}   [ConvTranspose: ${fmt(F, tGxConvT)}]`);
console.log(`  weight-gradient (one MatMul per kernel tap)     ${fmt(F, tGw)}   [swapped Conv: ${fmt(F, tGwByConv)}]`);
console.log(`  backward (input- + weight-gradient sessions)    ${(2 * F / tBwd / 1e9).toFixed(1).padStart(6)} GFLOP/s (${(tBwd * 1e3).toFixed(1)} ms)`);
console.log(`  forward+backward (one session)                 ${fmt(3 * F, tAll)}`);
console.log(`  convPeakGflops() (bench/common.ts, via src/runtime): ${peak.toFixed(1)} GFLOP/s`);

// ---------- PyTorch ----------
const python = '/usr/bin/python3';
const peer = join(import.meta.dirname, 'ops_peer.py');
const probe = existsSync(python) ? spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }) : null;
if (!probe || probe.status !== 0) {
  console.log(`\nPyTorch not available (${probe ? 'import torch failed under /usr/bin/python3' : '/usr/bin/python3 not found'}): install Debian's python3-torch for the side-by-side numbers; skipping.`);
} else {
  const r = spawnSync(python, [peer, '--threads', String(threads), '--runs', String(timing.runs), '--warmup', String(timing.warmup),
    '--shape', [N, C, H, W, O, k, padding].join(',')], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`bench/ops_peer.py failed (exit ${r.status}):\n${r.stderr}`);
  const p = JSON.parse(r.stdout) as Record<'fwd' | 'grad_input' | 'grad_weight' | 'fwd_bwd', Timing> & { torch: string; threads: number; mkldnn: boolean };
  const pBwd = p.grad_input.median + p.grad_weight.median;
  console.log(`\nPyTorch ${p.torch} CPU (${p.threads} threads, mkldnn ${p.mkldnn ? 'on' : 'off'})`);
  console.log(`  forward                                        ${fmt(F, p.fwd)}`);
  console.log(`  input-gradient  (aten.convolution_backward)     ${fmt(F, p.grad_input)}`);
  console.log(`  weight-gradient (aten.convolution_backward)     ${fmt(F, p.grad_weight)}`);
  console.log(`  backward (input- + weight-gradient)             ${(2 * F / pBwd / 1e9).toFixed(1).padStart(6)} GFLOP/s (${(pBwd * 1e3).toFixed(1)} ms)`);
  console.log(`  forward+backward (conv2d + .backward)           ${fmt(3 * F, p.fwd_bwd)}`);
  console.log('\n                 ours       pytorch   ours/pytorch (GFLOP/s)');
  const row = (name: string, flops: number, a: Timing, b: Timing) =>
    console.log(`  ${name.padEnd(14)} ${gflops(flops, a).toFixed(1).padStart(7)}   ${gflops(flops, b).toFixed(1).padStart(7)}   ${(gflops(flops, a) / gflops(flops, b)).toFixed(2)}`);
  row('forward', F, tFwd, p.fwd);
  row('input-grad', F, tGx, p.grad_input);
  row('weight-grad', F, tGw, p.grad_weight);
  row('fwd+bwd', 3 * F, tAll, p.fwd_bwd);
  console.log('ratio of throughputs: ours fwd+bwd GFLOP/s / PyTorch fwd+bwd GFLOP/s (>1 = we are faster)');
  console.log(`conv ratio (ours/pytorch): ${(gflops(3 * F, tAll) / gflops(3 * F, p.fwd_bwd)).toFixed(2)}`);
}
