// Downloading checkpoints into a cache, resumably and verifiably.
//
//   resolveWeights(nameOrPath)  -> a local file path:
//     1. an existing file path is used as is;
//     2. a registry name (or file name) is looked up in the cache directory — a hit is verified once
//        against the registry's sha256 (the result is kept in a `<file>.sha256` sidecar, trusted
//        while it is newer than the file);
//     3. otherwise it is downloaded (an http(s) URL is also accepted as the name).
//   downloadFile(urls, dest)    -> the transfer itself:
//     - bytes go to `<dest>.part`; a dropped connection is retried with `Range: bytes=<n>-` (a
//       server that answers 200 instead of 206 makes the part restart from zero), and a failed
//       run leaves the .part behind for the next run to resume;
//     - redirects are followed (at most `maxRedirects`), an idle connection times out;
//     - the finished part's size and sha256 are checked; a mismatch moves it aside to
//       `<dest>.bad` and throws, naming expected and actual values; on success it is renamed onto
//       `<dest>` (atomic on one filesystem) and the sidecar is written;
//     - a `<dest>.lock` file keeps two processes from writing the same part;
//     - a progress bar (cli-progress) goes to stderr when stderr is a TTY or when asked.
//
// Cache directory: the `cacheDir` option, else $CLIPMAPPER_CACHE, else ~/.cache/clipmapper.
// Only Node built-ins (http, https, fs, crypto) plus cli-progress for the bar.

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { findWeights, REGISTRY, type WeightsEntry } from './registry.ts';

export type DownloadErrorCode = 'http' | 'checksum' | 'size' | 'redirects' | 'html' | 'network' | 'locked' | 'offline' | 'not-found';

export class DownloadError extends Error {
  readonly code: DownloadErrorCode;
  readonly url?: string;
  readonly status?: number;
  constructor(code: DownloadErrorCode, message: string, extra: { url?: string; status?: number; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'DownloadError';
    this.code = code;
    this.url = extra.url;
    this.status = extra.status;
  }
}

export interface DownloadOptions {
  /** expected sha256 (hex); null/undefined = not checked (the hash is still recorded) */
  sha256?: string | null;
  /** expected size in bytes; null/undefined = not checked */
  size?: number | null;
  /** true: always show the bar; false: never; 'auto' (default): when stderr is a TTY */
  progress?: boolean | 'auto';
  /** label of the progress bar (default: the file name) */
  label?: string;
  /** redirects followed per request (default 10) */
  maxRedirects?: number;
  /** a connection silent for this long is dropped and retried (default 60 s) */
  idleTimeoutMs?: number;
  /** further attempts after a dropped connection or a 5xx, per URL (default 4) */
  retries?: number;
  /** wait before attempt k is k * retryDelayMs (default 1000) */
  retryDelayMs?: number;
  /** refuse an HTML answer (e.g. a Google Drive warning page) instead of saving it (default true) */
  rejectHtml?: boolean;
  /** extra request headers */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** one line per event (retry, restart, fallback URL); default: silent */
  log?: (msg: string) => void;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  url: string;
}

// ---------------------------------------------------------------------------------------------
// Cache directory, hashing, sidecars.

/** The cache directory: option, else $CLIPMAPPER_CACHE, else ~/.cache/clipmapper. */
export function cacheDir(opt?: string): string {
  const d = opt ?? process.env.CLIPMAPPER_CACHE;
  if (d && d.length > 0) return resolve(expandHome(d));
  return join(homedir(), '.cache', 'clipmapper');
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

/** sha256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export const sidecarPath = (file: string) => `${file}.sha256`;

async function writeSidecar(file: string, sha: string): Promise<void> {
  await writeFile(sidecarPath(file), `${sha}  ${basename(file)}\n`);
}

/** The hash recorded beside `file`, if the sidecar exists and is not older than the file. */
async function readSidecar(file: string): Promise<string | null> {
  try {
    const [s, f] = await Promise.all([stat(sidecarPath(file)), stat(file)]);
    if (s.mtimeMs < f.mtimeMs) return null;
    const m = /^([0-9a-f]{64})\b/.exec((await readFile(sidecarPath(file), 'utf-8')).trim());
    return m ? m[1]! : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// One HTTP GET, redirects followed.

interface Opened { res: http.IncomingMessage; req: http.ClientRequest; url: string }

function requestOnce(url: string, headers: Record<string, string>, idleTimeoutMs: number, signal?: AbortSignal): Promise<Opened> {
  return new Promise((resolveP, reject) => {
    let u: URL;
    try { u = new URL(url); } catch { reject(new DownloadError('http', `not a URL: ${url}`, { url })); return; }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new DownloadError('http', `unsupported protocol ${u.protocol} in ${url}`, { url }));
      return;
    }
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.get(u, { headers: { 'user-agent': 'clipmapper', 'accept-encoding': 'identity', ...headers }, signal });
    req.setTimeout(idleTimeoutMs, () => req.destroy(new DownloadError('network', `no data from ${u.host} for ${idleTimeoutMs} ms`, { url })));
    req.once('response', (res) => resolveP({ res, req, url }));
    req.once('error', (e) => reject(e instanceof DownloadError ? e : new DownloadError('network', `${u.host}: ${(e as Error).message}`, { url, cause: e })));
  });
}

async function openFollowing(url: string, headers: Record<string, string>, o: Required<Pick<DownloadOptions, 'maxRedirects' | 'idleTimeoutMs'>> & { signal?: AbortSignal }): Promise<Opened> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const opened = await requestOnce(current, headers, o.idleTimeoutMs, o.signal);
    const { res } = opened;
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
      res.resume();
      if (hop >= o.maxRedirects) throw new DownloadError('redirects', `more than ${o.maxRedirects} redirects starting at ${url}`, { url });
      current = new URL(res.headers.location, current).toString();
      continue;
    }
    return opened;
  }
}

// ---------------------------------------------------------------------------------------------
// Progress bar.

function mb(n: number): string {
  return (n / 1e6).toFixed(1) + ' MB';
}

class Bar {
  private bar: cliProgress.SingleBar | null = null;
  private total = 0;
  private t0 = Date.now();
  private base = 0;
  constructor(private enabled: boolean, private label: string) {}
  start(total: number | null, value: number): void {
    if (!this.enabled) return;
    this.stop();
    this.total = total ?? 0;
    this.t0 = Date.now();
    this.base = value;
    this.bar = new cliProgress.SingleBar({
      format: this.total > 0
        ? `${this.label} |{bar}| {percentage}% {done}/{all} {speed} ETA {eta_formatted}`
        : `${this.label} {done} {speed}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    }, cliProgress.Presets.shades_classic);
    this.bar.start(this.total > 0 ? this.total : 1, Math.min(value, this.total || value), this.payload(value));
  }
  private payload(value: number) {
    const secs = Math.max(1e-3, (Date.now() - this.t0) / 1000);
    return { done: mb(value), all: mb(this.total), speed: mb((value - this.base) / secs) + '/s' };
  }
  update(value: number): void {
    if (!this.bar) return;
    this.bar.update(this.total > 0 ? value : 0, this.payload(value));
  }
  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Lock.

async function acquireLock(lockPath: string): Promise<() => Promise<void>> {
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return async () => { await rm(lockPath, { force: true }); };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(lockPath, 'utf-8').catch(() => '')).trim());
      if (pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new DownloadError('locked', `another process (pid ${pid}) is downloading to this file (lock ${lockPath})`);
      }
      await rm(lockPath, { force: true }); // stale lock
    }
  }
  throw new DownloadError('locked', `could not take the lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

// ---------------------------------------------------------------------------------------------
// The transfer.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fileSize(p: string): Promise<number> {
  try { return (await stat(p)).size; } catch { return 0; }
}

/** Content-Range 'bytes a-b/total' or 'bytes * /total' -> numbers (NaN where absent). */
function parseContentRange(h: string | undefined): { start: number; total: number } {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec((h ?? '').trim());
  if (!m) return { start: NaN, total: NaN };
  return { start: m[1] === undefined ? NaN : Number(m[1]), total: m[2] === '*' ? NaN : Number(m[2]) };
}

/**
 * Brings `part` to the full content of `url` (resuming what is there); returns when the server has
 * sent everything. Throws DownloadError; `retryable` errors may be retried by the caller.
 */
async function transferOnce(url: string, part: string, o: ResolvedDownloadOptions, bar: Bar): Promise<void> {
  let offset = await fileSize(part);
  if (o.size != null && offset > o.size) { await truncate(part, 0); offset = 0; }
  if (o.size != null && offset === o.size && offset > 0) return; // already complete

  const headers: Record<string, string> = { ...o.headers };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  const { res, req } = await openFollowing(url, headers, o);
  const status = res.statusCode ?? 0;

  if (status === 416 && offset > 0) {
    res.resume();
    const { total } = parseContentRange(res.headers['content-range']);
    if (total === offset) return; // the part already holds everything
    o.log(`${url}: range ${offset}- not satisfiable (size ${Number.isNaN(total) ? 'unknown' : total}); restarting`);
    await truncate(part, 0);
    throw new RetryNow();
  }
  if (status !== 200 && status !== 206) {
    res.resume();
    const msg = `GET ${url} -> ${status} ${res.statusMessage ?? ''}`.trim();
    throw new DownloadError('http', msg, { url, status });
  }
  const ctype = String(res.headers['content-type'] ?? '');
  if (o.rejectHtml && /text\/html/i.test(ctype)) {
    res.resume();
    throw new DownloadError('html', `GET ${url} returned an HTML page instead of the file (Google Drive quota or `
      + `confirmation page?). Download it in a browser and pass the local path.`, { url, status });
  }

  let flags: 'a' | 'w' = 'a';
  let total: number | null = null;
  const len = Number(res.headers['content-length']);
  if (status === 206) {
    const cr = parseContentRange(res.headers['content-range']);
    if (cr.start !== offset) {
      // Not the bytes we asked for: start over.
      res.resume();
      o.log(`${url}: server sent range starting at ${cr.start}, wanted ${offset}; restarting`);
      await truncate(part, 0);
      throw new RetryNow();
    }
    total = Number.isFinite(cr.total) ? cr.total : Number.isFinite(len) ? offset + len : null;
  } else {
    if (offset > 0) o.log(`${url}: server ignored the range request; restarting from 0`);
    flags = 'w';
    offset = 0;
    total = Number.isFinite(len) ? len : null;
  }
  if (o.size != null && total != null && total !== o.size) {
    res.resume();
    throw new DownloadError('size', `${url} serves ${total} bytes, expected ${o.size}`, { url });
  }

  bar.start(total ?? o.size ?? null, offset);
  const out = createWriteStream(part, { flags });
  let received = offset;
  try {
    await new Promise<void>((resolveP, reject) => {
      let ended = false;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        bar.update(received);
        if (!out.write(chunk)) { res.pause(); out.once('drain', () => res.resume()); }
      });
      res.once('end', () => { ended = true; out.end(); });
      res.once('aborted', () => reject(new RetryableError(`connection closed after ${received} bytes`)));
      res.once('error', (e) => reject(new RetryableError(`transfer from ${url} failed after ${received} bytes: ${e.message}`)));
      res.once('close', () => { if (!ended) reject(new RetryableError(`connection closed after ${received} bytes`)); });
      req.once('error', (e) => reject(new RetryableError(`transfer from ${url} failed after ${received} bytes: ${e.message}`)));
      out.once('error', reject);
      out.once('finish', () => resolveP());
    });
  } finally {
    if (!out.closed) await new Promise<void>((r) => { out.once('close', () => r()); out.end(); });
    req.destroy();
  }
  if (total != null && received !== total) {
    throw new RetryableError(`got ${received} of ${total} bytes from ${url}`);
  }
}

class RetryableError extends Error {}
class RetryNow extends Error {}

type ResolvedDownloadOptions = Required<Pick<DownloadOptions, 'maxRedirects' | 'idleTimeoutMs' | 'retries' | 'retryDelayMs' | 'rejectHtml' | 'headers'>>
  & { sha256: string | null; size: number | null; signal?: AbortSignal; log: (m: string) => void };

/**
 * Downloads to `dest` (see the module header): tries `urls` in order, resumes `<dest>.part`,
 * checks size and sha256, renames atomically, writes the `.sha256` sidecar.
 */
export async function downloadFile(urls: string | readonly string[], dest: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const list = typeof urls === 'string' ? [urls] : [...urls];
  if (list.length === 0) throw new DownloadError('not-found', `no URL to download ${basename(dest)} from`);
  const o: ResolvedDownloadOptions = {
    maxRedirects: opts.maxRedirects ?? 10,
    idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
    retries: opts.retries ?? 4,
    retryDelayMs: opts.retryDelayMs ?? 1000,
    rejectHtml: opts.rejectHtml ?? true,
    headers: opts.headers ?? {},
    sha256: opts.sha256 ? opts.sha256.toLowerCase() : null,
    size: opts.size ?? null,
    signal: opts.signal,
    log: opts.log ?? (() => {}),
  };
  const showBar = opts.progress === true || ((opts.progress ?? 'auto') === 'auto' && Boolean(process.stderr.isTTY));
  const bar = new Bar(showBar, opts.label ?? basename(dest));

  dest = resolve(dest);
  await mkdir(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  const release = await acquireLock(`${dest}.lock`);
  try {
    const errors: DownloadError[] = [];
    for (const url of list) {
      try {
        await transferWithRetries(url, part, o, bar);
      } catch (e) {
        bar.stop();
        if (!(e instanceof DownloadError) || e.code === 'size') throw e;
        errors.push(e);
        if (list.length > 1) o.log(`${e.message}; trying the next URL`);
        // a different URL may serve a different file: do not splice its bytes onto this part
        if (list.length > 1) await rm(part, { force: true });
        continue;
      }
      bar.stop();
      return await finalise(url, part, dest, o);
    }
    if (errors.length === 1) throw errors[0]!;
    const last = errors[errors.length - 1]!;
    throw new DownloadError(last.code, `all ${list.length} URLs failed for ${basename(dest)}:\n  ${errors.map((e) => e.message).join('\n  ')}`,
      { url: last.url, status: last.status });
  } finally {
    bar.stop();
    await release();
  }
}

async function transferWithRetries(url: string, part: string, o: ResolvedDownloadOptions, bar: Bar): Promise<void> {
  let failures = 0;
  let restarts = 0;
  for (;;) {
    if (o.signal?.aborted) throw new DownloadError('network', `download of ${url} aborted`, { url });
    try {
      await transferOnce(url, part, o, bar);
      return;
    } catch (e) {
      if (e instanceof RetryNow) {
        if (++restarts > 3) throw new DownloadError('http', `${url}: the server keeps sending unexpected ranges`, { url });
        continue;
      }
      const retryable = e instanceof RetryableError
        || (e instanceof DownloadError && (e.code === 'network' || (e.code === 'http' && (e.status ?? 0) >= 500) || e.status === 408 || e.status === 429));
      if (!retryable || failures >= o.retries) {
        throw e instanceof DownloadError ? e
          : new DownloadError('network', `${(e as Error).message} (the partial file ${part} is kept; run again to resume)`, { url, cause: e });
      }
      failures++;
      o.log(`${(e as Error).message}; retry ${failures}/${o.retries} (resuming at ${await fileSize(part)} bytes)`);
      bar.stop();
      await sleep(o.retryDelayMs * failures);
    }
  }
}

async function finalise(url: string, part: string, dest: string, o: ResolvedDownloadOptions): Promise<DownloadResult> {
  const bytes = await fileSize(part);
  if (o.size != null && bytes !== o.size) {
    const aside = `${dest}.bad`;
    await rename(part, aside);
    throw new DownloadError('size', `size mismatch for ${basename(dest)} from ${url}: expected ${o.size} bytes, got ${bytes} (moved aside to ${aside})`, { url });
  }
  const sha = await sha256File(part);
  if (o.sha256 && sha !== o.sha256) {
    const aside = `${dest}.bad`;
    await rename(part, aside);
    throw new DownloadError('checksum', `sha256 mismatch for ${basename(dest)} from ${url}: expected ${o.sha256}, got ${sha} (moved aside to ${aside})`, { url });
  }
  await rename(part, dest);
  await writeSidecar(dest, sha);
  return { path: dest, sha256: sha, bytes, url };
}

// ---------------------------------------------------------------------------------------------
// resolveWeights.

export interface ResolveOptions extends Omit<DownloadOptions, 'sha256' | 'size'> {
  /** cache directory (default: $CLIPMAPPER_CACHE, else ~/.cache/clipmapper) */
  cacheDir?: string;
  /** download from here instead of the registry's URLs */
  url?: string | string[];
  /** expected sha256; default: the registry's; null: do not check */
  sha256?: string | null;
  /** expected size; default: the registry's; null: do not check */
  size?: number | null;
  /** never download: fail if the file is not already cached */
  offline?: boolean;
  /** also verify an explicit local path against `sha256` (default: local paths are trusted) */
  verifyLocal?: boolean;
}

/** The cache path a registry entry lives at. */
export function cachedPath(entry: WeightsEntry, dir?: string): string {
  return join(cacheDir(dir), entry.fileName);
}

/**
 * A local path for `nameOrPath`: an existing file, a registry entry (cache hit verified once, or
 * downloaded), or an http(s) URL (downloaded into the cache under its base name).
 */
export async function resolveWeights(nameOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const local = expandHome(nameOrPath);
  if (existsSync(local) && statSync(local).isFile()) {
    const p = resolve(local);
    if (opts.verifyLocal && opts.sha256) await verifyFile(p, opts.sha256.toLowerCase());
    return p;
  }

  let entry = findWeights(nameOrPath);
  if (!entry && /^https?:\/\//i.test(nameOrPath)) {
    const fileName = basename(new URL(nameOrPath).pathname) || 'download.bin';
    entry = {
      name: fileName, fileName, kind: 'other', description: nameOrPath, urls: [nameOrPath], page: nameOrPath,
      size: null, sha256: null, license: 'unknown', usedBy: [],
    };
  }
  if (!entry) {
    const looksLikePath = isAbsolute(local) || /[\\/]/.test(nameOrPath) || /\.(pt|pth|bin|safetensors|onnx|pkl)$/i.test(nameOrPath);
    throw new DownloadError('not-found', looksLikePath
      ? `no such file: ${nameOrPath}`
      : `unknown weights '${nameOrPath}'; known: ${REGISTRY.map((e) => e.name).join(', ')} (or give a file path)`);
  }

  const expectSha = opts.sha256 === undefined ? entry.sha256 : opts.sha256 ? opts.sha256.toLowerCase() : null;
  const expectSize = opts.size === undefined ? entry.size : opts.size;
  const dest = cachedPath(entry, opts.cacheDir);

  if (existsSync(dest)) {
    let sha = await readSidecar(dest);
    if (sha === null) {
      sha = await sha256File(dest);
      await writeSidecar(dest, sha);
    }
    if (!expectSha || sha === expectSha) return dest;
    // A corrupt or different file in the cache: set it aside and fetch again.
    const aside = `${dest}.bad`;
    await rename(dest, aside);
    await rm(sidecarPath(dest), { force: true });
    (opts.log ?? (() => {}))(`cached ${dest} has sha256 ${sha}, expected ${expectSha}; moved aside to ${aside}`);
  }
  if (opts.offline) {
    throw new DownloadError('offline', `${entry.fileName} is not in the cache (${dirname(dest)}) and downloads are off; `
      + `get it from ${entry.page} and pass its path`);
  }
  const urls = opts.url === undefined ? entry.urls : typeof opts.url === 'string' ? [opts.url] : opts.url;
  const res = await downloadFile(urls, dest, { ...opts, sha256: expectSha, size: expectSize, label: opts.label ?? entry.fileName });
  return res.path;
}

async function verifyFile(p: string, expected: string): Promise<void> {
  const got = (await readSidecar(p)) ?? (await sha256File(p));
  if (got !== expected) throw new DownloadError('checksum', `sha256 mismatch for ${p}: expected ${expected}, got ${got}`);
}

/** Removes a cached entry (file, sidecar, part, lock). */
export async function removeCached(entry: WeightsEntry, dir?: string): Promise<void> {
  const p = cachedPath(entry, dir);
  for (const f of [p, sidecarPath(p), `${p}.part`]) await unlink(f).catch(() => {});
}
