// The HTTP API (fastify) and the web page.
//
//   POST /api/edit      multipart: image (file, required), method, hairstyle, color, text, alpha,
//                       face, output (image | crop | grid), hairstyleRef / colorRef (files)
//                       -> the edited photo as PNG (headers: X-Clipmapper-Timings, X-Clipmapper-Method)
//   GET  /api/health    status, methods and their default alpha, queue, limits, memory, counters
//   POST /api/export    JSON {method, hairstyle, color, text} -> manifest of the edit exported as
//                       .onnx (edit + e4e + parser), files served under /models/<id>/ (the page's browser mode)
//   GET  /              the web page (web/), /ort/* onnxruntime-web's files, /models/* exports,
//                       /lib/clipmapper.js our browser-side code (src/web/browser.ts, bundled),
//                       /face-api/* face-api's browser build and its model files
//
// Sessions are loaded once at start (one editor per method) and shared by every request. Inference
// runs through a bounded queue (concurrency 1): a request that finds it full gets 503 with
// Retry-After before its body is read. Uploads are limited in bytes (413) and in pixels (413);
// a file that is not an image gets 415, a photo without a face 422, bad fields 400. Every error is
// JSON: {error, message}.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { browserBundle } from './bundle.ts';
import fastifyStatic from '@fastify/static';
import sharp, { type Metadata } from 'sharp';
import { pipeline, ConditionError, type EditConditions, type FaceEditor, type PipelineOptions } from '../pipeline/editor.ts';
import { METHODS, MissingWeightsError, type EditMethod } from '../pipeline/nets.ts';
import { encodePng, gridImage } from '../pipeline/grid.ts';
import { exportEdit } from '../pipeline/export.ts';
import { ImageError } from '../io/errors.ts';
import { JobQueue, QueueFullError } from './queue.ts';

export interface ServerOptions {
  /** editors already created (tests, embedding); else created from `methods` + `pipeline` */
  editors?: Partial<Record<EditMethod, FaceEditor>>;
  /** methods to load at start (default ['hairclip']); the first is the default of a request */
  methods?: EditMethod[];
  /** pipeline options per method (weights, provider, download...) */
  pipeline?: Partial<Record<EditMethod, PipelineOptions>> & { all?: PipelineOptions };
  /** bytes per uploaded file (default 10 MB) */
  maxUploadBytes?: number;
  /** pixels per uploaded image (default 25 Mpx) */
  maxPixels?: number;
  /** jobs that may wait behind the running one (default 8) */
  queueLimit?: number;
  /** where exported .onnx files go (default a temp folder) */
  exportDir?: string;
  /** the page's folder (default web/ of this checkout) */
  webDir?: string;
  logger?: boolean;
}

export interface ServerStats { ok: number; rejected: number; clientErrors: number; failed: number }

export class HttpError extends Error {
  constructor(readonly statusCode: number, readonly code: string, message: string) { super(message); }
}

const HERE = dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = join(HERE, '../../web');

function ortWebDir(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
  } catch {
    return null;
  }
}

function faceApiDir(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve('@vladmandic/face-api/package.json'));
  } catch {
    return null;
  }
}

function errorBody(code: string, message: string) { return { error: code, message }; }

/** Reads and discards what is left of a request body; false when it is too long or fails (close the connection then). */
export function drainRequest(raw: IncomingMessage, maxBytes: number, timeoutMs = 10_000): Promise<boolean> {
  if (raw.complete || raw.destroyed || raw.readableEnded) return Promise.resolve(!raw.destroyed || raw.complete);
  return new Promise((resolve) => {
    let n = 0;
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.off('data', onData);
      resolve(ok);
    };
    const onData = (c: Buffer) => { n += c.length; if (n > maxBytes) done(false); };
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    raw.on('data', onData);
    raw.once('end', () => done(true));
    raw.once('error', () => done(false));
    raw.once('close', () => done(raw.complete));
    raw.resume();
  });
}

/** Maps an error of the pipeline or of the upload to an HTTP status and a JSON body. */
export function classify(e: unknown): { status: number; code: string; message: string } {
  const err = e as Error & { statusCode?: number; code?: string };
  if (e instanceof HttpError) return { status: e.statusCode, code: e.code, message: e.message };
  if (e instanceof QueueFullError) return { status: 503, code: 'busy', message: e.message };
  if (e instanceof ImageError) return { status: 415, code: 'not_an_image', message: e.message };
  if (err?.name === 'NoFaceError') return { status: 422, code: 'no_face', message: err.message };
  if (e instanceof ConditionError) return { status: 400, code: 'bad_conditions', message: err.message };
  if (e instanceof RangeError && /face \d+ requested/.test(err.message)) return { status: 422, code: 'no_such_face', message: err.message };
  if (err?.code === 'FST_REQ_FILE_TOO_LARGE' || err?.statusCode === 413) return { status: 413, code: 'too_large', message: err.message };
  if (err?.code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') return { status: 415, code: 'not_multipart', message: 'send the photo as multipart/form-data (field "image")' };
  if (e instanceof MissingWeightsError) return { status: 500, code: 'missing_weights', message: err.message };
  if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) return { status: err.statusCode, code: err.code ?? 'bad_request', message: err.message };
  return { status: 500, code: 'internal', message: err?.message ?? String(e) };
}

interface Upload { image?: Buffer; hairstyleRef?: Buffer; colorRef?: Buffer; fields: Record<string, string> }

const FILE_FIELDS = new Set(['image', 'hairstyleRef', 'colorRef']);
const TEXT_FIELDS = new Set(['method', 'hairstyle', 'color', 'text', 'alpha', 'face', 'output']);

async function readUpload(req: FastifyRequest): Promise<Upload> {
  const up: Upload = { fields: {} };
  for await (const part of req.parts()) {
    if (part.type === 'file') {
      if (!FILE_FIELDS.has(part.fieldname)) { await part.toBuffer(); throw new HttpError(400, 'bad_field', `unknown file field '${part.fieldname}' (image, hairstyleRef, colorRef)`); }
      const buf = await part.toBuffer();
      if (buf.length) (up as unknown as Record<string, Buffer>)[part.fieldname] = buf;
    } else {
      if (!TEXT_FIELDS.has(part.fieldname)) throw new HttpError(400, 'bad_field', `unknown field '${part.fieldname}' (${[...TEXT_FIELDS].join(', ')})`);
      up.fields[part.fieldname] = String(part.value ?? '');
    }
  }
  return up;
}

/** Checks that bytes are an image within the pixel limit (415 / 413), without decoding the pixels. */
async function checkImage(buf: Buffer, what: string, maxPixels: number): Promise<void> {
  let meta: Metadata;
  try {
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch {
    throw new HttpError(415, 'not_an_image', `${what} is not an image (PNG, JPEG or WebP expected)`);
  }
  if (!meta.width || !meta.height) throw new HttpError(415, 'not_an_image', `${what} is not an image with a size`);
  if (meta.width * meta.height > maxPixels) {
    throw new HttpError(413, 'too_many_pixels', `${what} is ${meta.width}x${meta.height} = ${meta.width * meta.height} pixels; the limit is ${maxPixels}`);
  }
}

function parseConditions(f: Record<string, string>): EditConditions {
  const c: EditConditions = {};
  if (f.hairstyle?.trim()) c.hairstyle = f.hairstyle.trim().slice(0, 200);
  if (f.color?.trim()) c.color = f.color.trim().slice(0, 200);
  if (f.text?.trim()) c.text = f.text.trim().slice(0, 300);
  if (f.alpha !== undefined && f.alpha.trim() !== '') {
    const a = Number(f.alpha);
    if (!Number.isFinite(a) || Math.abs(a) > 100) throw new HttpError(400, 'bad_alpha', `alpha must be a number in [-100, 100], got '${f.alpha}'`);
    c.alpha = a;
  }
  if (f.face !== undefined && f.face.trim() !== '') {
    const n = Number(f.face);
    if (!Number.isInteger(n) || n < 0) throw new HttpError(400, 'bad_face', `face must be a non-negative integer, got '${f.face}'`);
    c.face = n;
  }
  return c;
}

/** Builds the fastify app (not listening yet): editors are created (sessions loaded) here, once. */
export type ClipmapperServer = FastifyInstance & { stats: ServerStats; queue: JobQueue; editors: Partial<Record<EditMethod, FaceEditor>> };

export async function createServer(o: ServerOptions = {}): Promise<ClipmapperServer> {
  const methods = o.methods ?? (o.editors ? (Object.keys(o.editors) as EditMethod[]) : ['hairclip']);
  for (const m of methods) if (!METHODS.includes(m)) throw new Error(`unknown method '${m}'`);
  const editors: Partial<Record<EditMethod, FaceEditor>> = { ...o.editors };
  for (const m of methods) editors[m] ??= await pipeline(m, { ...o.pipeline?.all, ...o.pipeline?.[m] });
  const defaultMethod = methods[0];
  const maxUploadBytes = o.maxUploadBytes ?? 10 * 1024 * 1024;
  const maxPixels = o.maxPixels ?? 25_000_000;
  const queue = new JobQueue(1, o.queueLimit ?? 8);
  const exportDir = o.exportDir ?? join(tmpdir(), `clipmapper-exports-${process.pid}`);
  const stats: ServerStats = { ok: 0, rejected: 0, clientErrors: 0, failed: 0 };
  const started = Date.now();

  const app = Fastify({ logger: o.logger ?? false, bodyLimit: 64 * 1024 });
  await app.register(multipart, { limits: { fileSize: maxUploadBytes, files: 3, fields: 16, fieldSize: 4096, parts: 24 } });

  app.setErrorHandler(async (e, req, reply) => {
    const { status, code, message } = classify(e);
    if (status === 503) stats.rejected++; else if (status < 500) stats.clientErrors++; else stats.failed++;
    if (status === 503) reply.header('retry-after', '1');
    // answering before the upload is read (busy, too large, a bad field first): read the rest
    // and drop it, so the client sees the answer and the keep-alive connection stays in step;
    // past a few upload sizes the connection is closed instead
    if (!(await drainRequest(req.raw, 4 * maxUploadBytes))) reply.header('connection', 'close');
    return reply.code(status).send(errorBody(code, message));
  });
  app.setNotFoundHandler((req, reply) => { reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.url}`)); });

  app.get('/api/health', async () => ({
    status: 'ok',
    methods: methods.map((m) => ({ method: m, defaultAlpha: editors[m]!.defaultAlpha, generator: editors[m]!.sizes.generator, e4e: editors[m]!.sizes.e4e })),
    defaultMethod,
    queue: queue.size,
    limits: { maxUploadBytes, maxPixels },
    memory: { rssMB: Math.round(process.memoryUsage().rss / 1e6) },
    uptimeS: Math.round((Date.now() - started) / 1000),
    requests: stats,
  }));

  const pickEditor = (m: string | undefined): FaceEditor => {
    const method = (m?.trim() || defaultMethod) as EditMethod;
    const e = editors[method];
    if (!e) throw new HttpError(400, 'bad_method', `method '${m}' is not loaded on this server (available: ${methods.join(', ')})`);
    return e;
  };

  app.post('/api/edit', async (req: FastifyRequest, reply: FastifyReply) => {
    if (queue.full) throw new QueueFullError('the server is busy; try again shortly');
    if (!req.isMultipart()) throw new HttpError(415, 'not_multipart', 'send the photo as multipart/form-data (field "image")');
    const up = await readUpload(req);
    if (!up.image) throw new HttpError(400, 'no_image', 'no photo: send it as the file field "image"');
    await checkImage(up.image, 'the photo', maxPixels);
    const editor = pickEditor(up.fields.method);
    const cond = parseConditions(up.fields);
    if (up.hairstyleRef) { await checkImage(up.hairstyleRef, 'the hairstyle reference', maxPixels); cond.hairstyleRef = up.hairstyleRef; }
    if (up.colorRef) { await checkImage(up.colorRef, 'the colour reference', maxPixels); cond.colorRef = up.colorRef; }
    const output = up.fields.output ?? 'image';
    if (!['image', 'crop', 'grid'].includes(output)) throw new HttpError(400, 'bad_output', `output must be image, crop or grid, got '${output}'`);
    const photo = up.image;
    const png = await queue.run(async () => {
      const r = await editor(photo, cond);
      reply.header('x-clipmapper-timings', JSON.stringify(r.timings));
      if (output === 'crop') return encodePng(r.editedCrop);
      if (output === 'grid') {
        const { decodeImageRgb } = await import('../io/image.ts');
        return encodePng(await gridImage(await decodeImageRgb(photo), r));
      }
      return encodePng(r.image);
    });
    stats.ok++;
    reply.header('x-clipmapper-method', editor.method).type('image/png');
    return reply.send(png);
  });

  app.post('/api/export', async (req: FastifyRequest) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const f: Record<string, string> = {};
    for (const k of ['method', 'hairstyle', 'color', 'text']) if (typeof body[k] === 'string') f[k] = body[k] as string;
    const editor = pickEditor(f.method);
    const cond = parseConditions(f);
    const id = createHash('sha256').update(JSON.stringify([editor.method, cond.hairstyle ?? '', cond.color ?? '', cond.text ?? ''])).digest('hex').slice(0, 16);
    const dir = join(exportDir, id);
    const manifestPath = join(dir, 'manifest.json');
    const manifest = existsSync(manifestPath) ? JSON.parse(await readFile(manifestPath, 'utf8'))
      : await queue.run(() => exportEdit(editor, dir, cond, { withE4e: true, withParser: true }));
    return { id, base: `/models/${id}/`, manifest };
  });

  await app.register(fastifyStatic, { root: o.webDir ?? WEB_DIR, prefix: '/', index: ['index.html'] });
  const ort = ortWebDir();
  if (ort) await app.register(fastifyStatic, { root: ort, prefix: '/ort/', decorateReply: false });
  const faceApi = faceApiDir();
  if (faceApi) {
    // only the browser bundle and the three models detect_core.ts uses
    await app.register(fastifyStatic, { root: join(faceApi, 'dist'), prefix: '/face-api/dist/', decorateReply: false, allowedPath: (p) => /^\/face-api\.esm\.js$/.test(p) });
    await app.register(fastifyStatic, {
      root: join(faceApi, 'model'), prefix: '/face-api/model/', decorateReply: false,
      allowedPath: (p) => /^\/(ssd_mobilenetv1|tiny_face_detector|face_landmark_68)_model[-.\w]*\.(json|bin)$/.test(p),
    });
  }
  app.get('/lib/clipmapper.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(await browserBundle()));
  const { mkdirSync } = await import('node:fs');
  mkdirSync(exportDir, { recursive: true });
  await app.register(fastifyStatic, { root: exportDir, prefix: '/models/', decorateReply: false });

  return Object.assign(app, { stats, queue, editors }) as unknown as ClipmapperServer;
}

/** createServer + listen; resolves with the address. */
export async function startServer(o: ServerOptions & { port?: number; host?: string } = {}): Promise<{ app: FastifyInstance; url: string }> {
  const app = await createServer(o);
  const url = await app.listen({ port: o.port ?? 8080, host: o.host ?? '127.0.0.1' });
  return { app, url };
}
