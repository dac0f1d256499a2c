// What the web page's browser mode runs of ours, bundled by the server for the page (GET
// /lib/clipmapper.js, esbuild, src/server/bundle.ts): the same detection core (with face-api's
// browser build passed in), FFHQ alignment, blend mask and paste-back as the Node pipeline
// (src/pipeline/editor.ts), so a photo edited in the browser goes through the same steps.
export { detectWithFaceApi, NoFaceError } from '../align/detect_core.ts';
export { alignFfhq } from '../align/ffhq.ts';
export { pasteBack, featherMask, fullMask } from '../align/paste.ts';
export { blendMask } from '../pipeline/mask.ts';
