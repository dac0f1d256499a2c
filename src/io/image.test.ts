import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ImageError } from './errors.ts';
import { decodeImage, decodeImageRgb, encodeImage, resizeImage, rgbToTensor, stackImages, tensorToRgb, writeImage } from './image.ts';
import { f32 } from './tensor.ts';

const W = 5;
const H = 4;
/** A W x H RGB image whose every byte differs: pixel (x, y) channel c = 12 * (y * W + x) + c * 4 + 1. */
const PIXELS = Uint8Array.from({ length: W * H * 3 }, (_, i) => 12 * Math.floor(i / 3) + (i % 3) * 4 + 1);
const png = (channels: 1 | 3 | 4, data: Uint8Array): Promise<Buffer> => sharp(data, { raw: { width: W, height: H, channels } }).png().toBuffer();

test('PNG -> [1, 3, H, W] in [-1, 1], bit-exact with ToTensor + Normalize(0.5, 0.5)', async () => {
  const t = await decodeImage(await png(3, PIXELS));
  assert.deepEqual(t.shape, [1, 3, H, W]);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < W * H; i++) {
      const x = Math.fround(PIXELS[i * 3 + c]! / 255);
      assert.equal(t.data[c * W * H + i], Math.fround(Math.fround(x - 0.5) / 0.5));
    }
  }
  const unit = await decodeImage(await png(3, PIXELS), { range: [0, 1] });
  assert.equal(unit.data[0], Math.fround(1 / 255));
});

test('alpha is dropped, greyscale becomes three equal channels', async () => {
  const rgba = Uint8Array.from({ length: W * H * 4 }, (_, i) => (i % 4 === 3 ? 7 : PIXELS[Math.floor(i / 4) * 3 + (i % 4)]!));
  assert.deepEqual((await decodeImageRgb(await png(4, rgba))).data, PIXELS);
  const grey = Uint8Array.from({ length: W * H }, (_, i) => i * 10);
  const g = await decodeImageRgb(await png(1, grey));
  assert.deepEqual(g.data, Uint8Array.from({ length: W * H * 3 }, (_, i) => grey[Math.floor(i / 3)]!));
});

test('encode/decode round trips: PNG exactly, JPEG and WebP closely; format from the extension', async () => {
  const t = rgbToTensor({ data: PIXELS, width: W, height: H });
  assert.deepEqual(tensorToRgb(t).data, PIXELS);
  assert.deepEqual((await decodeImageRgb(await encodeImage(t, 'png'))).data, PIXELS);
  for (const format of ['jpeg', 'webp'] as const) {
    const back = await decodeImage(await encodeImage(t, format, { quality: 100 }));
    let err = 0;
    for (let i = 0; i < t.numel; i++) err = Math.max(err, Math.abs(back.data[i]! - t.data[i]!));
    assert.ok(err < 0.2, `${format}: max error ${err}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'img-'));
  try {
    for (const name of ['a.png', 'b.jpg', 'c.webp']) {
      await writeImage(join(dir, name), t);
      assert.deepEqual((await decodeImage(join(dir, name))).shape, [1, 3, H, W]);
    }
    await assert.rejects(writeImage(join(dir, 'd.bmp'), t), (e: Error) => e instanceof ImageError && e.message.includes("'") && e.message.includes('d.bmp'));
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('save_image rounding and clamping; batch index; [3, H, W] accepted', () => {
  const t = f32([2, 3, 1, 1], [-2, -1, 0.999, /* image 1 */ 1, 2, NaN]);
  assert.deepEqual([...tensorToRgb(t).data], [0, 0, 255]);
  assert.deepEqual([...tensorToRgb(t, { index: 1 }).data], [255, 255, 0]);
  assert.deepEqual([...tensorToRgb(f32([3, 1, 1], [0, 0.5, 1]), { range: [0, 1] }).data], [0, 128, 255]);
  assert.throws(() => tensorToRgb(t, { index: 2 }), /index 2 out of range/);
  assert.throws(() => tensorToRgb(f32([1, 4, 1, 1])), /must be \[N, 3, H, W\]/);
});

test('resizing while decoding; resizeImage; stackImages', async () => {
  const src = await png(3, PIXELS);
  assert.deepEqual((await decodeImage(src, { size: 2 })).shape, [1, 3, 2, 2]);
  assert.deepEqual((await decodeImage(src, { size: [8, 3], kernel: 'nearest' })).shape, [1, 3, 3, 8]);
  const small = await resizeImage(src, 3, 2, { format: 'webp' });
  assert.deepEqual((await sharp(small).metadata()).format, 'webp');
  const a = await decodeImage(src);
  const batch = stackImages([a, a]);
  assert.deepEqual(batch.shape, [2, 3, H, W]);
  assert.deepEqual(batch.data.subarray(a.numel), a.data);
  const b = await decodeImage(src, { size: 2 });
  assert.throws(() => stackImages([a, b]), ImageError);
});

test('a non-image input is a clear ImageError; a missing file stays ENOENT', async () => {
  await assert.rejects(decodeImage(new TextEncoder().encode('definitely not an image')), (e: Error) => e instanceof ImageError && /image bytes \(23 bytes\) is not a readable image/.test(e.message));
  const dir = mkdtempSync(join(tmpdir(), 'img-'));
  try {
    writeFileSync(join(dir, 'x.png'), 'text');
    await assert.rejects(decodeImage(join(dir, 'x.png')), (e: Error) => e instanceof ImageError && e.message.includes('x.png'));
    await assert.rejects(decodeImage(join(dir, 'missing.png')), (e: NodeJS.ErrnoException) => !(e instanceof ImageError));
  } finally {
    rmSync(dir, { recursive: true });
  }
});
