// src/align: face detection + 68 landmarks (face-api, loaded lazily), the FFHQ alignment with
// its exact inverse map, and paste-back of an edited crop into the original photo.
//
//   const { image, alignment } = await alignFace('photo.jpg', { outputSize: 1024 });
//   ... invert / edit / synthesise `image` ...
//   const result = pasteBack(photo, editedCrop, mask, alignment);

import { detectFace, loadRgb, type DetectOptions, type DetectedFace, type ImageInput } from './detect.ts';
import { alignFfhq, type AlignOptions, type FfhqAlignment } from './ffhq.ts';
import type { RgbImage } from './pixels.ts';

export { detectFaces, detectFace, loadFaceDetector, faceModelDir, loadRgb, NoFaceError } from './detect.ts';
export type { DetectedFace, DetectOptions, DetectorInfo, FaceBox, ImageInput } from './detect.ts';
export { ffhqQuad, planFfhqAlignment, alignFfhq, cropToPhoto, photoToCrop, cropToPhotoMatrix } from './ffhq.ts';
export type { AlignOptions, FfhqAlignment, FfhqQuad, Landmarks68, Point } from './ffhq.ts';
export { pasteBack, featherMask, fullMask } from './paste.ts';
export type { PasteOptions } from './paste.ts';
export { resizeLanczos, quadTransform } from './pixels.ts';
export type { FloatImage } from './pixels.ts';

export interface AlignFaceOptions extends AlignOptions, DetectOptions {
  /** Which face when there are several: index into the list sorted largest first (default 0). */
  face?: number;
}

export interface AlignedFace {
  /** The aligned crop, outputSize x outputSize RGB. */
  image: RgbImage;
  alignment: FfhqAlignment;
  face: DetectedFace;
  /** The decoded photo (what pasteBack needs). */
  photo: RgbImage;
}

/** Detects the face (largest, or opts.face) and aligns it the FFHQ way. Throws NoFaceError when there is none. */
export async function alignFace(input: ImageInput, opts: AlignFaceOptions = {}): Promise<AlignedFace> {
  const photo = await loadRgb(input);
  const face = await detectFace(photo, opts).catch((e: unknown) => {
    // name the file rather than "the image" in the error
    if (e instanceof Error && e.name === 'NoFaceError' && typeof input === 'string') e.message = e.message.replace('the image', `'${input}'`);
    throw e;
  });
  const { image, alignment } = alignFfhq(photo, face.landmarks, opts);
  return { image, alignment, face, photo };
}
