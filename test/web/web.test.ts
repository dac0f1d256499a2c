// Issue 5 (d): the web page in a real browser (Debian's chromium through playwright-core), on the
// tiny networks: upload astronaut.png, type a hairstyle, get the edited photo back (server mode),
// then the same edit run in the page (browser mode: face-api's browser build + our bundled
// detection core, alignment, mask and paste-back, the graphs in onnxruntime-web): the whole photo
// at its size, the same landmarks as Node's detector, photo bytes kept outside the mask, and the
// cat photo refused with the no-face message. Screenshots go to test/output/. Skipped, loudly, only when /usr/bin/chromium is absent (.ci/run installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer, type ClipmapperServer } from '../../src/server/index.ts';
import { pipeline } from '../../src/pipeline/editor.ts';
import { tinyWeights, TEST_IMAGES } from '../../src/pipeline/testing.ts';
import { detectFace } from '../../src/align/detect.ts';

const CHROMIUM = '/usr/bin/chromium';
const OUT = fileURLToPath(new URL('../output/', import.meta.url));
const skip = existsSync(CHROMIUM) ? false : `SKIPPED: ${CHROMIUM} is absent — install it with \`apt-get install -y chromium\` (.ci/run does) to run the browser test`;
if (skip) console.error(`\n*** web.test.ts ${skip} ***\n`);

let app: ClipmapperServer;
let base = '';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let browser: any;

before(async () => {
  if (skip) return;
  const tiny = tinyWeights();
  const [hairclip, ffclip] = await Promise.all([
    pipeline('hairclip', { weights: tiny.hairclip, download: false }),
    pipeline('ffclip', { weights: tiny.ffclip, download: false }),
  ]);
  app = await createServer({ editors: { hairclip, ffclip } });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  mkdirSync(OUT, { recursive: true });
});
after(async () => { await browser?.close(); await app?.close(); });

test('web page: upload astronaut.png, type a hairstyle, receive the edited photo (server mode), then run it in the browser (onnxruntime-web)', { skip, timeout: 300_000 }, async (t) => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  const logs: string[] = [];
  page.on('console', (m: { text(): string }) => logs.push(m.text()));
  page.on('pageerror', (e: Error) => logs.push(`pageerror: ${e.message}`));
  await page.goto(base);
  await page.waitForSelector('body[data-ready="1"]');
  assert.deepEqual(await page.$$eval('#method option', (os: HTMLOptionElement[]) => os.map((o) => o.value)), ['hairclip', 'ffclip']);
  await page.setInputFiles('#photo', TEST_IMAGES.astronaut);
  await page.fill('#hairstyle', 'afro');
  await page.fill('#color', 'purple');
  await page.click('#go');
  await page.waitForSelector('#after[data-done="1"]', { timeout: 60_000 });
  const size = await page.$eval('#after', (img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
  assert.deepEqual(size, [512, 512], 'the edited photo, at the photo size');
  assert.match(await page.textContent('#status'), /done in .* s \(server\)/);
  const serverResult = await page.$eval('#after', (img: HTMLImageElement) => img.src); // a blob: URL, kept for the comparison below
  const shot = `${OUT}web-server-mode.png`;
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  // an error is shown, not thrown away: a cat has no face
  await page.setInputFiles('#photo', TEST_IMAGES.chelsea);
  await page.click('#go');
  await page.waitForSelector('#status.error');
  assert.match(await page.textContent('#status'), /no face found in the uploaded photo/);

  // browser mode: the server exports e4e.onnx + edit.onnx + parser.onnx; the page finds the face
  // (face-api's browser build), aligns, runs the graphs with onnxruntime-web, masks and pastes back
  await page.setInputFiles('#photo', TEST_IMAGES.astronaut);
  await page.check('input[name=mode][value=browser]');
  await page.click('#go');
  try {
    await page.waitForSelector('#after[data-done="1"]', { timeout: 150_000 });
  } catch (e) {
    throw new Error(`browser mode did not finish: status '${await page.textContent('#status')}'; console: ${logs.join(' | ')}`, { cause: e });
  }
  assert.deepEqual(await page.$eval('#after', (img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]), [512, 512], 'the whole photo, at its size');
  const status = await page.textContent('#status');
  assert.match(status, /done in .* s \(browser, (wasm|webgpu)\)/);
  const box = JSON.parse(await page.$eval('#after', (img: HTMLImageElement) => img.dataset.face!)) as { x: number; y: number; width: number; height: number };
  assert.ok(box.x > 150 && box.x < 210 && box.y > 40 && box.y < 110 && box.width > 60 && box.width < 120, `browser detection box ${JSON.stringify(box)}`);
  // the same detection as the server's: face-api's browser build (tfjs webgl in headless
  // Chromium, software GL) with the shared core vs the Node path (tfjs wasm) on the same photo
  const nodeFace = await detectFace(TEST_IMAGES.astronaut);
  const lm = JSON.parse(await page.$eval('#after', (img: HTMLImageElement) => img.dataset.landmarks!)) as [number, number][];
  assert.equal(lm.length, 68);
  const lmGap = Math.max(...lm.map((p, k) => Math.hypot(p[0] - nodeFace.landmarks[k][0], p[1] - nodeFace.landmarks[k][1])));
  const boxGap = Math.max(Math.abs(box.x - nodeFace.box.x), Math.abs(box.y - nodeFace.box.y), Math.abs(box.width - nodeFace.box.width), Math.abs(box.height - nodeFace.box.height));
  const tfjs = await page.$eval('#after', (img: HTMLImageElement) => img.dataset.tfjs!);
  t.diagnostic(`browser (tfjs ${tfjs}) vs Node (tfjs wasm) detection: landmarks within ${lmGap.toFixed(3)} px, box within ${boxGap.toFixed(3)} px`);
  assert.ok(lmGap < 0.5 && boxGap < 0.5, `browser landmarks ${lmGap} px / box ${boxGap} px from Node's`);
  // pixels far outside the blend mask are the photo's own bytes; inside, the edit changed the face
  // (a string: tsx's transform would wrap inner functions in a helper the page does not have)
  const diff = await page.evaluate(`(async () => {
    const read = async (src) => {
      const im = new Image();
      im.src = src;
      await im.decode();
      const c = document.createElement('canvas');
      c.width = im.naturalWidth; c.height = im.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(im, 0, 0);
      return ctx.getImageData(0, 0, c.width, c.height).data;
    };
    const a = await read(document.getElementById('before').src);
    const b = await read(document.getElementById('after').src);
    const s = await read(${JSON.stringify(serverResult)});
    let outside = 0, inside = 0, vsServerMax = 0, vsServerOff = 0, changed = 0, changedServer = 0;
    for (let y = 0; y < 512; y++) {
      for (let x = 0; x < 512; x++) {
        const i = (y * 512 + x) * 4;
        const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
        if (x >= 400 || y >= 400 || (x < 120 && y < 200)) outside += d; // well away from the face at ~(180..265, 70..175)
        else if (x > 195 && x < 250 && y > 100 && y < 160) inside += d;
        if (d) changed++;
        if (a[i] !== s[i] || a[i + 1] !== s[i + 1] || a[i + 2] !== s[i + 2]) changedServer++;
        const e = Math.max(Math.abs(s[i] - b[i]), Math.abs(s[i + 1] - b[i + 1]), Math.abs(s[i + 2] - b[i + 2]));
        if (e > vsServerMax) vsServerMax = e;
        if (e > 1) vsServerOff++;
      }
    }
    return { outside, inside, vsServerMax, vsServerOff, changed, changedServer };
  })()`) as { outside: number; inside: number; vsServerMax: number; vsServerOff: number; changed: number; changedServer: number };
  t.diagnostic(`browser vs server result: ${JSON.stringify(diff)}`);
  assert.equal(diff.outside, 0, 'photo pixels outside the blend mask are unchanged');
  assert.ok(diff.inside > 0, 'the face region was edited');
  // the same photo as server mode (same graphs, onnxruntime-web vs -node: measured at most 1 level
  // apart on any channel, and the same 30367 pixels changed)
  assert.ok(diff.vsServerMax <= 2, `browser result within 2 levels of the server's, got ${diff.vsServerMax}`);
  assert.ok(Math.abs(diff.changed - diff.changedServer) <= 0.01 * diff.changedServer, `pixels changed: browser ${diff.changed}, server ${diff.changedServer}`);
  const timings = await page.$eval('#after', (img: HTMLImageElement) => img.dataset.timings!);
  const shot2 = `${OUT}web-browser-mode.png`;
  await page.screenshot({ path: shot2, fullPage: true });
  t.diagnostic(`browser mode: ${status}; steps (ms) ${timings}; screenshot: ${shot2}`);

  // no face in the browser either: the same message
  await page.setInputFiles('#photo', TEST_IMAGES.chelsea);
  await page.click('#go');
  await page.waitForSelector('#status.error', { timeout: 60_000 });
  assert.match(await page.textContent('#status'), /no face found in the uploaded photo/);
});
