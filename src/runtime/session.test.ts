import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../graph/index.ts';
import { compile, type ExecutionProvider } from './session.ts';

const double = () => {
  const g = new G.Graph();
  return { y: G.mul(g.input('x', [2]), 2) };
};

test('sessions: cpu runs; a graph compiled twice reuses the cached session', async () => {
  const a = await compile(double()), b = await compile(double());
  assert.equal(a.session, b.session);
  assert.deepEqual([...(await a.run({ x: new Float32Array([1, 2]) })).y.data], [2, 4]);
  await assert.rejects(a.run({}), /missing input 'x' \[2\]/);
  await assert.rejects(a.run({ x: new Float32Array(3) }), /input 'x': 3 values, expected \[2\]/);
});

test('execution providers: unknown ones and GPU ones that cannot start give an error naming the provider and the fix', async () => {
  await assert.rejects(compile(double(), { executionProvider: 'dml' as ExecutionProvider }), /execution provider 'dml' is not available in this onnxruntime-node build \(available: cpu/);
  // cuda / webgpu are listed by onnxruntime-node on linux-x64; on a machine without the GPU, its
  // driver or the CUDA binaries they fail at session creation, and must say so clearly
  for (const ep of ['cuda', 'webgpu'] as const) {
    try {
      const c = await compile(double(), { executionProvider: ep });
      assert.deepEqual([...(await c.run({ x: new Float32Array([1, 2]) })).y.data], [2, 4]); // a GPU machine
    } catch (e) {
      assert.match((e as Error).message, new RegExp(`^execution provider '${ep}' (could not start: .*use executionProvider 'cpu'.*ONNX Runtime said: .+|is not available)`));
    }
  }
});
