// src/pipeline: edit a real photo end to end (see editor.ts), export an edit as ONNX (export.ts).
export { pipeline, decodePhoto, ConditionError, DEFAULT_ALPHA } from './editor.ts';
export type { FaceEditor, PipelineOptions, EditConditions, EditResult, ProgressEvent, FolderOptions, FolderSummary } from './editor.ts';
export { loadNets, loadFaceParser, checkCompatible, styleclipMapperName, MissingWeightsError, METHODS } from './nets.ts';
export type { EditMethod, WeightsSpec, LoadedNets, FaceParser, Mapper, WeightRole } from './nets.ts';
export { encodeGraph, synthesisGraph, parseGraph, editGraph, mapperDeltaGraph, parserClasses, parserSize } from './graphs.ts';
export type { ConditionEmbeddings } from './graphs.ts';
export { blendMask, regionMask, dilateMask, maskInPhoto } from './mask.ts';
export { gridImage, encodePng, maskToRgb } from './grid.ts';
export { exportEdit } from './export.ts';
export type { ExportManifest, ExportOptions, ExportedFile, TensorSpec } from './export.ts';
