// Preview grids: rows of images (source | edited | references), written as one PNG, with the row
// labels in a text file beside it (`<name>.txt`, one line per row) — PNG has no room for text
// without a font renderer, and the labels (prompts, reference file names) matter when reading a grid.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { encodeImage } from '../io/image.ts';
import { TensorData } from '../io/tensor.ts';
import { atomicWrite } from './checkpoint.ts';
import type { PreviewRow } from './common.ts';

/** One [1, 3, H, W] tensor holding the rows side by side, 2 px white gaps, images top-left aligned. */
export function gridTensor(rows: readonly PreviewRow[], gap = 2): TensorData<'float32'> {
  if (!rows.length) throw new Error('grid: no rows');
  const cols = Math.max(...rows.map((r) => r.images.length));
  const cellH = Math.max(...rows.flatMap((r) => r.images.map((i) => i.shape[2])));
  const cellW = Math.max(...rows.flatMap((r) => r.images.map((i) => i.shape[3])));
  const H = rows.length * cellH + (rows.length - 1) * gap;
  const W = cols * cellW + (cols - 1) * gap;
  const out = new Float32Array(3 * H * W).fill(1); // white in [-1, 1]
  rows.forEach((r, ri) => {
    r.images.forEach((img, ci) => {
      const [n, c, h, w] = img.shape;
      if (n !== 1 || c !== 3) throw new Error(`grid: images must be [1, 3, H, W], got [${img.shape}]`);
      const y0 = ri * (cellH + gap); const x0 = ci * (cellW + gap);
      for (let ch = 0; ch < 3; ch++) {
        for (let y = 0; y < h; y++) {
          const src = img.data.subarray(ch * h * w + y * w, ch * h * w + (y + 1) * w);
          out.set(src, ch * H * W + (y0 + y) * W + x0);
        }
      }
    });
  });
  return new TensorData('float32', [1, 3, H, W], out);
}

/** Writes the grid PNG (atomically) and `<path without .png>.txt` with the row labels. */
export async function writeGrid(path: string, rows: readonly PreviewRow[]): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const png = await encodeImage(gridTensor(rows), 'png');
  atomicWrite(path, new Uint8Array(png.buffer, png.byteOffset, png.byteLength));
  writeFileSync(path.replace(/\.png$/i, '') + '.txt', rows.map((r) => r.label).join('\n') + '\n');
}
