import { saveTorchZip, saveTorchLegacy, randomTensor } from './testing.ts';
import { loadCheckpoint, flattenStateDict } from './torch.ts';
import { serializeSafetensors, readSafetensors } from './safetensors.ts';
import { toFloat32Array, TensorData } from './tensor.ts';
import { writeFileSync, rmSync } from 'node:fs';
const t: Record<string, TensorData> = {};
for (let i = 0; i < 300; i++) t[`layer.${i}.weight`] = new TensorData('float16', [512, 512], new Uint16Array(512*512).fill(0x3c00 + i));
t['tok'] = new TensorData('float32', [49408, 512], new Float32Array(49408*512));
for (const [name, bytes] of [['zip', saveTorchZip(t)], ['legacy', saveTorchLegacy(t)], ['st', serializeSafetensors(t)]] as const) {
  const path = `/tmp/big.${name}`; writeFileSync(path, bytes);
  const t0 = performance.now();
  const sd = name === 'st' ? readSafetensors(path).tensors : flattenStateDict(loadCheckpoint(path));
  const t1 = performance.now();
  let n = 0; for (const v of sd.values()) n += toFloat32Array(v).length;
  const t2 = performance.now();
  console.log(name, (bytes.length/1e6).toFixed(0)+'MB', 'load', (t1-t0).toFixed(0), 'ms; to f32', (t2-t1).toFixed(0), 'ms', sd.size, n);
  rmSync(path);
}
