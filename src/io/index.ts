// File formats: PyTorch checkpoints (zip, legacy, TorchScript), safetensors, images.
//
// The usual entry point for a network's weights is `loadStateDict(path)` (weights.ts): whatever
// the file's format, a flat Map from dotted key to TensorData. Importing this barrel loads sharp;
// code that only reads weights can import './weights.ts' / './torch.ts' / './safetensors.ts'.

export * from './errors.ts';
export * from './tensor.ts';
export * from './pickle.ts';
export * from './torch.ts';
export * from './safetensors.ts';
export * from './image.ts';
export * from './weights.ts';
