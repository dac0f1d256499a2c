// Shared benchmark helpers: timing (median of several runs after warm-up) and the reference conv
// that bench:ops and bench:synthesis measure against — a [1,512,64,64] input through a 3x3,
// 512 -> 512 conv with padding 1, the bulk of a StyleGAN2 synthesis layer at 64 px.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as G from '../src/graph/index.ts';
import { compile, type CompileOptions } from '../src/runtime/session.ts';

export interface ConvSpec { N: number; C: number; H: number; W: number; O: number; k: number; padding: number }
export const CONV_BENCH: ConvSpec = { N: 1, C: 512, H: 64, W: 64, O: 512, k: 3, padding: 1 };

/** Output size of the (stride 1) conv. */
export function convOut(s: ConvSpec): [number, number] {
  return [s.H + 2 * s.padding - s.k + 1, s.W + 2 * s.padding - s.k + 1];
}
/**
 * Multiply-adds x 2 of one conv. The input-gradient and the weight-gradient are the same number
 * of multiply-adds (each is the same triple sum over n, o, c, output pixel and tap).
 */
export function convFlops(s: ConvSpec = CONV_BENCH): number {
  const [Ho, Wo] = convOut(s);
  return 2 * s.N * s.O * Ho * Wo * s.C * s.k * s.k;
}

export interface TimingOptions { warmup?: number; runs?: number }
export interface Timing { median: number; min: number; times: number[] }

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seconds per call of `fn`: `warmup` untimed calls, then the median (and min) of `runs` timed ones. */
export async function timeRuns(fn: () => Promise<unknown>, opts: TimingOptions = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 2;
  const runs = opts.runs ?? 7;
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return { median: median(times), min: Math.min(...times), times };
}

/**
 * Like timeRuns for several functions at once, taking turns (a, b, c, a, b, c, ...), so that a
 * machine whose load changes during the benchmark (shared CI runners, other jobs) slows every
 * contender alike instead of whichever happened to run at the time.
 */
export async function timeInterleaved(fns: Record<string, () => Promise<unknown>>, opts: TimingOptions = {}): Promise<Record<string, Timing>> {
  const warmup = opts.warmup ?? 2;
  const runs = opts.runs ?? 7;
  const names = Object.keys(fns);
  for (let i = 0; i < warmup; i++) for (const n of names) await fns[n]();
  const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < runs; i++) {
    for (const n of names) {
      const t0 = performance.now();
      await fns[n]();
      times[n].push((performance.now() - t0) / 1000);
    }
  }
  return Object.fromEntries(names.map((n) => [n, { median: median(times[n]), min: Math.min(...times[n]), times: times[n] }]));
}

/** Deterministic N(0, 1) * scale values (xorshift32 + Box-Muller): benchmark inputs, not statistics. */
export function randomNormal(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return a;
}

/** The benchmark conv as a graph: inputs x, w (and gy, the output cotangent), outputs y, gx, gw. */
export function convBenchGraph(s: ConvSpec = CONV_BENCH) {
  const g = new G.Graph('bench-conv');
  const x = g.input('x', [s.N, s.C, s.H, s.W]);
  const w = g.input('w', [s.O, s.C, s.k, s.k]);
  const y = G.conv2d(x, w, null, { padding: s.padding });
  const gy = g.input('gy', y.shape);
  const [gx, gw] = G.vjp([y], [gy], [x, w]);
  return { g, x, w, gy, y, gx, gw };
}

/** Random feeds for convBenchGraph (weights at a He-like scale so values stay O(1)). */
export function convBenchFeeds(s: ConvSpec = CONV_BENCH): Record<string, Float32Array> {
  const [Ho, Wo] = convOut(s);
  return {
    x: randomNormal(s.N * s.C * s.H * s.W, 1),
    w: randomNormal(s.O * s.C * s.k * s.k, 2, Math.sqrt(2 / (s.C * s.k * s.k))),
    gy: randomNormal(s.N * s.O * Ho * Wo, 3),
  };
}

/**
 * Our forward GFLOP/s on the benchmark conv, through the graph and the project's runtime
 * (src/runtime/session.ts with its default settings unless `opts` overrides them): the practical
 * peak of the engine on this machine, to which whole-network throughput can be compared.
 */
export async function convPeakGflops(opts: TimingOptions & CompileOptions = {}): Promise<number> {
  const conv = await convPeakRunner(opts);
  const t = await timeRuns(conv.run, opts);
  return conv.flops / t.median / 1e9;
}

/**
 * The same reference conv as a function to time beside other work (timeInterleaved), so that a
 * throughput and the peak it is compared to are measured under the same machine load:
 * GFLOP/s = flops / seconds per run / 1e9.
 */
export async function convPeakRunner(opts: CompileOptions = {}): Promise<{ run: () => Promise<unknown>; flops: number }> {
  const { y } = convBenchGraph();
  const c = await compile({ y }, opts);
  const { x, w } = convBenchFeeds();
  return { run: () => c.run({ x, w }), flops: convFlops() };
}

/** One line describing the machine the numbers come from. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `${os.availableParallelism()} CPUs (${cpus[0]?.model.trim() ?? 'unknown'}), Node ${process.version}`;
}

// ---------- the PyTorch peer processes (bench/*_peer.py) ----------

/** Debian's python3 (the first python3 on PATH may be another one without python3-torch). */
export const PYTHON = '/usr/bin/python3';

/** null when the peer can run, else why not (printed by the benches with the install hint). */
export function torchMissing(modules = 'torch'): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', `import ${modules}`], { encoding: 'utf8' });
  return r.status === 0 ? null : `import ${modules} failed under ${PYTHON}`;
}

export interface Peer<I = { torch: string; threads: number }> {
  info: I;
  /** Sends one command line, returns the peer's one-line reply (a reply starting with 'error' throws). */
  run(cmd: string): Promise<string>;
  close(): void;
}

/**
 * Starts bench/<script> (a line protocol: it prints 'ready <json>', then answers each command line
 * with one line); its stderr goes to ours.
 */
export async function startPeer<I = { torch: string; threads: number }>(script: string, args: string[]): Promise<Peer<I>> {
  const child = spawn(PYTHON, [join(import.meta.dirname, script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error(`bench/${script} exited early (see its stderr above)`);
    return r.value;
  };
  const ready = await next();
  if (!ready.startsWith('ready ')) throw new Error(`bench/${script}: unexpected first line '${ready}'`);
  return {
    info: JSON.parse(ready.slice(6)) as I,
    async run(cmd: string) {
      child.stdin!.write(`${cmd}\n`);
      const out = await next();
      if (out.startsWith('error')) throw new Error(`bench/${script}: ${out}`);
      return out;
    },
    close() { child.stdin!.end(); },
  };
}
