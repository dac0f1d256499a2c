// Reading and writing the mappers' checkpoint files, and checking the host tensors fed to them.
//
// All three projects save `{'state_dict': model.state_dict(), 'opts': ...}` (StyleCLIP/HairCLIP:
// opts = vars(argparse options), a dict; FFCLIP: vars(OmegaConf DictConfig)). A bare state dict
// is accepted too.
import { loadCheckpoint, flattenStateDict } from '../io/torch.ts';
import { isPyDict, type PickleValue } from '../io/pickle.ts';
import type { TensorData } from '../io/tensor.ts';
import type { HostTensor } from '../runtime/session.ts';
// PyTorch's zip writer lives with src/io's test writers; it is byte-compatible with torch.save.
import { saveTorchZip, type Writable } from '../io/testing.ts';
import { renameSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface CheckpointParts {
  /** every tensor under its state_dict key */
  stateDict: Map<string, TensorData>;
  /** the stored options as plain values (null when absent or not a plain dict) */
  opts: Record<string, unknown> | null;
}

/** Plain JS values from a pickled options dict (nested dicts and lists kept; anything else -> null). */
function plain(v: PickleValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (isPyDict(v)) return Object.fromEntries(Object.keys(v).map((k) => [k, plain(v[k]!)]));
  return null;
}

/** Loads a checkpoint file (path or bytes) or an already parsed object tree. */
export function readCheckpoint(src: string | Uint8Array | PickleValue): CheckpointParts {
  const root = typeof src === 'string' || src instanceof Uint8Array ? loadCheckpoint(src) : src;
  if (isPyDict(root) && root.state_dict !== undefined) {
    const opts = root.opts !== undefined ? plain(root.opts) : null;
    return {
      stateDict: flattenStateDict(root.state_dict),
      opts: opts && typeof opts === 'object' && !Array.isArray(opts) ? (opts as Record<string, unknown>) : null,
    };
  }
  return { stateDict: flattenStateDict(root), opts: null };
}

/** A [B, L, D] float32 latent batch, checked. */
export function latentShape(w: HostTensor, width: number, what = 'w'): [number, number, number] {
  const s = w.shape;
  if (s.length !== 3 || s[2] !== width) throw new Error(`${what}: expected a [B, L, ${width}] latent, got [${s.join(', ')}]`);
  if (w.data.length !== s[0] * s[1] * s[2]) throw new Error(`${what}: ${w.data.length} values for shape [${s.join(', ')}]`);
  if (!(w.data instanceof Float32Array)) throw new Error(`${what}: expected float32 data`);
  return [s[0], s[1], s[2]];
}

/** w + alpha * delta in float32, rounded as PyTorch rounds `w + alpha * out`. */
export function addScaled(w: Float32Array, delta: Float32Array, alpha: number): Float32Array {
  const a = Math.fround(alpha);
  const out = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = w[i] + Math.fround(a * delta[i]);
  return out;
}

/** An embedding batch [B, E] (a [B, 1, E] one is accepted and viewed as [B, E]). */
export function embeddingData(e: HostTensor | Float32Array, batch: number, width: number, what: string): Float32Array {
  const data = e instanceof Float32Array ? e : e.data;
  if (!(data instanceof Float32Array)) throw new Error(`${what}: expected float32 data`);
  if (!(e instanceof Float32Array)) {
    const s = e.shape;
    const ok = (s.length === 2 && s[0] === batch && s[1] === width) || (s.length === 3 && s[0] === batch && s[1] === 1 && s[2] === width);
    if (!ok) throw new Error(`${what}: expected [${batch}, ${width}], got [${s.join(', ')}]`);
  }
  if (data.length !== batch * width) throw new Error(`${what}: ${data.length} values, expected [${batch}, ${width}]`);
  return data;
}

/** Plain values an options dict may hold in a written checkpoint (anything else is dropped). */
function writableOpts(v: unknown): Writable | undefined {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => writableOpts(x) ?? null);
  if (typeof v === 'object') {
    const out: Record<string, Writable> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) { const y = writableOpts(x); if (y !== undefined) out[k] = y; }
    return out;
  }
  return undefined;
}

/**
 * The bytes of `torch.save({'state_dict': OrderedDict(...), 'opts': {...}})` in PyTorch's zip
 * format, keys in the given order — the layout all three projects write and load.
 */
export function serializeCheckpoint(ck: { state_dict: Map<string, TensorData>; opts?: Record<string, unknown> | null }, root = 'checkpoint'): Uint8Array {
  const sd: Record<string, Writable> = {};
  for (const [k, v] of ck.state_dict) sd[k] = v;
  return saveTorchZip({ state_dict: sd, opts: (writableOpts(ck.opts ?? {}) ?? {}) }, { root });
}

/** Writes `serializeCheckpoint(ck)` to `path` (through a temporary file, then rename). */
export function writeCheckpoint(path: string, ck: { state_dict: Map<string, TensorData>; opts?: Record<string, unknown> | null }): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, serializeCheckpoint(ck, basename(path).replace(/\.[^.]*$/, '') || 'checkpoint'));
  renameSync(tmp, path);
}
