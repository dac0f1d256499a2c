// Issue 5 (b): the HTTP API on the tiny networks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { createServer, type ClipmapperServer } from './index.ts';
import { JobQueue, QueueFullError } from './queue.ts';
import { pipeline } from '../pipeline/editor.ts';
import { tinyWeights, TEST_IMAGES } from '../pipeline/testing.ts';

const tiny = tinyWeights();
let app: ClipmapperServer;
let base = '';

before(async () => {
  const [hairclip, ffclip] = await Promise.all([
    pipeline('hairclip', { weights: tiny.hairclip, download: false }),
    pipeline('ffclip', { weights: tiny.ffclip, download: false }),
  ]);
  app = await createServer({ editors: { hairclip, ffclip }, maxUploadBytes: 2 * 1024 * 1024, maxPixels: 1_000_000, queueLimit: 4 });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});
after(async () => { await app?.close(); });

function form(fields: Record<string, string>, files: Record<string, Uint8Array> = {}): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  for (const [k, v] of Object.entries(files)) fd.append(k, new Blob([v as unknown as BlobPart]), `${k}.png`);
  return fd;
}
async function post(fd: FormData): Promise<Response> {
  return fetch(`${base}/api/edit`, { method: 'POST', body: fd });
}
async function jsonError(r: Response): Promise<{ error: string; message: string }> {
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  return r.json() as Promise<{ error: string; message: string }>;
}
const astronaut = readFileSync(TEST_IMAGES.astronaut);

test('GET /api/health: methods, queue, limits', async () => {
  const r = await fetch(`${base}/api/health`);
  assert.equal(r.status, 200);
  const h = await r.json() as { status: string; methods: { method: string; defaultAlpha: number }[]; defaultMethod: string; queue: { limit: number }; limits: { maxPixels: number } };
  assert.equal(h.status, 'ok');
  assert.deepEqual(h.methods.map((m) => [m.method, m.defaultAlpha]), [['hairclip', 0.1], ['ffclip', 1]]);
  assert.equal(h.defaultMethod, 'hairclip');
  assert.equal(h.queue.limit, 4);
  assert.equal(h.limits.maxPixels, 1_000_000);
});

test('POST /api/edit: astronaut.png + a hairstyle -> the edited photo as PNG (also crop / grid outputs, ffclip, a reference image)', async () => {
  const r = await post(form({ hairstyle: 'afro', color: 'purple', alpha: '0.2' }, { image: astronaut }));
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(r.headers.get('content-type'), 'image/png');
  assert.equal(r.headers.get('x-clipmapper-method'), 'hairclip');
  const png = Buffer.from(await r.arrayBuffer());
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.deepEqual([meta.width, meta.height], [512, 512]);
  assert.ok(JSON.parse(r.headers.get('x-clipmapper-timings')!).detect > 0);

  const crop = await post(form({ hairstyle: 'afro', output: 'crop' }, { image: astronaut, colorRef: astronaut }));
  assert.equal(crop.status, 200);
  assert.equal((await sharp(Buffer.from(await crop.arrayBuffer())).metadata()).width, 64);
  const grid = await post(form({ method: 'ffclip', text: 'a smile', output: 'grid' }, { image: astronaut }));
  assert.equal(grid.status, 200);
  assert.equal(grid.headers.get('x-clipmapper-method'), 'ffclip');
  assert.equal((await sharp(Buffer.from(await grid.arrayBuffer())).metadata()).width, 1024);
});

test('refuses bad input with 4xx and a JSON message: not an image 415, too many bytes 413, too many pixels 413, no face 422, bad fields 400', async () => {
  let r = await post(form({ hairstyle: 'afro' }, { image: new TextEncoder().encode('this is a text file, not a photo') }));
  assert.equal(r.status, 415);
  assert.equal((await jsonError(r)).error, 'not_an_image');

  const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7919) & 255);
  r = await post(form({ hairstyle: 'afro' }, { image: big }));
  assert.equal(r.status, 413);
  assert.match((await jsonError(r)).message, /too large/);

  const huge = await sharp({ create: { width: 2000, height: 1000, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer();
  r = await post(form({ hairstyle: 'afro' }, { image: huge }));
  assert.equal(r.status, 413);
  assert.match((await jsonError(r)).message, /2000x1000 = 2000000 pixels; the limit is 1000000/);

  r = await post(form({ hairstyle: 'afro' }, { image: readFileSync(TEST_IMAGES.chelsea) }));
  assert.equal(r.status, 422);
  const nf = await jsonError(r);
  assert.equal(nf.error, 'no_face');
  assert.match(nf.message, /no face found/);

  r = await post(form({ hairstyle: 'afro' }));
  assert.equal(r.status, 400);
  assert.equal((await jsonError(r)).error, 'no_image');
  r = await post(form({}, { image: astronaut }));
  assert.equal(r.status, 400);
  assert.match((await jsonError(r)).message, /HairCLIP needs a hairstyle and\/or a hair colour/);
  r = await post(form({ hairstyle: 'afro', alpha: 'lots' }, { image: astronaut }));
  assert.equal(r.status, 400);
  r = await post(form({ method: 'styleclip', hairstyle: 'afro' }, { image: astronaut }));
  assert.equal(r.status, 400);
  assert.match((await jsonError(r)).message, /not loaded on this server/);
  r = await post(form({ hairstyle: 'afro', bogus: '1' }, { image: astronaut }));
  assert.equal(r.status, 400);
  r = await fetch(`${base}/api/edit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 415);
  r = await post(form({ hairstyle: 'afro', face: '2' }, { image: astronaut }));
  assert.equal(r.status, 422);
  assert.ok(app.stats.clientErrors >= 10);
});

test('POST /api/export writes the edit as ONNX and serves it; GET / serves the page and /ort/ onnxruntime-web', async () => {
  const r = await fetch(`${base}/api/export`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hairstyle: 'afro' }) });
  assert.equal(r.status, 200);
  const j = await r.json() as { base: string; manifest: { files: { edit: { file: string; bytes: number }; e4e: { file: string } } } };
  const onnx = await fetch(`${base}${j.base}${j.manifest.files.edit.file}`);
  assert.equal(onnx.status, 200);
  assert.equal((await onnx.arrayBuffer()).byteLength, j.manifest.files.edit.bytes);
  assert.equal((await fetch(`${base}${j.base}${j.manifest.files.e4e.file}`)).status, 200);
  const again = await (await fetch(`${base}/api/export`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hairstyle: 'afro' }) })).json() as { base: string };
  assert.equal(again.base, j.base, 'the same edit is exported once');

  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<script type="module" src="app.js">/);
  assert.equal((await fetch(`${base}/app.js`)).status, 200);
  assert.equal((await fetch(`${base}/ort/ort.webgpu.min.mjs`)).status, 200);
  // browser mode's parts: parser.onnx exported, face-api's bundle and its three models (nothing
  // else of the package), and our bundled browser code as an importable module
  const withParser = j.manifest as unknown as { files: { parser?: { file: string } }; parser: { size: number; classes: { head: number[] } } | null };
  assert.ok(withParser.files.parser && withParser.parser && withParser.parser.classes.head.length > 0, 'parser.onnx exported with its classes');
  assert.equal((await fetch(`${base}${j.base}${withParser.files.parser.file}`)).status, 200);
  assert.equal((await fetch(`${base}/face-api/dist/face-api.esm.js`)).status, 200);
  for (const m of ['ssd_mobilenetv1', 'tiny_face_detector', 'face_landmark_68']) {
    const manifest = await fetch(`${base}/face-api/model/${m}_model-weights_manifest.json`);
    assert.equal(manifest.status, 200, m);
    const shards = (await manifest.json() as { paths: string[] }[]).flatMap((g) => g.paths);
    for (const shard of shards) assert.equal((await fetch(`${base}/face-api/model/${shard}`)).status, 200, shard);
  }
  assert.equal((await fetch(`${base}/face-api/model/age_gender_model.bin`)).status, 404, 'only the models detection uses');
  assert.equal((await fetch(`${base}/face-api/package.json`)).status, 404);
  const lib = await fetch(`${base}/lib/clipmapper.js`);
  assert.equal(lib.status, 200);
  assert.match(lib.headers.get('content-type') ?? '', /javascript/);
  const mod = await import(`data:text/javascript;base64,${Buffer.from(await lib.text()).toString('base64')}`) as Record<string, unknown>;
  for (const f of ['detectWithFaceApi', 'alignFfhq', 'pasteBack', 'rgbToTensor', 'tensorToRgb', 'TensorData', 'blendMask', 'cropBlendMask']) assert.equal(typeof mod[f], 'function', f);
  const nf = await fetch(`${base}/api/nope`);
  assert.equal(nf.status, 404);
});

test('JobQueue: one job at a time, at most `limit` waiting, the rest refused at once', async () => {
  const q = new JobQueue(1, 2);
  let running = 0, maxRunning = 0;
  const job = () => q.run(async () => { running++; maxRunning = Math.max(maxRunning, running); await new Promise((r) => setTimeout(r, 20)); running--; return 1; });
  const results = await Promise.allSettled([job(), job(), job(), job(), job()]);
  assert.equal(maxRunning, 1);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(refused.length, 2);
  for (const r of refused) assert.ok((r as PromiseRejectedResult).reason instanceof QueueFullError);
  assert.deepEqual(q.size, { running: 0, waiting: 0, limit: 2, concurrency: 1 });
  // a failing job frees its slot
  await assert.rejects(q.run(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await q.run(async () => 7), 7);
});
