import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import {
  alignFace, alignFfhq, cropToPhoto, detectFace, detectFaces, featherMask, loadRgb, NoFaceError,
  pasteBack, photoToCrop, planFfhqAlignment, resizeLanczos, type FloatImage, type Point,
} from './index.ts';
import type { RgbImage } from './pixels.ts';

const IMAGES = 'test/fixtures/images';
const GOLDENS = 'test/fixtures/align';
const ASTRONAUT = `${IMAGES}/astronaut.png`;

interface GoldenCase {
  name: string; photoCrop: [number, number, number, number] | null; outputSize: number; transformSize: number;
  shrink: number; crop: [number, number, number, number]; pad: [number, number, number, number] | null; sha256: string; file?: string;
}
const goldens = JSON.parse(readFileSync(`${GOLDENS}/goldens.json`, 'utf8')) as { cases: GoldenCase[] };
const goldenLandmarks = JSON.parse(readFileSync(`${GOLDENS}/astronaut_landmarks.json`, 'utf8')) as Point[];

function cropRgb(img: RgbImage, [l, t, r, b]: readonly number[]): RgbImage {
  const w = r - l, h = b - t, out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(((t + y) * img.width + l) * 3, ((t + y) * img.width + r) * 3), y * w * 3);
  return { data: out, width: w, height: h };
}
const meanPt = (a: readonly Point[], i: number, j: number): Point => {
  let x = 0, y = 0;
  for (let k = i; k < j; k++) { x += a[k][0]; y += a[k][1]; }
  return [x / (j - i), y / (j - i)];
};
const dist = (a: Point, b: Point) => Math.hypot(a[0] - b[0], a[1] - b[1]);

// ---------------------------------------------------------------- the official pipeline, bit for bit

test('FFHQ alignment equals the official pipeline byte for byte (crop, shrink, pad+blur, Lanczos, every size)', async () => {
  const photo = await loadRgb(ASTRONAUT);
  for (const c of goldens.cases) {
    const src = c.photoCrop ? cropRgb(photo, c.photoCrop) : photo;
    const lm = c.photoCrop ? goldenLandmarks.map((p) => [p[0] - c.photoCrop![0], p[1] - c.photoCrop![1]] as Point) : goldenLandmarks;
    const { image, alignment } = alignFfhq(src, lm, { outputSize: c.outputSize, transformSize: c.transformSize });
    assert.equal(alignment.steps.shrink, c.shrink, `${c.name}: shrink`);
    assert.deepEqual(alignment.steps.crop, c.crop, `${c.name}: crop box`);
    assert.deepEqual(alignment.steps.pad, c.pad, `${c.name}: padding`);
    assert.equal(image.width, c.outputSize);
    if (c.file) {
      const ref = await loadRgb(`${GOLDENS}/${c.file}`);
      let diff = 0, maxd = 0;
      for (let i = 0; i < ref.data.length; i++) { const d = Math.abs(ref.data[i] - image.data[i]); if (d) diff++; maxd = Math.max(maxd, d); }
      assert.equal(diff, 0, `${c.name}: ${diff} values differ from the official crop (max ${maxd})`);
    }
    assert.equal(createHash('sha256').update(image.data).digest('hex'), c.sha256, `${c.name}: sha256 of the crop`);
  }
});

test('the crop<->photo map is exactly the map the pixels went through (coordinate-ramp photo), and inverts exactly', () => {
  // R = x, G = y: the aligned crop then shows, at every pixel, where it sampled the photo.
  const W = 240, H = 200;
  const photo: RgbImage = { data: new Uint8Array(W * H * 3), width: W, height: H };
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) { photo.data[(y * W + x) * 3] = x; photo.data[(y * W + x) * 3 + 1] = y; }
  // a face ~100 px wide, tilted, inside the photo (landmarks from the astronaut's, moved and scaled)
  const c0 = meanPt(goldenLandmarks, 0, 68);
  const lm = goldenLandmarks.map((p) => {
    const dx = (p[0] - c0[0]) * 0.55, dy = (p[1] - c0[1]) * 0.55, a = 0.2;
    return [120 + dx * Math.cos(a) - dy * Math.sin(a), 100 + dx * Math.sin(a) + dy * Math.cos(a)] as Point;
  });
  for (const [outputSize, transformSize] of [[128, 128], [16, 16]]) { // 16: the shrink branch (factor 2)
    const { image, alignment } = alignFfhq(photo, lm, { outputSize, transformSize, enablePadding: false });
    if (outputSize === 16) assert.ok(alignment.steps.shrink > 1, 'the shrink branch is exercised');
    let checked = 0;
    const sum = [0, 0];
    for (let j = 1; j < outputSize - 1; j++) {
      for (let i = 1; i < outputSize - 1; i++) {
        const p = cropToPhoto(alignment, [i, j]);
        if (p[0] < 3 || p[1] < 3 || p[0] > W - 4 || p[1] > H - 4) continue;
        const o = (j * outputSize + i) * 3;
        // the quad warp truncates (value = floor(x)); the shrink's Lanczos halves a ramp of step 1 to
        // values 2k + 0.5 that its fixed point rounds down to 2k: another -0.5 on average
        const lo = outputSize === 16 ? -1.6 : -1.01, hi = 0.01;
        const ex = image.data[o] - p[0], ey = image.data[o + 1] - p[1];
        assert.ok(ex >= lo && ex <= hi && ey >= lo && ey <= hi,
          `${outputSize}: crop (${i}, ${j}) shows photo (${image.data[o]}, ${image.data[o + 1]}), map says (${p[0].toFixed(2)}, ${p[1].toFixed(2)})`);
        sum[0] += ex; sum[1] += ey;
        checked++;
      }
    }
    assert.ok(checked > outputSize * outputSize * 0.5);
    // sub-pixel check of the map: the mean error is exactly the rounding bias (-0.5, or -1 with shrink)
    const bias = outputSize === 16 ? -1 : -0.5;
    for (const s of sum) assert.ok(Math.abs(s / checked - bias) < 0.03, `${outputSize}: mean offset ${s / checked}, expected ${bias}`);
    // exact inverse, both ways, also for another crop resolution
    for (let k = 0; k < 200; k++) {
      const p: Point = [(k * 37.3) % W, (k * 11.7) % H];
      for (const size of [outputSize, 1024]) {
        assert.ok(dist(cropToPhoto(alignment, photoToCrop(alignment, p, size), size), p) < 1e-6);
        const q: Point = [(k * 5.1) % size, (k * 3.3) % size];
        assert.ok(dist(photoToCrop(alignment, cropToPhoto(alignment, q, size), size), q) < 1e-6);
      }
    }
  }
  // planFfhqAlignment gives the same geometry without pixels
  const plan = planFfhqAlignment(lm, W, H, { outputSize: 128, transformSize: 128, enablePadding: false });
  assert.deepEqual(plan.origin, alignFfhq(photo, lm, { outputSize: 128, transformSize: 128, enablePadding: false }).alignment.origin);
});

// ---------------------------------------------------------------- detection (models loaded once per process)

test('detectFaces: one face on astronaut.png with 68 landmarks; the cat gets NoFaceError; bad face index is a RangeError', async () => {
  const faces = await detectFaces(ASTRONAUT);
  assert.equal(faces.length, 1);
  const f = faces[0];
  assert.ok(f.score > 0.9, `score ${f.score}`);
  assert.equal(f.landmarks.length, 68);
  // the face is roughly where it is (box ~ x 181..264, y 73..175)
  assert.ok(f.box.x > 150 && f.box.x < 210 && f.box.y > 40 && f.box.y < 110 && f.box.width > 60 && f.box.width < 120, JSON.stringify(f.box));
  for (const p of f.landmarks) assert.ok(p[0] > f.box.x - 20 && p[0] < f.box.x + f.box.width + 20 && p[1] > f.box.y - 40 && p[1] < f.box.y + f.box.height + 20);
  // left eye (36-41) left of the right eye (42-47), mouth below the eyes
  assert.ok(meanPt(f.landmarks, 36, 42)[0] < meanPt(f.landmarks, 42, 48)[0]);
  assert.ok(meanPt(f.landmarks, 48, 68)[1] > meanPt(f.landmarks, 36, 48)[1]);

  await assert.rejects(detectFaces(`${IMAGES}/chelsea.png`), (e: unknown) => {
    assert.ok(e instanceof NoFaceError, `expected NoFaceError, got ${String(e)}`);
    assert.match(e.message, /no face found in '.*chelsea\.png' \(451x300/);
    // SSD alone sees a face in the cat (score 0.93); the second detector does not confirm it
    assert.equal(e.rejected, 1);
    return true;
  });
  await assert.rejects(alignFace(`${IMAGES}/chelsea.png`), NoFaceError);
  await assert.rejects(detectFace(ASTRONAUT, { face: 1 }), /face 1 requested but 1 face was found/);
});

test('several faces: sorted largest first; face: N picks one', async () => {
  // the astronaut at full size and at half size side by side on a grey canvas
  const a = await loadRgb(ASTRONAUT);
  const small = resizeLanczos(a, 256, 256);
  const W = 768, H = 512, data = new Uint8Array(W * H * 3).fill(128);
  for (let y = 0; y < 512; y++) data.set(a.data.subarray(y * 512 * 3, (y + 1) * 512 * 3), y * W * 3);
  for (let y = 0; y < 256; y++) data.set(small.data.subarray(y * 256 * 3, (y + 1) * 256 * 3), ((y + 128) * W + 512) * 3);
  const img: RgbImage = { data, width: W, height: H };
  const faces = await detectFaces(img);
  assert.equal(faces.length, 2);
  assert.ok(faces[0].box.x < 512 && faces[1].box.x > 512, 'largest (the full-size face) first');
  assert.ok(faces[0].box.width * faces[0].box.height > faces[1].box.width * faces[1].box.height);
  const r = await alignFace(img, { face: 1, outputSize: 256, transformSize: 256 });
  assert.deepEqual(r.face.box, faces[1].box);
  assert.ok(r.alignment.origin[0] > 512, 'the crop is taken around the small face');
  // half-size face: the quad is about half the full-size one
  const full = await alignFace(img, { outputSize: 256, transformSize: 256 });
  const ratio = r.alignment.quad.qsize / full.alignment.quad.qsize;
  assert.ok(Math.abs(ratio - 0.5) < 0.05, `qsize ratio ${ratio}`);
});

test('astronaut.png aligned at 1024: framed as FFHQ (eyes level, centred) and the inverse map lands on the photo landmarks', async (t) => {
  const r = await alignFace(ASTRONAUT, { outputSize: 1024 });
  assert.equal(r.image.width, 1024);
  assert.equal(r.image.height, 1024);
  const S = 1024;
  const re = (await detectFaces(r.image))[0];
  const el = meanPt(re.landmarks, 36, 42), er = meanPt(re.landmarks, 42, 48);
  const angle = Math.atan2(er[1] - el[1], er[0] - el[0]) * 180 / Math.PI;
  const centre = ((el[0] + er[0]) / 2 - (S - 1) / 2) / S;
  // the framing FFHQ's definition itself gives (photo landmarks through the exact map)
  const lmC = r.face.landmarks.map((p) => photoToCrop(r.alignment, p));
  const eAngle = Math.atan2(meanPt(lmC, 42, 48)[1] - meanPt(lmC, 36, 42)[1], meanPt(lmC, 42, 48)[0] - meanPt(lmC, 36, 42)[0]) * 180 / Math.PI;
  t.diagnostic(`re-detected eye angle ${angle.toFixed(3)} deg (FFHQ definition on the photo landmarks: ${eAngle.toFixed(3)}), eye midpoint ${(centre * 100).toFixed(3)}% of the width off centre`);
  assert.ok(Math.abs(angle) < 1, `eyes tilted ${angle} deg`);
  assert.ok(Math.abs(centre) < 0.01, `eye midpoint ${centre * 100}% off the vertical centre line`);
  // eyes at FFHQ's height (~0.47 of the side for this face) and a plausible inter-ocular distance
  assert.ok(Math.abs((el[1] + er[1]) / 2 / S - 0.47) < 0.05);

  // re-detected crop landmarks, mapped back, vs the photo's: all 68 within 2 px
  const errs = re.landmarks.map((p, i) => dist(cropToPhoto(r.alignment, p), r.face.landmarks[i]));
  const inner = errs.slice(17); // brows, nose, eyes, mouth
  const jaw = errs.slice(0, 17); // the jaw contour
  const eyes = [dist(cropToPhoto(r.alignment, el), meanPt(r.face.landmarks, 36, 42)), dist(cropToPhoto(r.alignment, er), meanPt(r.face.landmarks, 42, 48))];
  t.diagnostic(`mapped back: all 68 max ${Math.max(...errs).toFixed(2)} px mean ${(errs.reduce((a, b) => a + b) / errs.length).toFixed(2)}; ` +
    `inner 51 max ${Math.max(...inner).toFixed(2)}; jaw max ${Math.max(...jaw).toFixed(2)}; eye centres ${eyes.map((e) => e.toFixed(2)).join(', ')} px`);
  assert.ok(Math.max(...errs) < 2, `every landmark mapped back within 2 px (max ${Math.max(...errs)} at point ${errs.indexOf(Math.max(...errs))})`);
  assert.ok(Math.max(...eyes) < 1, `eye centres within 1 px (${eyes})`);
  // without the refinement passes (face-api's raw points) the jaw points slide along the outline
  // between the two framings: that is what the refinement is for
  const raw = (await detectFaces(ASTRONAUT, { refine: 0 }))[0], rawCrop = (await detectFaces(r.image, { refine: 0 }))[0];
  const rawErr = Math.max(...rawCrop.landmarks.map((p, i) => dist(cropToPhoto(r.alignment, p), raw.landmarks[i])));
  t.diagnostic(`raw (refine: 0) max ${rawErr.toFixed(2)} px; refinement moved the photo landmarks by up to ${Math.max(...raw.landmarks.map((p, i) => dist(p, r.face.landmarks[i]))).toFixed(2)} px`);
  assert.ok(rawErr > Math.max(...errs), 'refinement makes the two detections agree more closely');
  await assert.rejects(detectFaces(ASTRONAUT, { refine: -1 }), /refine must be a whole number/);
  // the exact-inverse property itself (no detector involved)
  for (const p of r.face.landmarks) assert.ok(dist(cropToPhoto(r.alignment, photoToCrop(r.alignment, p)), p) < 1e-6);
});

// ---------------------------------------------------------------- paste-back

test('pasteBack: zero-mask pixels keep the photo bytes exactly; the unedited crop pasted back reproduces the photo', async () => {
  const photo = await loadRgb(ASTRONAUT);
  const lm = goldenLandmarks;
  const { image: crop, alignment } = alignFfhq(photo, lm, { outputSize: 256, transformSize: 256 });
  // edit: invert the colours; mask: a feathered disc in the middle of the crop
  const edited: RgbImage = { data: crop.data.map((v) => 255 - v), width: 256, height: 256 };
  const M = 128; // a mask at another resolution than the crop
  const disc: FloatImage = { data: new Float32Array(M * M), width: M, height: M };
  for (let y = 0; y < M; y++) for (let x = 0; x < M; x++) disc.data[y * M + x] = Math.hypot(x - 64, y - 70) < 40 ? 1 : 0;
  const mask = featherMask(disc, 6);
  for (let i = 0; i < M * M; i++) assert.ok(mask.data[i] <= disc.data[i] && (disc.data[i] > 0 || mask.data[i] === 0));
  assert.equal(mask.data[70 * M + 64], 1);

  const out = pasteBack(photo, edited, mask, alignment);
  let kept = 0, changed = 0, core = 0;
  for (let y = 0; y < photo.height; y++) {
    for (let x = 0; x < photo.width; x++) {
      const q = photoToCrop(alignment, [x, y], M); // where this photo pixel falls in the mask
      const r = Math.hypot(q[0] - 64, q[1] - 70);
      const i = (y * photo.width + x) * 3;
      if (r > 41.5) { // outside the disc (plus bilinear reach): must be untouched
        for (let c = 0; c < 3; c++) assert.equal(out.data[i + c], photo.data[i + c], `photo pixel (${x}, ${y}) changed`);
        kept++;
      } else if (r < 25) { // well inside (disc 40, eroded by 6, blurred by +-6): the edit
        const e = photoToCrop(alignment, [x, y], 256);
        const ci = (Math.round(e[1]) * 256 + Math.round(e[0])) * 3;
        for (let c = 0; c < 3; c++) assert.ok(Math.abs(out.data[i + c] - edited.data[ci + c]) <= 40, `(${x}, ${y}) is not the edit`);
        core++;
      }
      if (out.data[i] !== photo.data[i]) changed++;
    }
  }
  assert.ok(kept > 200000 && core > 1000 && changed > 1000, `kept ${kept} core ${core} changed ${changed}`);

  // the unedited 1024 crop pasted back with the default (feathered full) mask ~ the photo
  const big = alignFfhq(photo, lm, { outputSize: 1024 });
  const back = pasteBack(photo, big.image, null, big.alignment);
  let sum = 0, n = 0;
  for (let y = 40; y < 180; y++) for (let x = 160; x < 290; x++) for (let c = 0; c < 3; c++) { sum += Math.abs(back.data[(y * 512 + x) * 3 + c] - photo.data[(y * 512 + x) * 3 + c]); n++; }
  assert.ok(sum / n < 2.5, `round trip mean abs error ${sum / n}`);
  assert.throws(() => pasteBack(cropRgb(photo, [0, 0, 100, 100]), big.image, null, big.alignment), /alignment was made for 512x512/);
});

test('importing src/align does not load tfjs (face-api is loaded lazily on first detection)', () => {
  const code = `const m = await import('./src/align/index.ts'); const { createRequire } = await import('node:module');
    const cache = Object.keys(createRequire(import.meta.url).cache);
    if (typeof m.alignFfhq !== 'function') throw new Error('no export');
    console.log(JSON.stringify(cache.filter((k) => k.includes('@tensorflow') || k.includes('face-api'))));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), []);
});

test('FLIP68 is the iBUG mirror permutation: an involution fixing exactly the midline points', async () => {
  const { FLIP68 } = await import('./detect.ts');
  assert.equal(FLIP68.length, 68);
  for (let i = 0; i < 68; i++) assert.equal(FLIP68[FLIP68[i]], i);
  assert.deepEqual([...Array(68).keys()].filter((i) => FLIP68[i] === i), [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]);
  // mirrored golden landmarks of a symmetric-ish face: each point's partner sits on the other side of the nose line
  const cx = goldenLandmarks[30][0];
  for (const [a, b] of [[36, 45], [39, 42], [48, 54], [0, 16]]) {
    assert.equal(FLIP68[a], b);
    assert.ok((goldenLandmarks[a][0] - cx) * (goldenLandmarks[b][0] - cx) < 0);
  }
});
