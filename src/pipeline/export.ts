// `clipmapper export`: one trained edit as standalone .onnx files any ONNX Runtime runs
// (onnxruntime-node, onnxruntime-web in a browser, the Python/C++ runtimes), plus a JSON manifest.
//
//   edit.onnx    w [1, L, D] float32, alpha [1] float32 -> w_edit [1, L, D], image [1, 3, S, S]
//                (mapper with its parameters and the condition embeddings baked in, then the
//                StyleGAN2 synthesis with its stored noise; image is RGB in [-1, 1], unclamped)
//   e4e.onnx     image [1, 3, Se, Se] float32 in [-1, 1] (an FFHQ-aligned face) -> w [1, L, D]   (optional)
//   parser.onnx  image [1, 3, S, S] float32 in [-1, 1] -> labels [1, P, P] int32                (optional)
//   manifest.json  what each file takes and gives, the edit's conditions, sizes, label classes
//
// Graphs are opset 18, weights stored as initializers (raw float32). Face detection, alignment, the
// blend mask and paste-back are not in the graphs: they run around them, in Node (src/align,
// src/pipeline/mask.ts) or, in the web page's browser mode, as the same code bundled for the page
// (src/web/browser.ts) with face-api's browser build doing the detection.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toOnnx, OPSET } from '../graph/serialize.ts';
import type { Tensor } from '../graph/index.ts';
import type { EditConditions, FaceEditor } from './editor.ts';
import { editGraph, encodeGraph, parseGraph, parserClasses, parserSize } from './graphs.ts';

export interface TensorSpec { name: string; shape: number[]; dtype: string }
export interface ExportedFile { file: string; bytes: number; sha256: string; inputs: TensorSpec[]; outputs: TensorSpec[] }

export interface ExportManifest {
  format: 'clipmapper-edit';
  version: 1;
  opset: number;
  method: string;
  /** the conditions baked into edit.onnx (reference images are named, not stored) */
  conditions: Record<string, string | number>;
  /** alpha the method uses by default (feed it as `alpha`, or any other strength) */
  defaultAlpha: number;
  generator: { size: number; latent: [number, number] };
  e4e: { inputSize: number } | null;
  parser: { size: number; classes: { hair: number; head: number[] } } | null;
  pixels: { layout: 'NCHW'; channels: 'RGB'; range: [number, number] };
  files: { edit: ExportedFile; e4e?: ExportedFile; parser?: ExportedFile };
  sources: Record<string, string>;
}

export interface ExportOptions {
  /** also export the encoder (e4e.onnx) */
  withE4e?: boolean;
  /** also export the face parser (parser.onnx) */
  withParser?: boolean;
}

function describe(outputs: Record<string, Tensor>): { inputs: TensorSpec[]; outputs: TensorSpec[] } {
  const g = Object.values(outputs)[0].graph;
  return {
    inputs: g.inputs.map((t) => ({ name: t.name!, shape: [...t.shape], dtype: t.dtype })),
    outputs: Object.entries(outputs).map(([name, t]) => ({ name, shape: [...t.shape], dtype: t.dtype })),
  };
}

async function writeModel(dir: string, file: string, outputs: Record<string, Tensor>, name: string): Promise<ExportedFile> {
  const bytes = toOnnx(outputs, { name, docString: `clipmapper ${name}` });
  await writeFile(join(dir, file), bytes);
  return { file, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), ...describe(outputs) };
}

function conditionRecord(c: EditConditions): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const k of ['hairstyle', 'color', 'text'] as const) if (c[k]) out[k] = c[k]!;
  for (const k of ['hairstyleRef', 'colorRef'] as const) if (c[k]) out[k] = typeof c[k] === 'string' ? (c[k] as string) : 'image';
  return out;
}

/** Writes the edit (and optionally e4e / parser) as .onnx files and manifest.json into `dir`. */
export async function exportEdit(editor: FaceEditor, dir: string, conditions: EditConditions = {}, o: ExportOptions = {}): Promise<ExportManifest> {
  await mkdir(dir, { recursive: true });
  const { generator, e4e, mapper, parser, sources } = editor.nets;
  const cond = await editor.embed(conditions);
  const files: ExportManifest['files'] = { edit: await writeModel(dir, 'edit.onnx', editGraph(mapper, generator, cond), `${editor.method}-edit`) };
  if (o.withE4e) files.e4e = await writeModel(dir, 'e4e.onnx', encodeGraph(e4e), 'e4e');
  if (o.withParser && parser) files.parser = await writeModel(dir, 'parser.onnx', parseGraph(parser, 1, generator.config.size), 'parser');
  const manifest: ExportManifest = {
    format: 'clipmapper-edit', version: 1, opset: OPSET, method: editor.method,
    conditions: conditionRecord(conditions), defaultAlpha: editor.defaultAlpha,
    generator: { size: generator.config.size, latent: [generator.nLatent, generator.config.styleDim] },
    e4e: o.withE4e ? { inputSize: editor.sizes.e4e } : null,
    parser: o.withParser && parser ? { size: parserSize(parser, generator.config.size), classes: parserClasses(parser) } : null,
    pixels: { layout: 'NCHW', channels: 'RGB', range: [-1, 1] },
    files,
    sources: Object.fromEntries(Object.entries(sources).map(([k, v]) => [k, String(v)])),
  };
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}
