import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TensorData, bfloat16BitsToFloat32, dtypeCode, dtypeFromCode, f32, float16BitsToFloat32, float32ToFloat16Bits, toFloat32, toFloat32Array,
} from './tensor.ts';

test('float16 -> float32 is exact, and float32 -> float16 inverts it for every bit pattern', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f = float16BitsToFloat32(all);
  const back = float32ToFloat16Bits(f);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.ok(Number.isNaN(f[h]!), `0x${h.toString(16)}`);
    else assert.equal(back[h], h, `0x${h.toString(16)} -> ${f[h]}`);
  }
  const known: [number, number][] = [[0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x0400, 2 ** -14], [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity]];
  for (const [h, v] of known) assert.equal(f[h], v);
  assert.ok(Object.is(f[0x8000], -0));
});

test('float32 -> float16 rounds to nearest even, like tensor.half()', () => {
  const cases: [number, number][] = [
    [1 + 2 ** -11, 0x3c00], // tie -> even (down)
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie
    [65519, 0x7bff], [65520, 0x7c00], // overflow at the tie
    [2 ** -25, 0x0000], [3 * 2 ** -26, 0x0001], [2 ** -25 + 2 ** -35, 0x0001], // subnormal rounding
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up into the normal range
    [-0, 0x8000], [1e-10, 0], [NaN, 0x7e00],
  ];
  for (const [v, h] of cases) assert.equal(float32ToFloat16Bits([v])[0], h, `${v}`);
});

test('bfloat16 and integer upcasts', () => {
  assert.deepEqual([...bfloat16BitsToFloat32(Uint16Array.of(0x3f80, 0xc000, 0x7f80, 0x0001))], [1, -2, Infinity, 2 ** -133]);
  assert.deepEqual([...toFloat32Array(new TensorData('int64', [3], BigInt64Array.of(-3n, 0n, 1n << 40n)))], [-3, 0, 2 ** 40]);
  assert.deepEqual([...toFloat32Array(new TensorData('float64', [2], Float64Array.of(0.1, -2)))], [Math.fround(0.1), -2]);
  assert.deepEqual([...toFloat32Array(new TensorData('uint8', [2], Uint8Array.of(0, 255)))], [0, 255]);
  const t = f32([2], [1, 2]);
  assert.equal(toFloat32(t), t, 'float32 is returned as is');
  assert.equal(toFloat32(new TensorData('float16', [1], Uint16Array.of(0x3c00))).data[0], 1);
});

test('TensorData checks its data against dtype and shape; dtype codes', () => {
  assert.throws(() => new TensorData('float32', [2, 2], new Float32Array(3)), /needs 4 elements, got 3/);
  assert.throws(() => new TensorData('float32', [1], new Uint16Array(1) as never), /needs a Float32Array/);
  assert.equal(new TensorData('float32', [], new Float32Array(1)).numel, 1);
  assert.equal(dtypeCode('bfloat16'), 'BF16');
  assert.equal(dtypeFromCode('I64'), 'int64');
  assert.equal(dtypeFromCode('F8_E4M3'), undefined);
});
