// What the web page's browser mode runs of ours, bundled by the server for the page (GET
// /lib/clipmapper.js, esbuild, src/server/bundle.ts): the same detection core (with face-api's
// browser build passed in), FFHQ alignment, pixel conversions, blend mask and paste-back as the
// Node pipeline (src/pipeline/editor.ts), so a photo edited in the browser goes through the same
// steps and the same code.
export { detectWithFaceApi, NoFaceError } from '../align/detect_core.ts';
export { alignFfhq } from '../align/ffhq.ts';
export { pasteBack } from '../align/paste.ts';
export { rgbToTensor, tensorToRgb } from '../io/pixels.ts';
export { TensorData } from '../io/tensor.ts';
export { blendMask, cropBlendMask } from '../pipeline/mask.ts';
