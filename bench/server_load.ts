// Load test of the HTTP API: N concurrent clients on loopback for D seconds against a server
// (a child process) running the tiny networks; reports requests ok / rejected (503) / failed,
// latency, throughput and the server's RSS over time, and fails (exit 1) on a crash or on memory
// that keeps growing.
//
//   npm run bench:server                       # 50 clients, 60 s
//   npm run bench:server -- --clients 20 --duration 30 --queue 8
//
// The clients send astronaut.png with a hairstyle (HairCLIP on the tiny 64 px set); a client that
// gets 503 waits Retry-After / 4 (250 ms) before its next request, as a polite client would.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => { const i = args.indexOf(`--${name}`); return i >= 0 ? Number(args[i + 1]) : def; };

if (args.includes('--serve')) {
  // the server process
  const { createServer } = await import('../src/server/index.ts');
  const { pipeline } = await import('../src/pipeline/editor.ts');
  const { tinyWeights } = await import('../src/pipeline/testing.ts');
  const hairclip = await pipeline('hairclip', { weights: tinyWeights().hairclip, download: false });
  const app = await createServer({ editors: { hairclip }, queueLimit: arg('queue', 8) });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  console.log(`LISTENING ${url}`);
} else {
  const clients = arg('clients', 50);
  const duration = arg('duration', 60);
  const queue = arg('queue', 8);
  const photo = readFileSync(fileURLToPath(new URL('../test/fixtures/images/astronaut.png', import.meta.url)));
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', '--queue', String(queue)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let exited: number | null = null;
  child.on('exit', (code) => { exited = code ?? -1; });
  const base = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (l) => { const m = /^LISTENING (\S+)/.exec(l); if (m) resolve(m[1]); });
    child.on('exit', () => reject(new Error('the server exited before listening')));
  });
  const health = async () => (await (await fetch(`${base}/api/health`)).json()) as { memory: { rssMB: number }; queue: { running: number; waiting: number }; requests: Record<string, number> };

  const t0 = Date.now();
  const end = t0 + duration * 1000;
  const lat = { ok: [] as number[], busy: [] as number[] };
  const counts = { ok: 0, busy: 0, other: 0, network: 0 };
  const otherStatus = new Map<number, number>();
  const rss: { t: number; rssMB: number; waiting: number }[] = [];
  const h0 = await health();
  rss.push({ t: 0, rssMB: h0.memory.rssMB, waiting: 0 });

  const sampler = setInterval(async () => {
    try { const h = await health(); rss.push({ t: Math.round((Date.now() - t0) / 1000), rssMB: h.memory.rssMB, waiting: h.queue.waiting }); } catch { /* counted below */ }
  }, 5000);

  async function client(): Promise<void> {
    while (Date.now() < end && exited === null) {
      const fd = new FormData();
      fd.append('hairstyle', 'afro');
      fd.append('color', 'purple');
      fd.append('image', new Blob([photo]), 'astronaut.png');
      const s = performance.now();
      try {
        const r = await fetch(`${base}/api/edit`, { method: 'POST', body: fd });
        await r.arrayBuffer();
        const ms = performance.now() - s;
        if (r.status === 200) { counts.ok++; lat.ok.push(ms); }
        else if (r.status === 503) { counts.busy++; lat.busy.push(ms); await new Promise((x) => setTimeout(x, 250)); }
        else { counts.other++; otherStatus.set(r.status, (otherStatus.get(r.status) ?? 0) + 1); }
      } catch {
        counts.network++;
        await new Promise((x) => setTimeout(x, 250));
      }
    }
  }
  await Promise.all(Array.from({ length: clients }, client));
  clearInterval(sampler);
  const hEnd = exited === null ? await health() : null;
  if (hEnd) rss.push({ t: Math.round((Date.now() - t0) / 1000), rssMB: hEnd.memory.rssMB, waiting: hEnd.queue.waiting });
  child.kill('SIGTERM');

  const pct = (a: number[], p: number) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]); };
  const secs = (Date.now() - t0) / 1000;
  const after = rss.filter((r) => r.t >= 10).map((r) => r.rssMB);
  const warm = after.length ? after[0] : rss[0].rssMB;
  const peak = Math.max(...rss.map((r) => r.rssMB));
  console.log(`server load: ${clients} clients, ${secs.toFixed(0)} s, queue limit ${queue} (loopback, tiny HairCLIP set)`);
  console.log(`  requests ok ${counts.ok} (${(counts.ok / secs).toFixed(2)}/s), rejected 503 ${counts.busy}, other HTTP ${counts.other}${otherStatus.size ? ` ${JSON.stringify(Object.fromEntries(otherStatus))}` : ''}, network errors ${counts.network}`);
  console.log(`  latency ok: p50 ${pct(lat.ok, 0.5)} ms, p95 ${pct(lat.ok, 0.95)} ms, max ${pct(lat.ok, 1)} ms; 503: p50 ${pct(lat.busy, 0.5)} ms, p95 ${pct(lat.busy, 0.95)} ms`);
  console.log(`  server RSS (MB) over time: ${rss.map((r) => `${r.t}s:${r.rssMB}`).join(' ')}`);
  console.log(`  RSS start ${rss[0].rssMB} MB, at 10 s ${warm} MB, peak ${peak} MB, end ${rss[rss.length - 1].rssMB} MB`);
  console.log(`  server crashed: ${exited !== null ? `yes (exit ${exited})` : 'no'}`);
  const growth = rss[rss.length - 1].rssMB - warm;
  const bad = exited !== null || counts.network > 0 || counts.other > 0 || counts.ok === 0 || growth > 250;
  if (growth > 250) console.log(`  RSS grew ${growth} MB after warm-up: not bounded`);
  process.exitCode = bad ? 1 : 0;
}
