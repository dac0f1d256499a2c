import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsError } from './errors.ts';
import { parseSafetensors, readSafetensors, serializeSafetensors, writeSafetensors } from './safetensors.ts';
import { TensorData, dtypeCode, f32, type DType } from './tensor.ts';
import { randomTensor } from './testing.ts';

const FIX = new URL('../../test/fixtures/', import.meta.url).pathname;

/** A safetensors file with this exact header JSON and `dataBytes` zero bytes of data. */
function withHeader(header: unknown, dataBytes = 0, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

test('fixture files: tensors, dtypes and metadata as the header says', () => {
  const { tensors, metadata } = readSafetensors(FIX + 'clip/tiny_clip.safetensors');
  assert.equal(tensors.size, 62);
  assert.equal(metadata.format, 'pt');
  const w = tensors.get('visual.conv1.weight')!;
  assert.equal(w.dtype, 'float16');
  assert.deepEqual(w.shape, [64, 3, 32, 32]);
  // cross-check against a plain JSON parse of the header
  const bytes = readFileSync(FIX + 'stylegan2/io.safetensors');
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const file = parseSafetensors(bytes);
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const t = file.tensors.get(name)!;
    assert.equal(dtypeCode(t.dtype), info.dtype, name);
    assert.deepEqual(t.shape, info.shape, name);
    assert.deepEqual(t.bytes(), new Uint8Array(bytes.subarray(8 + n + info.data_offsets[0], 8 + n + info.data_offsets[1])), name);
  }
  assert.deepEqual(Object.keys(file.metadata), Object.keys(header.__metadata__ ?? {}));
});

test('write then read: every dtype, scalars, empty tensors, metadata, order', () => {
  const dtypes: DType[] = ['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint64', 'uint32', 'uint16', 'uint8', 'bool'];
  const tensors = new Map<string, TensorData>(dtypes.map((d, i) => [`t.${d}`, randomTensor(d, [2, 3], i)]));
  tensors.set('scalar', f32([], [3.5]));
  tensors.set('empty', f32([0, 7]));
  tensors.set('__proto__', f32([1], [7]));
  const bytes = serializeSafetensors(tensors, { seed: '1', note: 'ü' });
  const back = parseSafetensors(bytes);
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [k, t] of tensors) {
    const b = back.tensors.get(k)!;
    assert.equal(b.dtype, t.dtype, k);
    assert.deepEqual(b.shape, t.shape, k);
    assert.deepEqual(b.bytes(), t.bytes(), k);
  }
  assert.deepEqual(back.metadata, { seed: '1', note: 'ü' });
  // aligned: tensors are views of the bytes
  assert.equal(back.tensors.get('t.float64')!.data.buffer, bytes.buffer);

  const dir = mkdtempSync(join(tmpdir(), 'st-'));
  try {
    writeSafetensors(join(dir, 'a.safetensors'), { x: f32([2], [1, 2]) });
    assert.deepEqual([...readSafetensors(join(dir, 'a.safetensors')).tensors.get('x')!.data], [1, 2]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('unaligned data are copied, not viewed', () => {
  const header = { x: { dtype: 'F32', shape: [2], data_offsets: [1, 9] }, pad: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } };
  const bytes = withHeader(header, 9, JSON.stringify(header).padEnd(120)); // data start 8-aligned, x at +1
  new DataView(bytes.buffer).setFloat32(8 + 120 + 1, 1.25, true);
  const x = parseSafetensors(bytes).tensors.get('x')!;
  assert.equal(x.data[0], 1.25);
  assert.notEqual(x.data.buffer, bytes.buffer);
});

test('lying or malformed headers are refused with a message naming the problem', () => {
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(5), /too short/],
    [(() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })(), /exceeds the 100000000-byte limit/],
    [(() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 100n, true); return b; })(), /runs past the end of the file/],
    [withHeader(null, 0, '[1, 2]'), /not a JSON object/],
    [withHeader(null, 0, '{"a": '), /not valid JSON/],
    [withHeader({ a: { ...ok, dtype: 'F8_E4M3' } }, 8), /tensor 'a': unsupported dtype "F8_E4M3"/],
    [withHeader({ a: { ...ok, shape: [-1] } }, 8), /tensor 'a': bad shape/],
    [withHeader({ a: { ...ok, shape: [2.5] } }, 8), /tensor 'a': bad shape/],
    [withHeader({ a: { ...ok, data_offsets: [8, 0] } }, 8), /outside the 8 data bytes/],
    [withHeader({ a: { ...ok, data_offsets: [0, 16] } }, 8), /data_offsets \[0, 16\] outside the 8 data bytes/],
    [withHeader({ a: { ...ok, shape: [3] } }, 8), /F32 \[3\] needs 12 bytes, data_offsets give 8/],
    [withHeader({ a: { ...ok, shape: [2 ** 40, 2 ** 40] } }, 8), /needs .* bytes, data_offsets give 8/],
    [withHeader({ a: ok, b: { ...ok, data_offsets: [4, 12] } }, 12), /tensors 'a' and 'b' overlap/],
    [withHeader({ a: ok, __metadata__: { k: 1 } }, 8), /__metadata__\['k'\] is not a string/],
    [withHeader({ a: 'x' }, 8), /tensor 'a': entry is not an object/],
  ];
  for (const [bytes, msg] of cases) {
    assert.throws(() => parseSafetensors(bytes), (e: Error) => e instanceof SafetensorsError && msg.test(e.message), String(msg));
  }
  assert.throws(() => readSafetensors(FIX + 'clip/tiny_clip_jit_anatomy.json'), /tiny_clip_jit_anatomy\.json: /);
});
