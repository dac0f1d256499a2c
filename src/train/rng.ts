// A seedable RNG whose whole state is four uint32s, so a checkpoint can store it and a resumed
// run draws exactly the numbers the uninterrupted run would have drawn (xoshiro128**).

export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;
  constructor(seed: number | RngState = 0) {
    this.s = new Uint32Array(4);
    if (Array.isArray(seed)) this.s.set(seed);
    else {
      // splitmix32 expands the seed so nearby seeds give unrelated streams
      let x = seed >>> 0;
      for (let i = 0; i < 4; i++) {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        this.s[i] = (z ^ (z >>> 16)) >>> 0;
      }
      if (this.s.every((v) => v === 0)) this.s[0] = 1;
    }
  }
  get state(): RngState { return [this.s[0], this.s[1], this.s[2], this.s[3]]; }

  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }
  /** uniform in [0, 1) with 32 random bits */
  random(): number { return this.nextU32() / 4294967296; }
  /** integer in [0, n) */
  int(n: number): number { return Math.floor(this.random() * n); }
  choice<T>(xs: readonly T[]): T {
    if (!xs.length) throw new Error('choice from an empty list');
    return xs[this.int(xs.length)];
  }
  /** standard normal (Box-Muller; no cached second value so the state is just the four words) */
  normal(): number {
    const u = 1 - this.random();
    const v = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  normals(n: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal();
    return a;
  }
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }
