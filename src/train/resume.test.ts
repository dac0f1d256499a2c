// Exact resume after SIGKILL, through the real CLI: `clipmapper train styleclip` runs in a child
// process on the tiny networks, is killed with SIGKILL once a checkpoint exists and it has gone
// past it, then `--resume` finishes the run. The resumed JSONL loss curve must equal an
// uninterrupted run's step by step (same data draws from the checkpointed RNG, same parameters
// and optimiser state; float noise allowed, though on one machine it is exactly 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLog } from './trainer.ts';
import { loadTrainCheckpoint } from './checkpoint.ts';
import { TINY } from './testing.ts';

const BIN = fileURLToPath(new URL('../../bin/clipmapper.js', import.meta.url));
const STEPS = 120;
const args = (out: string, extra: string[] = []) => [
  BIN, 'train', 'styleclip', '--prompt', 'purple hair', '--mapper-type', 'single', '--lr', '30',
  '--generator', TINY.g32, '--clip', TINY.clip, '--arcface', TINY.arcface,
  '--steps', String(STEPS), '--save-interval', '10', '--image-interval', '0', '--seed', '3', '-q', '--out', out, ...extra,
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines = (p: string) => (existsSync(p) ? readLog(p).length : 0);

test('SIGKILL mid-run, then --resume: the loss curve equals an uninterrupted run', { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'train-resume-'));
  try {
    const a = join(dir, 'killed'); const b = join(dir, 'straight');
    // the run to kill: wait until a checkpoint exists and the log is past it
    const child = spawn(process.execPath, args(a), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const ck = join(a, 'checkpoints', 'latest.safetensors');
    const deadline = Date.now() + 120_000;
    let killedAt = -1;
    while (Date.now() < deadline && child.exitCode === null) {
      if (existsSync(ck)) {
        const n = lines(join(a, 'log.jsonl'));
        if (n >= 25 && n % 10 > 2) { child.kill('SIGKILL'); killedAt = n; break; }
      }
      await sleep(5);
    }
    await new Promise((r) => child.once('exit', r));
    assert.ok(killedAt > 0, `the child was not killed mid-run (exit ${child.exitCode}): ${stderr}`);
    assert.equal(child.signalCode, 'SIGKILL');
    const ckStep = loadTrainCheckpoint(ck).step;
    t.diagnostic(`killed with ${killedAt} log lines, last checkpoint at step ${ckStep}`);
    assert.ok(ckStep > 0 && ckStep < STEPS);

    const resumed = spawnSync(process.execPath, args(a, ['--resume']), { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    const straight = spawnSync(process.execPath, args(b), { encoding: 'utf8' });
    assert.equal(straight.status, 0, straight.stderr);

    const la = readLog(join(a, 'log.jsonl')); const lb = readLog(join(b, 'log.jsonl'));
    assert.deepEqual(la.map((e) => e.step), Array.from({ length: STEPS }, (_, i) => i + 1), 'one log line per step, none twice');
    assert.deepEqual(lb.map((e) => e.step), la.map((e) => e.step));
    let worst = 0;
    for (let i = 0; i < STEPS; i++) {
      assert.equal(la[i].desc, lb[i].desc);
      for (const k of ['loss', 'loss_clip', 'loss_id', 'loss_l2_latent']) {
        const x = la[i][k] as number; const y = lb[i][k] as number;
        worst = Math.max(worst, Math.abs(x - y) / Math.max(1e-3, Math.abs(y)));
      }
    }
    t.diagnostic(`largest relative difference between the resumed and the uninterrupted loss curves: ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `loss curves differ by ${worst}`);
    // the final mappers agree too
    const pa = loadTrainCheckpoint(join(a, 'checkpoints', 'latest.safetensors'));
    const pb = loadTrainCheckpoint(join(b, 'checkpoints', 'latest.safetensors'));
    assert.equal(pa.step, STEPS); assert.equal(pb.step, STEPS);
    for (const [k, v] of pb.params) {
      const u = pa.params.get(k)!;
      let d = 0; for (let i = 0; i < v.length; i++) d = Math.max(d, Math.abs(u[i] - v[i]));
      assert.ok(d < 1e-3, `parameter ${k} differs by ${d}`);
    }
    assert.ok(existsSync(join(a, 'mapper.pt')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
