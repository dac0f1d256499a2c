import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f32, TensorData } from '../../io/tensor.ts';
import { saveTorchZip } from '../../io/testing.ts';
import { isPyDict, type PyDict } from '../../io/pickle.ts';
import * as G from '../../graph/index.ts';
import { evaluate } from '../../runtime/session.ts';
import { hostF32, readCheckpoint, readFixture, validateStateDict } from '../common.ts';
import { fixturePath, officialKeys, randomStateDict, shapeOnlyStateDict, specAsKeys } from '../testing.ts';
import { formatLine } from '../../verify/compare.ts';
import { E4E_FFHQ, e4eCodes, e4eEncode, e4eEncoderSpec, e4eFromCheckpoint, e4eInputSize, e4eStateSpec, inferE4eConfig, loadE4e } from './e4e.ts';
import { detect, verify } from './verify.ts';

const DIR = fixturePath('e4e');
const CKPT = fixturePath('e4e', 'tiny_e4e.pt');

test('e4e: codes, pSp codes, taps and the input gradient match every fixture tensor', async () => {
  assert.ok(detect(DIR));
  const lines = await verify(DIR);
  assert.equal(lines.length, 10);
  for (const l of lines) assert.ok(l.pass, formatLine(l));
});

test('e4e: the reduced config (README patch) is inferred from keys and opts', () => {
  const net = loadE4e(CKPT);
  const c = net.config;
  assert.deepEqual(c.stages.map((s) => [s.inChannel, s.depth, s.units]), [[16, 16, 1], [16, 20, 2], [20, 24, 2], [24, 32, 1]]);
  assert.equal(c.stem, 16);
  assert.equal(c.styleCount, 8); // stylegan_size 32
  assert.deepEqual(c.styleConvs, [2, 2, 2, 3, 3, 3, 3, 4]); // spatial 4 / 8 / 16
  assert.equal(c.styleIn, 32);
  assert.equal(c.styleDim, 16);
  assert.equal(c.c1Channels, 20);
  assert.equal(c.c2Channels, 24);
  assert.equal(e4eInputSize(c), 64);
  assert.equal(c.encoderType, 'Encoder4Editing');
  assert.ok(net.startFromLatentAvg);
  assert.equal(net.latentAvg!.length, 8 * 16);
  assert.equal(net.decoder.size, 0);
});

test('e4e: the real-size builder gives exactly the official encoder keys, shapes and order', () => {
  const official = officialKeys('e4e', 'official_e4e_keys.json');
  const enc = official.filter((k) => k.key.startsWith('encoder.'));
  assert.equal(enc.length, 621);
  assert.deepEqual(specAsKeys(e4eStateSpec(E4E_FFHQ)), enc);
  // the encoder keys come first in pSp.state_dict(), then the decoder's
  assert.deepEqual(official.slice(0, enc.length), enc);
  const stripped = shapeOnlyStateDict(enc.map((k) => ({ ...k, key: k.key.slice('encoder.'.length) })));
  assert.deepEqual(inferE4eConfig(stripped, { stylegan_size: 1024, encoder_type: 'Encoder4Editing' }), E4E_FFHQ);
  assert.equal(e4eInputSize(E4E_FFHQ), 256);
  validateStateDict('e4e', stripped, e4eEncoderSpec(E4E_FFHQ));
  assert.throws(() => inferE4eConfig(stripped, { stylegan_size: 512 }), /stylegan_size 512 means 16 styles, the weights have 18/);
});

function tinyRoot(): PyDict {
  const root = readCheckpoint(CKPT);
  assert.ok(isPyDict(root));
  return root;
}

test('e4e: validation names missing, unexpected and mis-shaped encoder keys; decoder keys pass through', () => {
  let root = tinyRoot();
  delete (root.state_dict as PyDict)['encoder.styles.3.linear.bias'];
  assert.throws(() => e4eFromCheckpoint(root), /missing 'styles\.3\.linear\.bias'/);
  root = tinyRoot();
  (root.state_dict as PyDict)['encoder.latlayer1.weight'] = f32([32, 20, 1, 1]);
  assert.throws(() => e4eFromCheckpoint(root), /'latlayer1\.weight' has shape \[32, 20, 1, 1\]/);
  root = tinyRoot();
  (root.state_dict as PyDict)['encoder.styles.0.extra'] = f32([1]);
  assert.throws(() => e4eFromCheckpoint(root), /unexpected key 'styles\.0\.extra'/);
  root = tinyRoot();
  (root.state_dict as PyDict)['discriminator.w'] = f32([1]);
  assert.throws(() => e4eFromCheckpoint(root), /unexpected key 'discriminator\.w'/);
  root = tinyRoot();
  (root.state_dict as PyDict)['decoder.style.1.weight'] = f32([4, 4]);
  for (const k of Object.keys(root.state_dict as PyDict)) if (k.endsWith('num_batches_tracked')) delete (root.state_dict as PyDict)[k];
  const net = e4eFromCheckpoint(root);
  assert.deepEqual([...net.decoder.keys()], ['style.1.weight']);
  root = tinyRoot();
  root.latent_avg = f32([7, 16]);
  assert.throws(() => e4eFromCheckpoint(root), /latent_avg has shape \[7, 16\], expected \[8, 16\]/);
});

test('e4e: GradualStyleEncoder rows are the e4e deltas; progressive stage 0 repeats w0', async () => {
  const net = loadE4e(CKPT);
  const gse = { ...net, config: { ...net.config, encoderType: 'GradualStyleEncoder' as const } };
  const x = readFixture(DIR, 'io.safetensors').tensors.get('input')!;
  const g = new G.Graph();
  const xi = g.input('x', x.shape);
  const r = await evaluate({ e: e4eEncode(net, xi), p: e4eEncode(gse, xi), s0: e4eEncode(net, xi, { progressiveStage: 0 }) }, { x: hostF32(x) });
  const e = r.e.data as Float32Array; const p = r.p.data as Float32Array; const s0 = r.s0.data as Float32Array;
  const [N, S, D] = r.e.shape;
  for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
    const i = (n * S + s) * D + d; const w0 = (n * S) * D + d;
    const want = s === 0 ? p[w0] : p[w0] + p[i];
    assert.ok(Math.abs(e[i] - want) < 1e-6, `row ${s}`);
    assert.equal(s0[i], e[w0]);
  }
});

// A second configuration without PyTorch: another stage layout, stylegan_size 64 (10 styles),
// input 128 (style blocks of 3 / 4 / 5 convs), written as a pSp checkpoint and loaded back. (The
// same layouts were checked against the official Encoder4Editing with alternate fixtures.)
function altConfig(stages: [number, number, number][], styleCount: number, styleDim: number, base: number) {
  const st = stages.map(([inChannel, depth, units]) => ({ inChannel, depth, units }));
  return {
    ...E4E_FFHQ, stem: stages[0][0], stages: st, styleCount, styleDim, styleIn: st[3].depth,
    styleConvs: Array.from({ length: styleCount }, (_, i) => (i < 3 ? base : i < 7 ? base + 1 : base + 2)),
    c1Channels: st[1].depth, c2Channels: st[2].depth,
  };
}
function altCheckpoint(c: ReturnType<typeof altConfig>, stylegan: number): Uint8Array {
  const sd: Record<string, TensorData> = {};
  for (const [k, v] of randomStateDict(e4eEncoderSpec(c), 5)) sd[`encoder.${k}`] = v;
  const la = new TensorData('float32', [c.styleCount, c.styleDim], new Float32Array(c.styleCount * c.styleDim).fill(0.5));
  return saveTorchZip({ state_dict: sd, opts: { stylegan_size: stylegan, encoder_type: 'Encoder4Editing', start_from_latent_avg: true }, latent_avg: la });
}

test('e4e: another stage layout, 10 styles, input 128 round-trips through the checkpoint layout and runs', async () => {
  const c = altConfig([[12, 16, 2], [16, 24, 1], [24, 28, 3], [28, 40, 1]], 10, 24, 3);
  const net = loadE4e(altCheckpoint(c, 64));
  assert.deepEqual(net.config, c);
  assert.equal(e4eInputSize(net.config), 128);
  const g = new G.Graph();
  const x = g.input('x', [1, 3, 128, 128]);
  const taps: Record<string, G.Tensor> = {};
  const codes = e4eCodes(net, x, { taps });
  assert.deepEqual(codes.shape, [1, 10, 24]);
  assert.deepEqual([taps.c1.shape, taps.c2.shape, taps.c3.shape, taps.w0.shape], [[1, 24, 32, 32], [1, 28, 16, 16], [1, 40, 8, 8], [1, 24]]);
  const r = await evaluate({ codes }, { x: { data: new Float32Array(3 * 128 * 128).fill(0.1), shape: [1, 3, 128, 128] } });
  assert.ok((r.codes.data as Float32Array).every(Number.isFinite));
  assert.throws(() => e4eCodes(net, g.input('y', [1, 3, 64, 64])), /input must be \[N, 3, 128, 128\]/);
});

test('e4e: a stage that keeps the width needs the stage list (its stride-2 start has no weights)', () => {
  const c = altConfig([[16, 16, 1], [16, 24, 2], [24, 24, 1], [24, 32, 1]], 8, 16, 2);
  const bytes = altCheckpoint(c, 32);
  assert.throws(() => loadE4e(bytes), /body has 3 stages .*pass the stage list/);
  const net = loadE4e(bytes, 'e4e', { stages: c.stages });
  assert.deepEqual(net.config, c);
  // GradualStyleEncoder rows: w0 is row 0
  const gse = { ...net, config: { ...net.config, encoderType: 'GradualStyleEncoder' as const } };
  const taps: Record<string, G.Tensor> = {};
  e4eEncode(gse, new G.Graph().input('x', [1, 3, 64, 64]), { taps });
  assert.deepEqual(taps.w0.shape, [1, 16]);
});
