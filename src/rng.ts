/**
 * Seeded random numbers (xoshiro128**), so shuffles, timesteps and noise are reproducible
 * and the generator state can be saved in a checkpoint and restored exactly.
 */
export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;
  /** The last Box–Muller pair drawn (drawPair); doubles, so values are as a returned pair's. */
  private readonly pair = new Float64Array(2);

  constructor(seed: number | RngState) {
    this.s = new Uint32Array(4);
    if (Array.isArray(seed)) {
      this.s.set(seed);
    } else {
      // splitmix32 expands one integer seed into four well-mixed state words.
      let x = seed >>> 0;
      for (let i = 0; i < 4; i++) {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        this.s[i] = (z ^ (z >>> 16)) >>> 0;
      }
    }
    if (this.s.every((v) => v === 0)) this.s[0] = 1;
  }

  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Rewinds (or forwards) the generator to a state from state(). */
  setState(state: RngState): void {
    this.s.set(state);
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box–Muller; the generator holds no spare, so its state is just s). */
  normal(): number {
    this.drawPair();
    return this.pair[0];
  }

  /** Fills `out` with standard normals, using both values of each Box–Muller pair. */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i += 2) {
      this.drawPair();
      out[i] = this.pair[0];
      if (i + 1 < out.length) out[i + 1] = this.pair[1];
    }
    return out;
  }

  /**
   * Advances past the draws fillNormal makes for `count` values without computing them (a few ns a
   * value): a thread then draws a later part of one batch's noise as normalsFrom(), in parallel.
   */
  skipNormals(count: number): void {
    for (let i = 0; i < count; i += 2) {
      while (this.nextUint32() === 0); // as drawPair's first uniform: drawn again while 0
      this.nextUint32();
    }
  }

  /**
   * Values [start, end) of what fillNormal writes into an array, this generator standing where that
   * array's noise begins: the same values whichever thread draws which part of the array.
   */
  normalsFrom(start: number, end: number): Float32Array {
    const odd = start % 2; // a pair straddles `start`: draw it whole, keep its second value
    this.skipNormals(start - odd);
    return this.fillNormal(new Float32Array(end - start + odd)).subarray(odd);
  }

  /**
   * The next Box–Muller pair into `pair` (a field, not a returned array: fillNormal's [a, b] per pair
   * was 13% of a U-net step's JavaScript garbage).
   */
  private drawPair(): void {
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * this.uniform();
    this.pair[0] = r * Math.cos(theta);
    this.pair[1] = r * Math.sin(theta);
  }

  /** A random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    return p;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
