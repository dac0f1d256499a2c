// Shared bookkeeping of the verifiers that walk one fixture file key by key (verify_mapper,
// verify_ffclip): tensor access by key, which stored tensors a check covered, and a FAIL line for
// every stored output that none did.
import { toFloat32Array, type TensorData } from '../io/tensor.ts';
import type { CompareLine } from './compare.ts';

export class FixtureChecker {
  readonly lines: CompareLine[] = [];
  protected readonly covered = new Set<string>();
  /** `inputs`: keys that are inputs of the recorded calls, never compared */
  constructor(
    protected readonly tensors: ReadonlyMap<string, TensorData>, protected readonly file: string, private readonly inputs: ReadonlySet<string>,
  ) {}

  has(key: string): boolean { return this.tensors.has(key); }
  get(key: string): Float32Array {
    const t = this.tensors.get(key);
    if (!t) throw new Error(`${this.file}: no tensor '${key}'`);
    return toFloat32Array(t);
  }
  shape(key: string): number[] { return [...this.tensors.get(key)!.shape]; }

  /** A FAIL line for every stored output (under `prefixes`, when given) that no check compared. */
  uncovered(prefixes?: string[]): void {
    for (const k of this.tensors.keys()) {
      if (this.inputs.has(k) || this.covered.has(k) || (prefixes && !prefixes.some((p) => k.startsWith(p)))) continue;
      this.lines.push({ name: `${this.file}:${k}`, maxAbs: NaN, maxRel: NaN, pass: false, rule: 'not checked by this verifier' });
    }
  }
}
