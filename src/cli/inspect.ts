// `clipmapper inspect <file> [--json]`: every tensor of a checkpoint — key, shape, dtype — and
// the parameter total. Works on .pt/.pth (zip or legacy), TorchScript archives and .safetensors.
//
// dtypes are printed as the official_*_keys.json fixtures spell them (F32, F16, I64, ...), so
// `inspect --json` output can be compared with those key lists directly.
import type { Command } from 'commander';
import { loadStateDict, type StateDictFile } from '../io/weights.ts';
import { dtypeCode } from '../io/tensor.ts';

export interface TensorInfo {
  key: string;
  shape: number[];
  dtype: string;
}

export function describeTensors(file: StateDictFile): TensorInfo[] {
  return [...file.tensors].map(([key, t]) => ({ key, shape: [...t.shape], dtype: dtypeCode(t.dtype) }));
}

/** Human-readable listing: one line per tensor, then totals. */
export function formatInspect(path: string, file: StateDictFile): string {
  const rows = describeTensors(file);
  const keyWidth = Math.min(80, Math.max(3, ...rows.map((r) => r.key.length)));
  const lines = [`# ${path}: ${file.format}, ${rows.length} tensors`];
  let total = 0;
  for (const [key, t] of file.tensors) {
    total += t.numel;
    lines.push(`${(key === '' ? '(root)' : key).padEnd(keyWidth)}  ${dtypeCode(t.dtype).padEnd(4)}  [${t.shape.join(', ')}]`);
  }
  lines.push(`total: ${total.toLocaleString('en-US')} elements in ${rows.length} tensors`);
  const meta = Object.entries(file.metadata);
  if (meta.length) {
    lines.push('metadata:');
    for (const [k, v] of meta) lines.push(`  ${k}: ${v.length > 200 ? `${v.slice(0, 200)}...` : v}`);
  }
  return lines.join('\n');
}

export function inspectCommand(program: Command): void {
  program
    .command('inspect <file>')
    .description('list every tensor (key, shape, dtype) of a .pt/.pth, TorchScript or .safetensors file')
    .option('--json', 'print a JSON array of {key, shape, dtype}')
    .action((file: string, o: { json?: boolean }) => {
      const sd = loadStateDict(file);
      console.log(o.json ? JSON.stringify(describeTensors(sd)) : formatInspect(file, sd));
    });
}
