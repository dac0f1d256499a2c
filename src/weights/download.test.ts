// downloadFile / resolveWeights against a local HTTP server on 127.0.0.1 (no other network):
// plain download, a transfer cut mid-body then resumed with Range, a server that ignores Range,
// wrong checksum, 404, redirects, HTML pages, the cache and its sidecar. Every test is time-bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, downloadFile, DownloadError, resolveWeights, sha256File, sidecarPath } from './download.ts';
import { REGISTRY } from './registry.ts';

const BODY = randomBytes(300_000); // several TCP chunks
const SHA = createHash('sha256').update(BODY).digest('hex');
const T = { timeout: 20_000 };
const FAST = { retryDelayMs: 0, idleTimeoutMs: 5_000, progress: false as const };

interface Seen { path: string; range?: string }
let server: http.Server;
let base = '';
let seen: Seen[] = [];
let flakyCount = 0;
let norangeCount = 0;
let tmp = '';

function sendRange(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    res.writeHead(206, {
      'content-type': 'application/octet-stream',
      'content-length': body.length - start,
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
    });
    res.end(body.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
}

/** Headers promise the whole body; half of it is sent, then the socket is destroyed. */
function sendHalfThenDrop(res: http.ServerResponse, body: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipmapper-dl-'));
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    seen.push({ path, range: req.headers.range });
    switch (path) {
      case '/ok/file.bin':
        return sendRange(req, res, BODY);
      case '/flaky/file.bin': // cut on the first request, honours Range afterwards
        if (flakyCount++ === 0) return sendHalfThenDrop(res, BODY);
        return sendRange(req, res, BODY);
      case '/norange/file.bin': // cut on the first request, then always the whole body with 200
        if (norangeCount++ === 0) return sendHalfThenDrop(res, BODY);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
        return void res.end(BODY);
      case '/always-cut/file.bin':
        return sendHalfThenDrop(res, BODY);
      case '/redirect':
        res.writeHead(302, { location: '/redirect2' });
        return void res.end();
      case '/redirect2':
        res.writeHead(301, { location: `${base}/ok/file.bin` });
        return void res.end();
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        return void res.end();
      case '/html':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return void res.end('<html>Google Drive can\'t scan this file for viruses</html>');
      case '/error500':
        res.writeHead(500);
        return void res.end('boom');
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        return void res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(tmp, { recursive: true, force: true });
});

const fresh = (name: string) => { seen = []; return join(tmp, name); };

test('plain download with checksum: atomic rename, sidecar, no .part left', T, async () => {
  const dest = fresh('a/plain.bin');
  const r = await downloadFile(`${base}/ok/file.bin`, dest, { ...FAST, sha256: SHA, size: BODY.length });
  assert.equal(r.sha256, SHA);
  assert.equal(r.bytes, BODY.length);
  assert.ok(readFileSync(dest).equals(BODY));
  assert.equal(readFileSync(sidecarPath(dest), 'utf-8'), `${SHA}  plain.bin\n`);
  assert.ok(!existsSync(`${dest}.part`));
  assert.ok(!existsSync(`${dest}.lock`));
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.range, undefined);
});

test('interrupted transfer resumes with Range and completes', T, async () => {
  const dest = fresh('resume.bin');
  flakyCount = 0;
  const logs: string[] = [];
  const r = await downloadFile(`${base}/flaky/file.bin`, dest, { ...FAST, sha256: SHA, log: (m) => logs.push(m) });
  assert.equal(r.sha256, SHA);
  assert.ok(readFileSync(dest).equals(BODY));
  assert.equal(seen.length, 2);
  assert.equal(seen[0]!.range, undefined);
  const m = /^bytes=(\d+)-$/.exec(seen[1]!.range ?? '');
  assert.ok(m, `second request should carry a Range header, got ${seen[1]!.range}`);
  assert.ok(Number(m[1]) > 0 && Number(m[1]) < BODY.length);
  assert.ok(logs.some((l) => /retry 1/.test(l)));
});

test('a failed run keeps the .part; the next run resumes it', T, async () => {
  const dest = fresh('keep.bin');
  flakyCount = 0;
  await assert.rejects(downloadFile(`${base}/flaky/file.bin`, dest, { ...FAST, sha256: SHA, retries: 0 }),
    (e: unknown) => e instanceof DownloadError && e.code === 'network' && /\.part is kept/.test(e.message));
  const partSize = statSync(`${dest}.part`).size;
  assert.ok(partSize > 0 && partSize < BODY.length);
  assert.ok(!existsSync(dest));
  seen = [];
  await downloadFile(`${base}/flaky/file.bin`, dest, { ...FAST, sha256: SHA });
  assert.equal(seen[0]!.range, `bytes=${partSize}-`);
  assert.ok(readFileSync(dest).equals(BODY));
  assert.ok(!existsSync(`${dest}.part`));
});

test('server answering 200 to a Range request: restart cleanly from zero', T, async () => {
  const dest = fresh('norange.bin');
  norangeCount = 0;
  const logs: string[] = [];
  const r = await downloadFile(`${base}/norange/file.bin`, dest, { ...FAST, sha256: SHA, log: (m) => logs.push(m) });
  assert.equal(r.bytes, BODY.length);
  assert.ok(readFileSync(dest).equals(BODY)); // not the first half twice
  assert.ok(seen[1]!.range?.startsWith('bytes='));
  assert.ok(logs.some((l) => /ignored the range/.test(l)));
});

test('wrong checksum: clear error naming both hashes, nothing at the final path', T, async () => {
  const dest = fresh('bad.bin');
  const wrong = '0'.repeat(64);
  await assert.rejects(downloadFile(`${base}/ok/file.bin`, dest, { ...FAST, sha256: wrong }), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.equal(e.code, 'checksum');
    assert.match(e.message, new RegExp(`expected ${wrong}, got ${SHA}`));
    return true;
  });
  assert.ok(!existsSync(dest));
  assert.ok(!existsSync(`${dest}.part`));
  assert.ok(!existsSync(sidecarPath(dest)));
  assert.ok(existsSync(`${dest}.bad`)); // kept aside for inspection
});

test('wrong size is refused before anything is written', T, async () => {
  const dest = fresh('size.bin');
  await assert.rejects(downloadFile(`${base}/ok/file.bin`, dest, { ...FAST, size: 5 }),
    (e: unknown) => e instanceof DownloadError && e.code === 'size' && /expected 5/.test(e.message));
  assert.ok(!existsSync(dest));
});

test('404: clear error, no retries, no file', T, async () => {
  const dest = fresh('missing.bin');
  await assert.rejects(downloadFile(`${base}/nope.bin`, dest, FAST), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.equal(e.code, 'http');
    assert.equal(e.status, 404);
    assert.match(e.message, /GET http:\/\/127\.0\.0\.1:\d+\/nope\.bin -> 404 Not Found/);
    return true;
  });
  assert.equal(seen.length, 1);
  assert.ok(!existsSync(dest));
});

test('5xx is retried a bounded number of times', T, async () => {
  const dest = fresh('e500.bin');
  await assert.rejects(downloadFile(`${base}/error500`, dest, { ...FAST, retries: 2 }),
    (e: unknown) => e instanceof DownloadError && e.status === 500);
  assert.equal(seen.length, 3);
});

test('a transfer that always breaks gives up after the retries', T, async () => {
  const dest = fresh('cut.bin');
  await assert.rejects(downloadFile(`${base}/always-cut/file.bin`, dest, { ...FAST, retries: 2 }),
    (e: unknown) => e instanceof DownloadError && e.code === 'network');
  assert.equal(seen.length, 3);
  assert.ok(!existsSync(dest));
});

test('redirects are followed (relative and absolute), loops are bounded', T, async () => {
  const dest = fresh('redir.bin');
  await downloadFile(`${base}/redirect`, dest, { ...FAST, sha256: SHA });
  assert.deepEqual(seen.map((s) => s.path), ['/redirect', '/redirect2', '/ok/file.bin']);
  await assert.rejects(downloadFile(`${base}/loop`, fresh('loop.bin'), { ...FAST, maxRedirects: 5 }),
    (e: unknown) => e instanceof DownloadError && e.code === 'redirects');
  assert.equal(seen.length, 6);
});

test('an HTML page (e.g. a Drive warning) is refused', T, async () => {
  const dest = fresh('page.bin');
  await assert.rejects(downloadFile(`${base}/html`, dest, FAST),
    (e: unknown) => e instanceof DownloadError && e.code === 'html' && /local path/.test(e.message));
  assert.ok(!existsSync(dest));
});

test('several URLs: falls back to the next one', T, async () => {
  const dest = fresh('fallback.bin');
  const logs: string[] = [];
  const r = await downloadFile([`${base}/gone.bin`, `${base}/ok/file.bin`], dest, { ...FAST, sha256: SHA, log: (m) => logs.push(m) });
  assert.equal(r.url, `${base}/ok/file.bin`);
  assert.ok(logs.some((l) => /404.*next URL/.test(l)));
});

test('a live lock is respected, a stale one is taken over', T, async () => {
  const dest = fresh('locked.bin');
  writeFileSync(`${dest}.lock`, String(process.ppid)); // a live process that is not us
  await assert.rejects(downloadFile(`${base}/ok/file.bin`, dest, FAST), (e: unknown) => e instanceof DownloadError && e.code === 'locked');
  writeFileSync(`${dest}.lock`, '999999999');
  await downloadFile(`${base}/ok/file.bin`, dest, { ...FAST, sha256: SHA });
  assert.ok(!existsSync(`${dest}.lock`));
});

test('cacheDir: option, then $CLIPMAPPER_CACHE, then ~/.cache/clipmapper', () => {
  const saved = process.env.CLIPMAPPER_CACHE;
  try {
    process.env.CLIPMAPPER_CACHE = join(tmp, 'envcache');
    assert.equal(cacheDir(), join(tmp, 'envcache'));
    assert.equal(cacheDir(join(tmp, 'opt')), join(tmp, 'opt'));
    delete process.env.CLIPMAPPER_CACHE;
    assert.match(cacheDir(), /\.cache[\\/]clipmapper$/);
  } finally {
    if (saved === undefined) delete process.env.CLIPMAPPER_CACHE; else process.env.CLIPMAPPER_CACHE = saved;
  }
});

test('resolveWeights: local path, download into the cache, verified cache hit, bad cache entry replaced', T, async () => {
  const dir = join(tmp, 'cache');
  const entry = REGISTRY.find((e) => e.name === 'parsenet')!;
  const opts = { ...FAST, cacheDir: dir, url: `${base}/ok/file.bin`, sha256: SHA };

  // an existing path is returned as is, without any request
  const localFile = join(tmp, 'local.pth');
  writeFileSync(localFile, 'x');
  seen = [];
  assert.equal(await resolveWeights(localFile, opts), localFile);
  assert.equal(seen.length, 0);

  // miss -> download (URL override), stored under the registry file name
  const p = await resolveWeights('parsenet', opts);
  assert.equal(p, join(dir, entry.fileName));
  assert.ok(readFileSync(p).equals(BODY));
  assert.equal(seen.length, 1);

  // hit -> no request; the file name works as well as the registry name
  seen = [];
  assert.equal(await resolveWeights(entry.fileName, opts), p);
  assert.equal(seen.length, 0);

  // a cached file without a sidecar is hashed once and the sidecar written
  rmSync(sidecarPath(p));
  assert.equal(await resolveWeights('parsenet', opts), p);
  assert.ok(readFileSync(sidecarPath(p), 'utf-8').startsWith(SHA));
  assert.equal(seen.length, 0);

  // a corrupted cache entry (newer than its sidecar) is set aside and fetched again
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(p, 'corrupt');
  assert.equal(await resolveWeights('parsenet', opts), p);
  assert.equal(await sha256File(p), SHA);
  assert.equal(seen.length, 1);
  assert.equal(readFileSync(`${p}.bad`, 'utf-8'), 'corrupt');

  // offline and not cached -> clear error
  await assert.rejects(resolveWeights('hairclip', { ...opts, offline: true }),
    (e: unknown) => e instanceof DownloadError && e.code === 'offline' && /hairclip\.pt is not in the cache/.test(e.message));
  // unknown names list the known ones
  await assert.rejects(resolveWeights('no-such-model', opts), /unknown weights 'no-such-model'; known: .*clip-vit-b-32/);
  await assert.rejects(resolveWeights('./nope/x.pt', opts), /no such file: \.\/nope\/x\.pt/);
});

test('resolveWeights: a URL as the name downloads under its base name', T, async () => {
  const dir = join(tmp, 'cache-url');
  const p = await resolveWeights(`${base}/ok/file.bin`, { ...FAST, cacheDir: dir });
  assert.equal(p, join(dir, 'file.bin'));
  assert.ok(readFileSync(p).equals(BODY));
});
