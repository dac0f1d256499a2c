// The clipmapper page: no build step, one module.
//
// Server mode: the form goes to POST /api/edit as multipart; the answer is the edited photo (PNG).
// Browser mode: POST /api/export (JSON conditions) makes the server write the edit as ONNX
// (e4e.onnx: aligned face -> w+, edit.onnx: w+, alpha -> image) and answer with the manifest; the
// page loads both with onnxruntime-web (WebGPU when the browser offers an adapter, wasm otherwise)
// and runs them here on a centre crop of the photo. No face detection, alignment or paste-back
// runs in the browser: give it a roughly centred, FFHQ-like portrait.

const $ = (id) => document.getElementById(id);
const state = { health: null, ort: null, ep: null, sessions: new Map() };

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
  delete $('after').dataset.done;
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

/** The photo's centre square, resized to size x size, as [1, 3, size, size] float32 in [-1, 1]. */
async function photoTensor(ort, file, size) {
  const bmp = await createImageBitmap(file);
  const side = Math.min(bmp.width, bmp.height);
  const c = new OffscreenCanvas(size, size);
  const ctx = c.getContext('2d');
  ctx.drawImage(bmp, (bmp.width - side) / 2, (bmp.height - side) / 2, side, side, 0, 0, size, size);
  const px = ctx.getImageData(0, 0, size, size).data;
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let ch = 0; ch < 3; ch++) out[ch * plane + i] = px[4 * i + ch] / 127.5 - 1;
  return new ort.Tensor('float32', out, [1, 3, size, size]);
}

/** [1, 3, S, S] in [-1, 1] -> a PNG object URL. */
async function tensorToUrl(t) {
  const [, , H, W] = t.dims;
  const d = t.data;
  const c = new OffscreenCanvas(W, H);
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(W, H);
  const plane = W * H;
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = Math.max(0, Math.min(255, Math.floor((d[ch * plane + i] + 1) * 127.5 + 0.5)));
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return URL.createObjectURL(await c.convertToBlob({ type: 'image/png' }));
}

async function editInBrowser(photo) {
  setStatus('loading onnxruntime-web…');
  const ort = await loadOrt();
  setStatus('exporting the edit on the server (once per condition set)…');
  const body = { method: method() };
  for (const k of ['hairstyle', 'color', 'text']) if ($(k).value.trim()) body[k] = $(k).value.trim();
  const r = await fetch('/api/export', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(j.message ?? `${r.status}`);
  const { base, manifest } = j;
  setStatus(`running e4e and the edit in the browser (${state.ep})…`);
  const e4e = await session(ort, base + manifest.files.e4e.file);
  const edit = await session(ort, base + manifest.files.edit.file);
  const x = await photoTensor(ort, photo, manifest.e4e.inputSize);
  const { w } = await e4e.run({ image: x });
  const out = await edit.run({ w, alpha: new ort.Tensor('float32', new Float32Array([alpha()]), [1]) });
  await loadInto($('after'), await tensorToUrl(out.image));
}

init();
