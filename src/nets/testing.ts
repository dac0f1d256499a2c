// Test helpers shared by the network tests: fixture paths, the official key lists, and state
// dicts that carry shapes only (for configuration inference and validation at real size, where
// the weights themselves are hundreds of MB and not in the repository).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TensorData } from '../io/tensor.ts';
import type { KeySpec, StateDict } from './common.ts';

/** Absolute path of test/fixtures/<net>/<file> in this checkout. */
export function fixturePath(net: string, file = ''): string {
  return fileURLToPath(new URL(`../../test/fixtures/${net}/${file}`, import.meta.url));
}

export interface OfficialKey { key: string; shape: number[]; dtype: string }

/** The `tensors` list of an official_*_keys.json. */
export function officialKeys(net: string, file: string): OfficialKey[] {
  return (JSON.parse(readFileSync(fixturePath(net, file), 'utf8')) as { tensors: OfficialKey[] }).tensors;
}

/** A spec as the JSON lists it (key, shape, dtype code), for deepEqual against official lists. */
export function specAsKeys(spec: readonly KeySpec[]): OfficialKey[] {
  return spec.map((s) => ({ key: s.key, shape: [...s.shape], dtype: s.dtype }));
}

/**
 * A state dict whose tensors have the listed shapes and dtypes but hold no values (a zero-length
 * view stands in for the data): enough for inference and validation, never for running.
 */
export function shapeOnlyStateDict(keys: readonly { key: string; shape: readonly number[]; dtype: string }[]): StateDict {
  const m = new Map<string, TensorData>();
  for (const k of keys) {
    const dtype = k.dtype === 'I64' ? 'int64' : k.dtype === 'F16' ? 'float16' : 'float32';
    const t = Object.create(TensorData.prototype) as { dtype: string; shape: readonly number[]; data: unknown };
    Object.assign(t, { dtype, shape: [...k.shape], data: new Float32Array(0) });
    m.set(k.key, t as unknown as TensorData);
  }
  return m;
}

/** A copy of a state dict with some keys removed / added / replaced. */
export function editStateDict(sd: StateDict, edit: { drop?: string[]; set?: Record<string, TensorData> }): Map<string, TensorData> {
  const m = new Map(sd);
  for (const k of edit.drop ?? []) m.delete(k);
  for (const [k, v] of Object.entries(edit.set ?? {})) m.set(k, v);
  return m;
}

/**
 * A runnable state dict for a key list, with values that keep activations in range: BatchNorm
 * running variances and weights near 1, other weights uniform with variance 1/fan_in (xorshift,
 * deterministic).
 * For real-size smoke runs of architectures whose weights are not in the repository.
 */
export function randomStateDict(spec: readonly KeySpec[], seed = 1): Map<string, TensorData> {
  let s = seed >>> 0 || 1;
  const uni = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
  const m = new Map<string, TensorData>();
  for (const k of spec) {
    if (k.dtype === 'I64') { m.set(k.key, new TensorData('int64', k.shape, new BigInt64Array(1))); continue; }
    const n = k.shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    const leaf = k.key.slice(k.key.lastIndexOf('.') + 1);
    const fanIn = k.shape.length > 1 ? n / k.shape[0] : 1;
    for (let i = 0; i < n; i++) {
      if (leaf === 'running_var') d[i] = 0.5 + uni();
      else if (leaf === 'running_mean' || leaf === 'bias') d[i] = 0.2 * (uni() - 0.5);
      else if (k.shape.length === 1) d[i] = 0.5 + uni(); // BatchNorm weights, PReLU slopes
      else d[i] = (2 * uni() - 1) * Math.sqrt(3 / fanIn);
    }
    m.set(k.key, new TensorData('float32', k.shape, d));
  }
  return m;
}
