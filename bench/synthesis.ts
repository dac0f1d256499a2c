// npm run bench:synthesis [-- --runs 3 --warmup 1 --size 1024 --threads N --seed 1]
//
// StyleGAN2 synthesis (w+ -> image) at the real config-f size — Generator(1024, 512, 8,
// channel_multiplier 2) with the official random initialisation (src/nets/stylegan2) — through
// our graph and ONNX Runtime:
//   forward:  the synthesis session, batch 1, registered noise buffers (randomize_noise=False);
//   VJP:      w+ and dL/dimage -> dL/dw+ (the session a training step runs; it recomputes the
//             forward inside), with L = sum(image * R);
// beside the same computation in PyTorch on the CPU in the same run (bench/synthesis_peer.py:
// rosinality's model.py with the native upfirdn2d, /usr/bin/python3 with Debian's python3-torch),
// on the same weights and w+, timed in turns with ours (median of --runs after --warmup), with the
// largest differences of image and gradient as a check that both compute the same function.
// Then the [1,512,64,64] 3x3 conv of bench/common.ts measured in the same run (in turns with the
// synthesis runs), and
//   achieved GFLOP/s = counted FLOPs of one synthesis (from the layer shapes) / our median time,
//   efficiency = achieved / that conv's GFLOP/s.
// The last two lines are the issue-3 targets: ratio <= 0.2, efficiency >= 0.5.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { f32, type TensorData } from '../src/io/tensor.ts';
import { generatorConfig, generatorSpec, mappingSession, randomGenerator, synthesisFlops, Synthesis } from '../src/nets/stylegan2/stylegan2.ts';
import { Rng } from '../src/train/rng.ts';
import { convPeakGflops, convPeakRunner, machineLine, median, startPeer, timeInterleaved, torchMissing, type Peer, type Timing } from './common.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a non-negative number, got '${process.argv[i + 1]}'`);
  return v;
}
const runs = Math.max(3, arg('runs', 3));
const warmup = arg('warmup', 1);
const size = arg('size', 1024);
const seed = arg('seed', 1);
const threads = arg('threads', 0) || os.availableParallelism();
const ms = (t: Timing) => `${(t.median * 1e3).toFixed(0)} ms (min ${(t.min * 1e3).toFixed(0)})`;
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

console.log(`StyleGAN2 synthesis, Generator(${size}, 512, 8, channel_multiplier=2), random init (seed ${seed}), batch 1`);
console.log(`machine: ${machineLine()}; median of ${runs} runs after ${warmup} warm-up; PyTorch gets ${threads} threads`);

// ---------- our generator and sessions ----------
let t0 = performance.now();
const config = generatorConfig({ size });
const gen = randomGenerator(config, seed);
const D = config.styleDim;
const L = gen.nLatent;
// a realistic w+: the mapping of seeded z, one per layer
const rng = new Rng(seed + 1);
const wplus = await (await mappingSession(gen, L))(rng.normals(L * D));
const R = rng.normals(3 * size * size);
const synth = new Synthesis(gen, 1);
const fwdOnce = () => synth.forward(wplus);
const vjpOnce = () => synth.vjp(wplus, R);
await fwdOnce();
const tFwdCompile = (performance.now() - t0) / 1000;
t0 = performance.now();
await vjpOnce();
const tVjpCompile = (performance.now() - t0) / 1000;
console.log(`built: random weights, mapping, forward session ${tFwdCompile.toFixed(1)} s; VJP session ${tVjpCompile.toFixed(1)} s (first runs included)`);

// ---------- the PyTorch peer ----------
const missing = torchMissing('torch, numpy');
const tmp = mkdtempSync(join(os.tmpdir(), 'bench-synthesis-'));
let peer: Peer | null = null;
if (!missing) {
  // the same weights, w+ and R for both sides
  const tensors = new Map<string, TensorData>();
  for (const s of generatorSpec(config)) tensors.set(s.key, f32(s.shape, gen.P.data(s.key)));
  tensors.set('wplus', f32([1, L, D], wplus));
  tensors.set('R', f32([1, 3, size, size], R));
  writeSafetensors(join(tmp, 'g.safetensors'), tensors, { config: JSON.stringify(config) });
  peer = await startPeer('synthesis_peer.py', ['--weights', join(tmp, 'g.safetensors'), '--threads', String(threads)]);
  console.log(`PyTorch ${peer.info.torch} (${peer.info.threads} threads), same weights and w+`);
} else {
  console.log(`PyTorch not available (${missing}): `
    + 'install Debian\'s python3-torch (apt-get install python3-torch) for the side-by-side numbers; skipping them.');
}


// ---------- the reference conv alone, before and after the timings ----------
const peakBefore = await convPeakGflops({ runs: 5, warmup: 2 });

// ---------- timing (ours and PyTorch's in turns) ----------
const peerTimes: Record<string, number[]> = { fwd: [], fwdbwd: [] };
const peerRun = (cmd: 'fwd' | 'fwdbwd') => async () => { peerTimes[cmd].push(Number(await peer!.run(cmd))); };
// the reference conv takes its turns too: the efficiency compares two numbers measured under the
// same load (this machine may be shared; convPeakGflops alone is also reported, before and after)
const conv = await convPeakRunner();
const fns: Record<string, () => Promise<unknown>> = { ours_fwd: fwdOnce, conv_peak: conv.run, ours_vjp: vjpOnce };
if (peer) Object.assign(fns, { torch_fwd: peerRun('fwd'), torch_fwdbwd: peerRun('fwdbwd') });
const t = await timeInterleaved(fns, { runs, warmup });
// the peer times itself (no pipe latency); keep only the timed runs
const peerTiming = (k: string): Timing => {
  const xs = peerTimes[k].slice(warmup);
  return { median: median(xs), min: Math.min(...xs), times: xs };
};

// ---------- agreement on the same inputs ----------
let agreement = '';
if (peer) {
  await peer.run(`dump ${join(tmp, 'torch.bin')}`);
  const buf = readFileSync(join(tmp, 'torch.bin'));
  const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const n = 3 * size * size;
  const ours = await vjpOnce();
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>, off: number) => {
    let d = 0; let m = 0;
    for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[off + i])); m = Math.max(m, Math.abs(b[off + i])); }
    return `max |diff| ${d.toExponential(2)} (max |ref| ${m.toPrecision(3)})`;
  };
  agreement = `agreement with PyTorch: image ${diff(ours.image.data as Float32Array, ref, 0)}; dL/dw+ ${diff(ours.grads.wplus.data as Float32Array, ref, n)}`;
}
const peerRss = peer ? Number(await peer.run('rss')) : 0;
peer?.close();
rmSync(tmp, { recursive: true, force: true });

const peakAfter = await convPeakGflops({ runs: 5, warmup: 2 });
const peak = conv.flops / t.conv_peak.median / 1e9;
const flops = synthesisFlops(config);
const ours = t.ours_fwd;
const achieved = flops.total / ours.median / 1e9;

console.log('');
console.log(`counted FLOPs per image: ${(flops.total / 1e9).toFixed(1)} GFLOP (modulated convs ${(flops.convs / 1e9).toFixed(1)}, ToRGB ${(flops.toRgb / 1e9).toFixed(2)}, `
  + `FIR ${(flops.fir / 1e9).toFixed(2)}, modulation ${(flops.modulation / 1e9).toFixed(3)})`);
console.log(`ours    forward ${ms(ours)}  = ${achieved.toFixed(0)} GFLOP/s; VJP (w+ -> dL/dw+, forward recomputed) ${ms(t.ours_vjp)}; peak RSS ${mb(process.resourceUsage().maxRSS)} (both sessions loaded)`);
if (peer) {
  const pf = peerTiming('fwd'); const pb = peerTiming('fwdbwd');
  console.log(`pytorch forward ${ms(pf)}; forward+backward ${ms(pb)}; peak RSS ${mb(peerRss)}`);
  console.log(`VJP ratio (ours/pytorch): ${(t.ours_vjp.median / pb.median).toFixed(2)}`);
  if (agreement) console.log(agreement);
}
console.log(`conv peak ([1,512,64,64] 3x3 conv forward, bench/common.ts): ${peak.toFixed(0)} GFLOP/s in turns with the synthesis runs `
  + `(convPeakGflops alone: ${peakBefore.toFixed(0)} before, ${peakAfter.toFixed(0)} after)`);
console.log(`fastest runs: ours forward ${(ours.min * 1e3).toFixed(0)} ms = ${(flops.total / ours.min / 1e9).toFixed(0)} GFLOP/s, conv ${(conv.flops / t.conv_peak.min / 1e9).toFixed(0)} GFLOP/s `
  + `-> efficiency ${((flops.total / ours.min) / (conv.flops / t.conv_peak.min)).toFixed(2)}${peer ? `; ratio ${(ours.min / peerTiming('fwd').min).toFixed(2)}` : ''}`);
console.log(`synthesis ratio (ours/pytorch): ${peer ? (ours.median / peerTiming('fwd').median).toFixed(2) : 'n/a (PyTorch not installed)'}`);
console.log(`synthesis efficiency (achieved/conv peak): ${(achieved / peak).toFixed(2)}`);
