// Fuzzing the readers: thousands of mutated and truncated checkpoints (zip, legacy, TorchScript)
// and safetensors files, generated here from a seeded PRNG. Every outcome must be a successful
// parse or one of our IoErrors — never a TypeError/RangeError, a hang, or an allocation a lying
// header talked the reader into (tensor memory outside the input is capped by its size).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { IoError } from './errors.ts';
import { serializeSafetensors } from './safetensors.ts';
import { TensorData, f32 } from './tensor.ts';
import {
  PickleBuilder, ScriptModule, StridedTensor, randomTensor, rng, saveTorchLegacy, saveTorchScript, saveTorchZip, writeZip,
} from './testing.ts';
import { ZipArchive } from './zip.ts';
import { parseStateDict } from './weights.ts';

const FIX = '/work/main/test/fixtures/';

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

// values that make length and count fields lie
const NASTY_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
// every opcode the unpickler knows, and a few it does not
const OPCODES = [...'(.012FIJKLMNPQRSTUVXabcdeghijlopqrstu}])GBC'].map((c) => c.charCodeAt(0)).concat(
  [0x80, 0x81, 0x82, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0xff]);

/** One random corruption of `src` (never modified). */
function mutate(src: Uint8Array, r: Rand): Uint8Array {
  const b = src.slice();
  switch (int(r, 7)) {
    case 0: { // flip a few bytes
      for (let k = 1 + int(r, 8); k > 0; k--) b[int(r, b.length)] = int(r, 256);
      return b;
    }
    case 1: return b.subarray(0, int(r, b.length)); // truncate
    case 2: { // a lying 32-bit field
      const p = int(r, Math.max(1, b.length - 4));
      if (p + 4 <= b.length) new DataView(b.buffer).setUint32(p, pick(r, NASTY_U32), true);
      return b;
    }
    case 3: { // a lying 64-bit field
      const p = int(r, Math.max(1, b.length - 8));
      const v = pick(r, [0n, 1n, 1n << 32n, 1n << 40n, 1n << 62n, (1n << 64n) - 1n, BigInt(b.length), BigInt(b.length) * 8n]);
      if (p + 8 <= b.length) new DataView(b.buffer).setBigUint64(p, v, true);
      return b;
    }
    case 4: { // insert random bytes
      const p = int(r, b.length + 1);
      const ins = Uint8Array.from({ length: 1 + int(r, 16) }, () => int(r, 256));
      return concat(b.subarray(0, p), ins, b.subarray(p));
    }
    case 5: { // delete a range
      const p = int(r, b.length);
      return concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + int(r, 32))));
    }
    default: { // an opcode where it hurts
      for (let k = 1 + int(r, 4); k > 0; k--) b[int(r, b.length)] = pick(r, OPCODES);
      return b;
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** The same zip with `data.pkl` corrupted: the archive stays valid, the pickle does not. */
function mutatePickleInZip(zipBytes: Uint8Array, r: Rand): Uint8Array {
  const zip = new ZipArchive(zipBytes);
  return writeZip(zip.names.map((n) => [n, n.endsWith('data.pkl') ? mutate(zip.read(n), r) : zip.read(n)] as [string, Uint8Array]));
}

/** A safetensors file whose JSON header has one field changed (the header length stays honest). */
function mutateSafetensorsHeader(bytes: Uint8Array, r: Rand): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const e = header[pick(r, names)];
  const nasty = pick(r, [-1, 0, 1, 2 ** 31, 2 ** 53, 2 ** 60, 1.5, '3', null, [], 1e308]);
  switch (int(r, 6)) {
    case 0: e.shape[int(r, e.shape.length + 1)] = nasty; break;
    case 1: e.data_offsets[int(r, 2)] = nasty; break;
    case 2: e.dtype = pick(r, ['F32', 'F16', 'I64', 'BOOL', 'F8_E4M3', 'X', 7]); break;
    case 3: e.data_offsets = [e.data_offsets[0] + int(r, 9) - 4, e.data_offsets[1] + int(r, 9) - 4]; break;
    case 4: header.__metadata__ = pick(r, [{ a: 1 }, [], 'x', { ok: 'y' }]); break;
    default: header[pick(r, names)] = pick(r, [null, 1, 'x', { dtype: 'F32' }]); break;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = concat(new Uint8Array(8), json, bytes.subarray(8 + n));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  return out;
}

// --- seeds --------------------------------------------------------------------------------------

function seedTensors(): Record<string, TensorData | StridedTensor | Record<string, unknown>> {
  const storage = randomTensor('float32', [24], 7);
  return {
    w: randomTensor('float32', [4, 3], 1),
    h: randomTensor('float16', [5], 2),
    b: randomTensor('bfloat16', [2, 2], 3),
    n: randomTensor('int64', [], 4),
    m: randomTensor('bool', [3], 5),
    t: new StridedTensor(storage, 2, [3, 4], [1, 3]),
    nested: { u: randomTensor('uint8', [6], 6), e: f32([0]) },
  };
}

const seeds = {
  zip: saveTorchZip({ ...seedTensors(), opts: { lr: 0.5, name: 'x', flags: [true, null] } } as never),
  legacy: saveTorchLegacy(seedTensors() as never),
  torchscript: saveTorchScript(new ScriptModule('__torch__.model.Net', {
    weight: randomTensor('float16', [3, 2], 8), training: false,
    sub: new ScriptModule('__torch__.torch.nn.modules.linear.___torch_mangle_1.Linear', { weight: randomTensor('float32', [2, 2], 9), bias: randomTensor('float32', [2], 10) }),
  })),
  safetensors: serializeSafetensors({ a: randomTensor('float32', [3, 4], 11), b: randomTensor('float16', [5], 12), c: randomTensor('int64', [], 13), d: f32([0, 2]) }, { k: 'v' }),
  realZip: new Uint8Array(readFileSync(FIX + 'mapper/tiny_styleclip_single_mapper.pt')),
  realLegacy: new Uint8Array(readFileSync(FIX + 'stylegan2/tiny_g_legacy.pt')),
  // a pickle that is mostly structure: many small objects, memo references, globals
  pickleHeavy: saveTorchZip(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i % 3 ? { v: i, s: 'x'.repeat(i), l: [i, 1.5, null] } : randomTensor('float32', [2], i)])) as never),
};

/** Parses `bytes`, asserting the outcome is data or an IoError; returns the parse time. */
function check(bytes: Uint8Array, what: string): number {
  const t0 = performance.now();
  try {
    const { tensors } = parseStateDict(bytes);
    // whatever was allocated outside the input is bounded by the input's size
    let outside = 0;
    for (const t of tensors.values()) if (t.data.buffer !== bytes.buffer) outside += t.byteLength;
    assert.ok(outside <= 4 * bytes.length + (1 << 21), `${what}: ${outside} bytes of tensors from a ${bytes.length}-byte input`);
  } catch (e) {
    if (!(e instanceof IoError)) {
      assert.fail(`${what}: ${(e as Error)?.constructor?.name} instead of an IoError: ${(e as Error)?.stack ?? e}`);
    }
  }
  const dt = performance.now() - t0;
  assert.ok(dt < 1000, `${what}: took ${dt.toFixed(0)} ms`);
  return dt;
}


const stats: Record<string, number> = {};
const N = Number(process.env.N ?? 20000);
const gens: [string, (r: Rand) => Uint8Array][] = [
  ['zip', (r) => mutate(seeds.zip, r)], ['zipp', (r) => mutatePickleInZip(seeds.zip, r)], ['heavy', (r) => mutatePickleInZip(seeds.pickleHeavy, r)],
  ['ts', (r) => mutate(seeds.torchscript, r)], ['tsp', (r) => mutatePickleInZip(seeds.torchscript, r)], ['legacy', (r) => mutate(seeds.legacy, r)],
  ['realzip', (r) => mutatePickleInZip(seeds.realZip, r)], ['st', (r) => mutate(seeds.safetensors, r)], ['sth', (r) => mutateSafetensorsHeader(seeds.safetensors, r)],
  ['double', (r) => mutate(mutate(mutatePickleInZip(seeds.zip, r), r), r)], ['ldouble', (r) => mutate(mutate(mutate(seeds.legacy, r), r), r)],
];
const r = rng(Number(process.env.SEED ?? 1));
let worst = 0;
for (let i = 0; i < N; i++) {
  const [name, g] = gens[i % gens.length]!;
  const b = g(r);
  const t0 = performance.now();
  try { parseStateDict(b); stats[name + ' ok'] = (stats[name + ' ok'] ?? 0) + 1; }
  catch (e) {
    if (!(e instanceof IoError)) { console.log('BAD', name, i, (e as Error).stack); (await import('node:fs')).writeFileSync('/tmp/bad.bin', b); process.exit(1); }
    const k = name + ' ' + (e as Error).name + ': ' + (e as Error).message.replace(/\d+/g,'N').slice(0,70); stats[k] = (stats[k] ?? 0) + 1;
  }
  const dt = performance.now() - t0; if (dt > worst) { worst = dt; }
}
console.log(stats, 'worst', worst);
