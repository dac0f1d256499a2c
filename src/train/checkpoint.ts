// Training checkpoints: one safetensors file holding the trainable parameters (`param.<key>`), the
// optimiser's buffers (`optim.<key>.<buffer>`) and, in the metadata, the method, step, RNG state,
// optimiser kind/step and the run's options. Written atomically: temp file, fsync, rename, fsync
// of the folder — a kill at any moment leaves either the old or the new checkpoint, never a torn one.
import { closeSync, fsyncSync, openSync, renameSync, writeSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { serializeSafetensors, parseSafetensors } from '../io/safetensors.ts';
import { TensorData } from '../io/tensor.ts';
import type { OptimState } from './optim.ts';
import type { RngState } from './rng.ts';

export interface TrainCheckpoint {
  method: string;
  step: number;
  rng: RngState;
  params: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  optimizer: OptimState;
  opts: Record<string, unknown>;
}

export function atomicWrite(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally { closeSync(fd); }
  renameSync(tmp, path);
  try { const d = openSync(dirname(path), 'r'); fsyncSync(d); closeSync(d); } catch { /* some filesystems refuse directory fsync */ }
}

export function saveTrainCheckpoint(path: string, ck: TrainCheckpoint): void {
  const tensors = new Map<string, TensorData>();
  for (const [k, v] of ck.params) tensors.set(`param.${k}`, new TensorData('float32', ck.shapes.get(k) ?? [v.length], v));
  for (const [k, bufs] of Object.entries(ck.optimizer.buffers)) {
    for (const [b, v] of Object.entries(bufs)) tensors.set(`optim.${k}.${b}`, new TensorData('float32', ck.shapes.get(k) ?? [v.length], v));
  }
  const meta = {
    format: 'clipmapper-train-checkpoint-1',
    method: ck.method,
    step: String(ck.step),
    rng: JSON.stringify(ck.rng),
    optimizer: JSON.stringify({ kind: ck.optimizer.kind, step: ck.optimizer.step }),
    opts: JSON.stringify(ck.opts),
  };
  atomicWrite(path, serializeSafetensors(tensors, meta));
}

export function loadTrainCheckpoint(path: string): TrainCheckpoint {
  const f = parseSafetensors(new Uint8Array(readFileSync(path)));
  const m = f.metadata;
  if (m.format !== 'clipmapper-train-checkpoint-1') throw new Error(`${path}: not a clipmapper training checkpoint (format '${m.format ?? 'missing'}')`);
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const optim = JSON.parse(m.optimizer) as { kind: 'adam' | 'ranger'; step: number };
  const buffers: OptimState['buffers'] = {};
  for (const [name, t] of f.tensors) {
    const data = Float32Array.from(t.data as Float32Array);
    if (name.startsWith('param.')) {
      const k = name.slice(6);
      params.set(k, data); shapes.set(k, [...t.shape]);
    } else if (name.startsWith('optim.')) {
      const rest = name.slice(6);
      const dot = rest.lastIndexOf('.');
      (buffers[rest.slice(0, dot)] ??= {})[rest.slice(dot + 1)] = data;
    }
  }
  return {
    method: m.method, step: Number(m.step), rng: JSON.parse(m.rng) as RngState, params, shapes,
    optimizer: { kind: optim.kind, step: optim.step, buffers }, opts: JSON.parse(m.opts) as Record<string, unknown>,
  };
}
