// One entry point for a network's weights, whatever the file's format: `loadStateDict(path)`
// gives a flat Map from dotted key to TensorData (take a sub-dict with `selectPrefix`, upcast
// with `toFloat32Array`).

import { readFileSync } from 'node:fs';
import { IoError, rethrowWithPath } from './errors.ts';
import { checkpointFormat, flattenStateDict, parseCheckpoint, type CheckpointFormat } from './torch.ts';
import { parseSafetensors } from './safetensors.ts';
import type { TensorData } from './tensor.ts';

export type WeightsFormat = CheckpointFormat | 'safetensors';

/** Recognises a weights file by its first bytes; undefined when it is none of ours. */
export function detectWeightsFormat(bytes: Uint8Array): WeightsFormat | undefined {
  // safetensors: u64 header length, then the JSON header's '{'
  if (bytes.length >= 10 && bytes[8] === 0x7b && bytes[6] === 0 && bytes[7] === 0) return 'safetensors';
  return checkpointFormat(bytes);
}

export interface StateDictFile {
  format: WeightsFormat;
  tensors: Map<string, TensorData>;
  /** safetensors `__metadata__` ({} for PyTorch files). */
  metadata: Record<string, string>;
}

/** Parses weights bytes of any supported format into a flat state dict. */
export function parseStateDict(bytes: Uint8Array): StateDictFile {
  const format = detectWeightsFormat(bytes);
  if (format === 'safetensors') return { format, ...parseSafetensors(bytes) };
  if (format === undefined) throw new IoError('not a PyTorch checkpoint, TorchScript archive or safetensors file');
  return { format, tensors: flattenStateDict(parseCheckpoint(bytes)), metadata: {} };
}

/**
 * Every tensor of a `.pt`/`.pth` (zip or legacy), TorchScript or `.safetensors` file, keyed by
 * its dotted path (`g_ema.style.1.weight`, `state_dict.encoder.input_layer.0.weight`, ...).
 */
export function loadStateDict(source: string | Uint8Array): StateDictFile {
  if (typeof source !== 'string') return parseStateDict(source);
  const bytes = readFileSync(source);
  try {
    return parseStateDict(bytes);
  } catch (e) {
    rethrowWithPath(e, source);
  }
}
