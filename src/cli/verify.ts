// `clipmapper verify <dir>`: run a fixture folder (laid out like shared/fixtures/<net>/) through our
// port and print one line per compared tensor; exit 1 on any FAIL.
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { formatLine, type CompareLine } from '../verify/compare.ts';

interface Verifier { name: string; detect(dir: string): boolean; verify(dir: string): Promise<CompareLine[]> }

// Each network keeps its own verify module beside its code; they are imported lazily so that
// verifying one network does not load the others.
const VERIFIERS: { name: string; load: () => Promise<{ detect(dir: string): boolean; verify(dir: string): Promise<CompareLine[]> }> }[] = [
  { name: 'stylegan2', load: () => import('../nets/stylegan2/verify.ts') },
  { name: 'clip', load: () => import('../nets/clip/verify.ts') },
  { name: 'arcface', load: () => import('../nets/arcface/verify.ts') },
  { name: 'parsenet', load: () => import('../nets/parsenet/verify.ts') },
  { name: 'faceparse', load: () => import('../nets/bisenet/verify.ts') },
  { name: 'e4e', load: () => import('../nets/e4e/verify.ts') },
  { name: 'mapper', load: () => import('../mappers/verify_mapper.ts') },
  { name: 'ffclip', load: () => import('../mappers/verify_ffclip.ts') },
  { name: 'ops', load: () => import('../verify/ops.ts') },
];

export async function findVerifier(dir: string, kind?: string): Promise<Verifier> {
  const tried: string[] = [];
  for (const v of VERIFIERS) {
    if (kind && v.name !== kind) continue;
    let mod;
    try { mod = await v.load(); } catch (e) { tried.push(`${v.name} (unavailable: ${(e as Error).message.split('\n')[0]})`); continue; }
    if (kind || mod.detect(dir)) return { name: v.name, detect: mod.detect, verify: mod.verify };
    tried.push(v.name);
  }
  throw new Error(`no verifier recognises ${dir}${kind ? ` as '${kind}'` : ''} (tried: ${tried.join(', ')}); pass --kind`);
}

export async function runVerify(dir: string, opts: { kind?: string; json?: boolean } = {}): Promise<boolean> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`verify: '${dir}' is not a directory`);
  const v = await findVerifier(dir, opts.kind);
  const lines = await v.verify(dir);
  if (opts.json) console.log(JSON.stringify(lines, null, 1));
  else {
    console.log(`# ${v.name}: ${dir}`);
    for (const l of lines) console.log(formatLine(l));
  }
  const failed = lines.filter((l) => !l.pass).length;
  if (!opts.json) console.log(`${lines.length - failed} passed, ${failed} failed`);
  return failed === 0 && lines.length > 0;
}

export function verifyCommand(program: Command): void {
  program
    .command('verify <dir>')
    .description('compare our outputs and gradients with a golden fixture folder (exit 1 on any FAIL)')
    .option('--kind <net>', `force the network kind (${VERIFIERS.map((v) => v.name).join(', ')})`)
    .option('--json', 'print the comparison lines as JSON')
    .action(async (dir: string, o: { kind?: string; json?: boolean }) => {
      const ok = await runVerify(dir, o);
      process.exitCode = ok ? 0 : 1;
    });
}
