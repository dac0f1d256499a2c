// `clipmapper weights list [--json] [--cache-dir d]`: the official checkpoints, where they come
// from, what is known about them, and whether they are in the cache.
// `clipmapper weights fetch <name|url> [--cache-dir d] [--url u] [--sha256 h] [--no-progress]`:
// download one into the cache (resumable, checksum-verified) and print its path.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { REGISTRY, type WeightsEntry } from '../weights/registry.ts';
import { cacheDir, cachedPath, DownloadError, resolveWeights } from '../weights/download.ts';

export interface WeightsListRow {
  name: string;
  file: string;
  kind: string;
  size: string;
  sha256: string | null;
  cached: boolean;
  description: string;
  page: string;
  license: string;
}

export function listRows(dir?: string): WeightsListRow[] {
  return REGISTRY.map((e: WeightsEntry) => ({
    name: e.name,
    file: e.fileName,
    kind: e.kind,
    size: e.size != null ? `${(e.size / 1e6).toFixed(1)} MB` : e.approxSize ?? '?',
    sha256: e.sha256,
    cached: existsSync(cachedPath(e, dir)),
    description: e.description,
    page: e.page,
    license: e.license,
  }));
}

export function formatList(rows: WeightsListRow[], dir: string): string {
  const w = (k: keyof WeightsListRow) => Math.max(k.length, ...rows.map((r) => String(r[k]).length));
  const [wn, wf, ws] = [w('name'), w('file'), w('size')];
  const lines = [`# cache: ${dir}`, `${'name'.padEnd(wn)}  ${'file'.padEnd(wf)}  ${'size'.padEnd(ws)}  sha256  cached  description`];
  for (const r of rows) {
    lines.push(`${r.name.padEnd(wn)}  ${r.file.padEnd(wf)}  ${r.size.padEnd(ws)}  ${(r.sha256 ? 'known' : '-').padEnd(6)}  ${(r.cached ? 'yes' : '-').padEnd(6)}  ${r.description}`);
  }
  lines.push('', 'sources, licenses: clipmapper weights list --json');
  return lines.join('\n');
}

export function weightsCommand(program: Command): Command {
  const cmd = program.command('weights').description('official checkpoints: list them, download them into the cache');

  cmd.command('list')
    .description('the known checkpoints, their sources and whether they are cached')
    .option('--cache-dir <dir>', 'cache directory (default: $CLIPMAPPER_CACHE or ~/.cache/clipmapper)')
    .option('--json', 'machine-readable output')
    .action((o: { cacheDir?: string; json?: boolean }) => {
      const rows = listRows(o.cacheDir);
      console.log(o.json ? JSON.stringify(rows, null, 1) : formatList(rows, cacheDir(o.cacheDir)));
    });

  cmd.command('fetch')
    .description('download a checkpoint into the cache (resumes a partial download, checks sha256) and print its path')
    .argument('<name>', 'registry name (see `weights list`), file name, or http(s) URL')
    .option('--cache-dir <dir>', 'cache directory (default: $CLIPMAPPER_CACHE or ~/.cache/clipmapper)')
    .option('--url <url>', 'download from this URL instead of the official source')
    .option('--sha256 <hex>', 'expected sha256 (default: the registry value, where known)')
    .option('--progress', 'always show the progress bar (default: only on a terminal)')
    .option('--no-progress', 'no progress bar')
    .action(async (name: string, o: { cacheDir?: string; url?: string; sha256?: string; progress?: boolean }) => {
      try {
        const path = await resolveWeights(name, {
          cacheDir: o.cacheDir,
          url: o.url,
          sha256: o.sha256,
          progress: o.progress ?? 'auto',
          log: (m) => console.error(`clipmapper: ${m}`),
        });
        console.log(path);
      } catch (e) {
        if (e instanceof DownloadError) {
          console.error(`clipmapper: ${e.message}`);
          process.exitCode = 1;
          return;
        }
        throw e;
      }
    });
  return cmd;
}
