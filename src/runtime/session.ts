// The only module that talks to ONNX Runtime (Node). Graphs are serialised once, and sessions
// are created once per model and cached by the model's hash.
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { toOnnx } from '../graph/serialize.ts';
import type { DType, Tensor, TypedArray } from '../graph/graph.ts';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';

export interface RuntimeSettings {
  executionProvider: ExecutionProvider;
  /** intra-op threads; 0 = ORT's default (all cores) */
  threads: number;
  /**
   * Let ORT's pool threads spin-wait after their work (ORT's default). Off here: every session
   * has its own pool, and a process that alternates sessions (a VJP pair, a training step beside
   * mapping/text/preview sessions) has the idle pools' spinning threads compete with the running
   * one for the cores — measured 2x slower tiny training steps and a 2x slower StyleGAN2-256
   * forward after its VJP session ran, on 2 cores. CLIPMAPPER_SPIN=1 turns it back on.
   */
  allowSpinning: boolean;
}
export const settings: RuntimeSettings = {
  executionProvider: (process.env.CLIPMAPPER_EP as ExecutionProvider) || 'cpu',
  threads: Number(process.env.CLIPMAPPER_THREADS ?? 0),
  allowSpinning: process.env.CLIPMAPPER_SPIN === '1',
};

export interface HostTensor { data: TypedArray; shape: number[]; dtype?: DType }

const ORT_TYPE: Record<DType, ort.Tensor.Type> = {
  float32: 'float32', float16: 'float16', float64: 'float64', int64: 'int64', int32: 'int32', int8: 'int8', uint8: 'uint8', bool: 'bool',
};

function checkProvider(ep: ExecutionProvider): void {
  const backends = ort.listSupportedBackends?.() ?? [];
  const b = backends.find((x: { name: string }) => x.name === ep);
  if (!b) {
    throw new Error(`execution provider '${ep}' is not available in this onnxruntime-node build (available: ${backends.map((x: { name: string }) => x.name).join(', ')})`);
  }
}

/** What a user can do about a GPU provider that is listed but cannot start (ORT's own message kept at the end). */
const PROVIDER_HINT: Partial<Record<ExecutionProvider, string>> = {
  cuda: 'it needs an NVIDIA GPU with its driver, CUDA 12 / cuDNN 9, and the CUDA binaries that onnxruntime-node\'s install ' +
    'script downloads (not fetched when ONNXRUNTIME_NODE_INSTALL=skip)',
  webgpu: 'it needs a GPU adapter: on Linux a Vulkan driver and the loader libvulkan.so.1',
};

function providerError(ep: ExecutionProvider, e: unknown): Error {
  const msg = e instanceof Error ? e.message : String(e);
  if (ep === 'cpu') return e instanceof Error ? e : new Error(msg);
  return new Error(`execution provider '${ep}' could not start: ${PROVIDER_HINT[ep] ?? 'see below'}; ` +
    `use executionProvider 'cpu' (CLIPMAPPER_EP=cpu) otherwise. ONNX Runtime said: ${msg.split('\n')[0].slice(0, 400)}`, { cause: e });
}

const cache = new Map<string, Promise<ort.InferenceSession>>();

export interface CompileOptions { executionProvider?: ExecutionProvider; threads?: number; name?: string }

/** A compiled graph: feed named inputs, get named outputs. */
export class Compiled {
  constructor(
    readonly session: ort.InferenceSession,
    readonly inputs: Map<string, { shape: number[]; dtype: DType }>,
    readonly outputNames: string[],
    readonly modelBytes: number,
  ) {}

  async run(feeds: Record<string, HostTensor | TypedArray>): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, spec] of this.inputs) {
      const f = feeds[name];
      if (f === undefined) throw new Error(`missing input '${name}' [${spec.shape.join(', ')}]`);
      const data = ArrayBuffer.isView(f) ? (f as TypedArray) : (f as HostTensor).data;
      const n = spec.shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) throw new Error(`input '${name}': ${data.length} values, expected [${spec.shape.join(', ')}] = ${n}`);
      ortFeeds[name] = new ort.Tensor(ORT_TYPE[spec.dtype], data as never, spec.shape);
    }
    for (const k of Object.keys(feeds)) {
      if (!this.inputs.has(k)) throw new Error(`unknown input '${k}' (inputs: ${[...this.inputs.keys()].join(', ')})`);
    }
    const res = await this.session.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const name of this.outputNames) {
      const t = res[name];
      out[name] = { data: t.data as TypedArray, shape: [...t.dims], dtype: t.type as DType };
    }
    return out;
  }
}

/** Serialise and create (or reuse) a session for the graph that computes `outputs`. */
export async function compile(outputs: Record<string, Tensor>, opts: CompileOptions = {}): Promise<Compiled> {
  const bytes = toOnnx(outputs, { name: opts.name });
  return compileBytes(bytes, Object.values(outputs)[0].graph.inputs, Object.keys(outputs), opts);
}

export async function compileBytes(bytes: Uint8Array, graphInputs: Tensor[], outputNames: string[], opts: CompileOptions = {}): Promise<Compiled> {
  const ep = opts.executionProvider ?? settings.executionProvider;
  const threads = opts.threads ?? settings.threads;
  checkProvider(ep);
  const key = createHash('sha256').update(bytes).update(`|${ep}|${threads}|${settings.allowSpinning ? 'spin' : 'nospin'}`).digest('hex');
  let p = cache.get(key);
  if (!p) {
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
    };
    if (threads > 0) so.intraOpNumThreads = threads;
    if (!settings.allowSpinning) {
      // session config entries session.intra_op.allow_spinning / session.inter_op.allow_spinning
      so.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
    }
    p = ort.InferenceSession.create(bytes, so).catch((e: unknown) => { throw providerError(ep, e); });
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  const session = await p;
  const inputs = new Map<string, { shape: number[]; dtype: DType }>();
  for (const t of graphInputs) if (session.inputNames.includes(t.name!)) inputs.set(t.name!, { shape: [...t.shape], dtype: t.dtype });
  return new Compiled(session, inputs, outputNames, bytes.length);
}

/** Drop cached sessions (frees their memory once no Compiled refers to them). */
export function clearSessionCache(): void { cache.clear(); }

/** One-shot convenience: compile and run. */
export async function evaluate(outputs: Record<string, Tensor>, feeds: Record<string, HostTensor | TypedArray> = {}, opts: CompileOptions = {}): Promise<Record<string, HostTensor>> {
  const c = await compile(outputs, opts);
  return c.run(feeds);
}
