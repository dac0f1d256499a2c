// clipmapper's public API (the package's main).
//
//   import { pipeline } from 'clipmapper';
//   const editor = await pipeline('hairclip');                     // weights from the registry / cache
//   const { image } = await editor('photo.jpg', { hairstyle: 'afro', color: 'purple' });
//
// Lower levels are exported too: the networks (StyleGAN2, e4e, CLIP, face parsers), the mappers,
// face alignment and paste-back, the weights registry and downloader, image I/O, and the server.
// Importing this module does not load tfjs / face-api (face detection loads them on first use).

// photo editing end to end, ONNX export
export * from './pipeline/index.ts';
// HTTP server
export { createServer, startServer, classify as classifyError } from './server/index.ts';
export type { ServerOptions, ClipmapperServer } from './server/index.ts';
export { JobQueue, QueueFullError } from './server/queue.ts';
// face detection, FFHQ alignment, paste-back
export {
  alignFace, detectFaces, detectFace, loadFaceDetector, loadRgb, NoFaceError, alignFfhq, planFfhqAlignment,
  cropToPhoto, photoToCrop, pasteBack, featherMask, fullMask,
} from './align/index.ts';
export type { AlignedFace, DetectedFace, FfhqAlignment, FloatImage, Point } from './align/index.ts';
// networks
export { Generator, loadGenerator, generatorFromStateDict, randomGenerator, generatorConfig } from './nets/stylegan2/stylegan2.ts';
export type { GeneratorConfig } from './nets/stylegan2/stylegan2.ts';
export { loadE4e, e4eCodes, e4eInputSize } from './nets/e4e/e4e.ts';
export type { E4eNet, E4eConfig } from './nets/e4e/e4e.ts';
export { ClipModel } from './nets/clip/clip.ts';
export { tokenize } from './nets/clip/tokenizer.ts';
export { loadParsenet, unetForward, hairMask, PARSENET_LABELS } from './nets/parsenet/unet.ts';
export { loadBisenet, bisenetLogits, BISENET_LABELS } from './nets/bisenet/bisenet.ts';
// mappers
export { HairClipMapper, HAIRCLIP_ALPHA } from './mappers/hairclip.ts';
export { StyleClipMapper, STYLECLIP_ALPHA } from './mappers/styleclip.ts';
export { FfclipMapper, FFCLIP_ALPHA } from './mappers/ffclip.ts';
// weights
export { REGISTRY, findWeights, getWeights } from './weights/registry.ts';
export type { WeightsEntry } from './weights/registry.ts';
export { resolveWeights, downloadFile, cacheDir, DownloadError } from './weights/download.ts';
// files and images
export { loadStateDict } from './io/weights.ts';
export { decodeImage, decodeImageRgb, encodeImage, writeImage, rgbToTensor, tensorToRgb } from './io/image.ts';
export type { RgbImage } from './io/image.ts';
export { IoError, ImageError } from './io/errors.ts';
// the graph builder and the runtime
export { compile, evaluate, settings as runtimeSettings } from './runtime/session.ts';
export type { ExecutionProvider, HostTensor } from './runtime/session.ts';
// training and evaluation of the mappers
export { Trainer, readLog } from './train/trainer.ts';
export type { TrainMethod, TrainOptions, StepResult, LogEntry } from './train/trainer.ts';
export { StyleClipTrainer, STYLECLIP_LAMBDAS } from './train/styleclip.ts';
export { HairClipTrainer, HAIRCLIP_LAMBDAS } from './train/hairclip.ts';
export { FfclipTrainer, FFCLIP_LAMBDAS } from './train/ffclip.ts';
export { latentSource, loadLatents, HAIRSTYLES, HAIR_COLORS, FFCLIP_PROMPTS } from './train/data.ts';
export { loadTrainNets, loadMapperNets } from './train/nets.ts';
export type { TrainNets } from './train/common.ts';
export { evaluateMapper, evalCases, formatEvalTable } from './eval/eval.ts';
