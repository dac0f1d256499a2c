// The clipmapper page: no build step, one module.
//
// Server mode: the form goes to POST /api/edit as multipart; the answer is the edited photo (PNG).
// Browser mode: POST /api/export (JSON conditions) makes the server write the edit as ONNX
// (e4e.onnx: aligned face -> w+, edit.onnx: w+, alpha -> image, parser.onnx: crop -> labels) and
// answer with the manifest. Everything else runs here, on the photo's pixels, with the same steps
// and the same code as the server's pipeline: face-api's browser build finds the face (SSD boxes
// confirmed by the Tiny detector, 68 landmarks refined on an upright view: detect_core.ts), our
// FFHQ alignment, e4e and the edit in onnxruntime-web (WebGPU when the browser offers an adapter,
// wasm otherwise), the parser's blend mask and the paste-back into the photo (/lib/clipmapper.js
// is src/web/browser.ts bundled by the server). Only the exported graphs and the page's code come
// from the server; the photo never leaves the browser.

const $ = (id) => document.getElementById(id);
const state = { health: null, ort: null, ep: null, sessions: new Map(), faceapi: null };

function setStatus(msg, error = false) {
  const s = $('status');
  s.textContent = msg;
  s.className = error ? 'error' : '';
}

function method() { return $('method').value; }
function defaultAlpha() {
  const m = state.health?.methods.find((x) => x.method === method());
  return m ? m.defaultAlpha : 0.1;
}
function alpha() { return Number($('strength').value) * defaultAlpha(); }
function showAlpha() {
  $('strengthOut').textContent = Number($('strength').value).toFixed(2);
  $('alphaBase').textContent = String(defaultAlpha());
  $('alphaOut').textContent = alpha().toFixed(3);
}

async function init() {
  try {
    state.health = await (await fetch('/api/health')).json();
    for (const m of state.health.methods) {
      const o = document.createElement('option');
      o.value = m.method;
      o.textContent = m.method;
      $('method').append(o);
    }
    $('method').value = state.health.defaultMethod;
  } catch (e) {
    setStatus(`cannot reach the server: ${e.message}`, true);
  }
  showAlpha();
  $('strength').addEventListener('input', showAlpha);
  $('method').addEventListener('change', showAlpha);
  $('photo').addEventListener('change', () => {
    const f = $('photo').files[0];
    if (f) $('before').src = URL.createObjectURL(f);
  });
  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    run().catch((e) => setStatus(e.message, true));
  });
  document.body.dataset.ready = '1';
}

function mode() { return document.querySelector('input[name=mode]:checked').value; }

async function run() {
  const photo = $('photo').files[0];
  if (!photo) throw new Error('choose a photo first');
  $('after').removeAttribute('src');
  for (const k of ['done', 'face', 'landmarks', 'tfjs', 'timings']) delete $('after').dataset[k];
  $('go').disabled = true;
  const t0 = performance.now();
  try {
    if (mode() === 'server') await editOnServer(photo);
    else await editInBrowser(photo);
    setStatus(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s (${mode() === 'server' ? 'server' : `browser, ${state.ep}`})`);
    $('after').dataset.done = '1';
  } finally {
    $('go').disabled = false;
  }
}

async function editOnServer(photo) {
  setStatus('editing on the server…');
  const fd = new FormData();
  fd.append('method', method());
  for (const k of ['hairstyle', 'color', 'text']) if ($(k).value.trim()) fd.append(k, $(k).value.trim());
  fd.append('alpha', String(alpha()));
  for (const k of ['hairstyleRef', 'colorRef']) if ($(k).files[0]) fd.append(k, $(k).files[0]);
  fd.append('image', photo);
  const r = await fetch('/api/edit', { method: 'POST', body: fd });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).message ?? msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  const blob = await r.blob();
  await loadInto($('after'), URL.createObjectURL(blob));
}

function loadInto(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error('the answer is not a displayable image'));
    img.src = src;
  });
}

// ------------------------------------------------------------------ browser mode

async function loadOrt() {
  if (state.ort) return state.ort;
  const ort = await import('/ort/ort.webgpu.min.mjs');
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  let adapter = null;
  try { adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null; } catch { adapter = null; }
  state.ep = adapter ? 'webgpu' : 'wasm';
  $('ep').textContent = state.ep;
  state.ort = ort;
  return ort;
}

async function session(ort, url) {
  let s = state.sessions.get(url);
  if (!s) {
    s = ort.InferenceSession.create(url, { executionProviders: [state.ep] });
    state.sessions.set(url, s);
    s.catch(() => state.sessions.delete(url));
  }
  return s;
}

// face-api's browser build (tfjs bundled; it picks WebGL or its CPU backend) and our code
async function loadDetector() {
  if (state.faceapi) return state.faceapi;
  const [faceapi, lib] = await Promise.all([import('/face-api/dist/face-api.esm.js'), import('/lib/clipmapper.js')]);
  await faceapi.tf.ready();
  await Promise.all([
    faceapi.nets.ssdMobilenetv1.loadFromUri('/face-api/model'),
    faceapi.nets.tinyFaceDetector.loadFromUri('/face-api/model'),
    faceapi.nets.faceLandmark68Net.loadFromUri('/face-api/model'),
  ]);
  state.faceapi = { faceapi, lib };
  return state.faceapi;
}

/** The upload as 8-bit RGB {data, width, height} (as the server decodes it: alpha dropped). */
async function decodeRgb(file) {
  const bmp = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const c = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = c.getContext('2d');
  ctx.drawImage(bmp, 0, 0);
  const px = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
  const data = new Uint8Array(bmp.width * bmp.height * 3);
  for (let i = 0, j = 0; i < px.length; i += 4, j += 3) { data[j] = px[i]; data[j + 1] = px[i + 1]; data[j + 2] = px[i + 2]; }
  return { data, width: bmp.width, height: bmp.height };
}

/** RGB -> onnxruntime-web tensor [1, 3, H, W] in [-1, 1] (src/io/pixels.ts rgbToTensor). */
function rgbTensor(ort, lib, img) {
  const t = lib.rgbToTensor(img);
  return new ort.Tensor('float32', t.data, t.shape);
}

/** onnxruntime-web image tensor [1, 3, S, S] in [-1, 1] -> RGB (src/io/pixels.ts tensorToRgb). */
function tensorRgb(lib, t) {
  return lib.tensorToRgb(new lib.TensorData('float32', [...t.dims], t.data));
}

async function rgbToUrl(img) {
  const c = new OffscreenCanvas(img.width, img.height);
  const ctx = c.getContext('2d');
  const id = ctx.createImageData(img.width, img.height);
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) { id.data[i] = img.data[j]; id.data[i + 1] = img.data[j + 1]; id.data[i + 2] = img.data[j + 2]; id.data[i + 3] = 255; }
  ctx.putImageData(id, 0, 0);
  return URL.createObjectURL(await c.convertToBlob({ type: 'image/png' }));
}

async function editInBrowser(photo) {
  setStatus('loading onnxruntime-web and the face detector…');
  const [ort, { faceapi, lib }] = await Promise.all([loadOrt(), loadDetector()]);
  setStatus('exporting the edit on the server (once per condition set)…');
  const body = { method: method() };
  for (const k of ['hairstyle', 'color', 'text']) if ($(k).value.trim()) body[k] = $(k).value.trim();
  const r = await fetch('/api/export', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(j.message ?? `${r.status}`);
  const { base, manifest } = j;
  const timings = {};
  let t = performance.now();
  const lap = (k) => { const n = performance.now(); timings[k] = Math.round(n - t); t = n; };

  setStatus(`detecting the face (tfjs ${faceapi.tf.getBackend()})…`);
  const img = await decodeRgb(photo);
  const faces = await lib.detectWithFaceApi(faceapi, img, {}, 'the uploaded photo');
  const face = faces[0];
  lap('detect');
  const S = manifest.generator.size, Se = manifest.e4e.inputSize;
  const big = lib.alignFfhq(img, face.landmarks, { outputSize: S });
  const small = Se === S ? big : lib.alignFfhq(img, face.landmarks, { outputSize: Se, transformSize: Se });
  lap('align');

  setStatus(`running e4e and the edit in the browser (${state.ep})…`);
  const e4e = await session(ort, base + manifest.files.e4e.file);
  const edit = await session(ort, base + manifest.files.edit.file);
  const { w } = await e4e.run({ image: rgbTensor(ort, lib, small.image) });
  const out = await edit.run({ w, alpha: new ort.Tensor('float32', new Float32Array([alpha()]), [1]) });
  const edited = tensorRgb(lib, out.image);
  lap('edit');

  let mask;
  if (manifest.parser && manifest.files.parser) {
    const parser = await session(ort, base + manifest.files.parser.file);
    const P = manifest.parser.size;
    const src = (await parser.run({ image: rgbTensor(ort, lib, big.image) })).labels.data;
    const dst = (await parser.run({ image: out.image })).labels.data;
    mask = lib.blendMask([Int32Array.from(src), Int32Array.from(dst)], P, manifest.parser.classes.head, S);
  } else {
    mask = lib.cropBlendMask(S);
  }
  lap('mask');
  const result = lib.pasteBack(img, edited, mask, big.alignment);
  lap('paste');
  await loadInto($('after'), await rgbToUrl(result));
  $('after').dataset.face = JSON.stringify(face.box);
  $('after').dataset.tfjs = faceapi.tf.getBackend();
  $('after').dataset.landmarks = JSON.stringify(face.landmarks.map(([x, y]) => [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]));
  $('after').dataset.timings = JSON.stringify(timings);
}

init();
