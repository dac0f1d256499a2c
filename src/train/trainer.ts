// The training loop shared by the three methods: draw a sample, run the method's step session
// (losses and parameter gradients), update with the optimiser, log, checkpoint, preview.
//
// Exact resume: a checkpoint holds the parameters, the optimiser's buffers and step, the RNG
// state and the step counter, and is written atomically (temp file + fsync + rename), so a run
// killed at any instant (SIGKILL included) resumes from the last checkpoint and, because every
// random draw comes from that RNG and every step is a deterministic function of its inputs,
// retraces the uninterrupted run's loss curve. The JSONL log is truncated back to the
// checkpoint's step on resume, so it never holds steps twice.
import { existsSync, mkdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './rng.ts';
import { makeOptimizer, type Optimizer, type ParamTensor } from './optim.ts';
import { loadTrainCheckpoint, saveTrainCheckpoint } from './checkpoint.ts';
import { Progress } from './progress.ts';

export interface StepResult {
  /** named loss terms; `loss` is the total that was differentiated */
  losses: Record<string, number>;
  grads: Map<string, Float32Array>;
}

export interface TrainMethod<S = unknown> {
  readonly name: string;
  /** the trainable parameters, updated in place */
  readonly params: ParamTensor[];
  /** draw the next training sample (latents, conditions) from `rng` */
  sample(rng: Rng): S;
  step(sample: S): Promise<StepResult>;
  /** a human-readable description of a sample for logs and grids */
  describe(sample: S): string;
  /** rows of [source, edited] images (NCHW in [-1,1]) for the preview grid */
  preview?(samples: S[]): Promise<{ label: string; images: { data: Float32Array; shape: number[] }[] }[]>;
  /** options stored in checkpoints (and compared on resume) */
  readonly opts: Record<string, unknown>;
  /** learning-rate multiplier for the step about to be taken (0-based) of `total` (a schedule such as FFCLIP's MultiStepLR); default 1 */
  lrScale?(step: number, total: number): number;
}

export interface TrainOptions {
  outDir: string;
  steps: number;
  optimizer: 'ranger' | 'adam';
  lr: number;
  seed: number;
  saveInterval: number;
  logInterval: number;
  imageInterval: number;
  resume: boolean;
  /** show a progress bar (defaults to stderr being a TTY) */
  progress?: boolean;
  /** called after each step (tests, custom logging) */
  onStep?: (step: number, losses: Record<string, number>) => void;
  /** preview grid writer (PNG); injected so the trainer does not depend on image codecs */
  writeGrid?: (path: string, rows: { label: string; images: { data: Float32Array; shape: number[] }[] }[]) => Promise<void>;
}

export interface LogEntry { step: number; time: number; desc: string; [k: string]: number | string }

export class Trainer<S> {
  readonly rng: Rng;
  readonly optimizer: Optimizer;
  step = 0;
  constructor(readonly method: TrainMethod<S>, readonly o: TrainOptions) {
    this.rng = new Rng(o.seed);
    this.optimizer = makeOptimizer(o.optimizer, o.lr);
  }

  get checkpointPath(): string { return join(this.o.outDir, 'checkpoints', 'latest.safetensors'); }
  get logPath(): string { return join(this.o.outDir, 'log.jsonl'); }

  /** Restore from the latest checkpoint if resuming and one exists; returns the step resumed at. */
  restore(): number {
    mkdirSync(join(this.o.outDir, 'checkpoints'), { recursive: true });
    if (!this.o.resume || !existsSync(this.checkpointPath)) {
      // starting from step 0 (also when resuming a run killed before its first checkpoint): the
      // log starts over too, so it never holds a step twice
      if (existsSync(this.logPath)) writeFileSync(this.logPath, '');
      return 0;
    }
    const ck = loadTrainCheckpoint(this.checkpointPath);
    if (ck.method !== this.method.name) throw new Error(`checkpoint ${this.checkpointPath} is for '${ck.method}', not '${this.method.name}'`);
    for (const p of this.method.params) {
      const v = ck.params.get(p.name);
      if (!v) throw new Error(`checkpoint ${this.checkpointPath} lacks parameter '${p.name}'`);
      if (v.length !== p.data.length) throw new Error(`checkpoint parameter '${p.name}' has ${v.length} values, model ${p.data.length}`);
      p.data.set(v);
    }
    this.optimizer.load(ck.optimizer);
    (this.rng as unknown as { s: Uint32Array }).s.set(ck.rng);
    this.step = ck.step;
    // drop log lines written after the checkpoint: the resumed run writes them again
    if (existsSync(this.logPath)) {
      const keep = readFileSync(this.logPath, 'utf8').split('\n').filter((l) => {
        if (!l.trim()) return false;
        try { return (JSON.parse(l) as LogEntry).step <= ck.step; } catch { return false; }
      });
      writeFileSync(this.logPath, keep.map((l) => l + '\n').join(''));
    }
    return ck.step;
  }

  save(): void {
    saveTrainCheckpoint(this.checkpointPath, {
      method: this.method.name,
      step: this.step,
      rng: this.rng.state,
      params: new Map(this.method.params.map((p) => [p.name, p.data])),
      shapes: new Map(this.method.params.map((p) => [p.name, p.shape])),
      optimizer: this.optimizer.state(),
      opts: this.method.opts,
    });
  }

  async run(): Promise<LogEntry[]> {
    const start = this.restore();
    const entries: LogEntry[] = [];
    const bar = new Progress(this.o.steps, { enabled: this.o.progress ?? process.stderr.isTTY, label: `train ${this.method.name}`, start });
    const previewSamples: S[] = [];
    const t0 = Date.now();
    while (this.step < this.o.steps) {
      const sample = this.method.sample(this.rng);
      if (previewSamples.length < 4) previewSamples.push(sample);
      const { losses, grads } = await this.method.step(sample);
      for (const [k, v] of Object.entries(losses)) {
        if (!Number.isFinite(v)) throw new Error(`step ${this.step + 1}: loss '${k}' is ${v}; stopping before the parameters are corrupted (last checkpoint kept)`);
      }
      if (this.method.lrScale) this.optimizer.lr = this.o.lr * this.method.lrScale(this.step, this.o.steps);
      this.optimizer.step(this.method.params, grads);
      this.step++;
      const entry: LogEntry = { step: this.step, time: (Date.now() - t0) / 1000, desc: this.method.describe(sample), ...losses };
      entries.push(entry);
      appendFileSync(this.logPath, JSON.stringify(entry) + '\n');
      this.o.onStep?.(this.step, losses);
      bar.tick(this.step, losses);
      if (this.step % this.o.saveInterval === 0 || this.step === this.o.steps) this.save();
      if (this.o.writeGrid && this.method.preview && this.o.imageInterval > 0 && this.step % this.o.imageInterval === 0) {
        const rows = await this.method.preview(previewSamples);
        await this.o.writeGrid(join(this.o.outDir, 'images', `step_${String(this.step).padStart(6, '0')}.png`), rows);
      }
    }
    bar.stop();
    return entries;
  }
}

export function readLog(path: string): LogEntry[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LogEntry);
}
