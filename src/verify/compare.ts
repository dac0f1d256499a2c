// Comparing our outputs with the golden PyTorch fixtures, and reporting it the same way
// everywhere (tests, `clipmapper verify`).

export interface Tolerance {
  /** absolute tolerance on forward values */
  atol?: number;
  rtol?: number;
  /** gradients: max|g - ref| <= relMax * max|ref| */
  relMax?: number;
}

export interface CompareLine {
  name: string;
  maxAbs: number;
  maxRel: number;
  pass: boolean;
  rule: string;
}

type Num = ArrayLike<number>;

function toNum(a: ArrayLike<number | bigint>): Num {
  if (a instanceof BigInt64Array) return Float64Array.from(a, (v) => Number(v));
  return a as Num;
}

/**
 * Forward values: |x - ref| <= atol + rtol * |ref| elementwise (numpy.allclose).
 * Gradients (tol.relMax set): max|x - ref| <= relMax * max|ref|.
 */
export function compare(name: string, got: ArrayLike<number | bigint>, ref: ArrayLike<number | bigint>, tol: Tolerance): CompareLine {
  const a = toNum(got); const b = toNum(ref);
  if (a.length !== b.length) return { name, maxAbs: Infinity, maxRel: Infinity, pass: false, rule: `size ${a.length} != ${b.length}` };
  let maxAbs = 0; let maxRel = 0; let refMax = 0; let ok = true;
  const atol = tol.atol ?? 1e-4; const rtol = tol.rtol ?? 1e-4;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? NaN : Math.max(maxAbs, d);
    const r = d / Math.max(Math.abs(b[i]), 1e-12);
    if (r > maxRel) maxRel = r;
    refMax = Math.max(refMax, Math.abs(b[i]));
    if (tol.relMax === undefined && !(d <= atol + rtol * Math.abs(b[i]))) ok = false;
  }
  if (Number.isNaN(maxAbs)) ok = false;
  let rule: string;
  if (tol.relMax !== undefined) {
    ok = maxAbs <= tol.relMax * refMax;
    rule = `max|d| <= ${tol.relMax} * ${refMax.toPrecision(3)}`;
  } else rule = `atol ${atol} rtol ${rtol}`;
  return { name, maxAbs, maxRel, pass: ok, rule };
}

export function formatLine(l: CompareLine): string {
  return `${l.pass ? 'PASS' : 'FAIL'}  ${l.name.padEnd(56)} max_abs ${l.maxAbs.toExponential(2)}  max_rel ${l.maxRel.toExponential(2)}  (${l.rule})`;
}
