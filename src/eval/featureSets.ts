/**
 * Measures on two sets of feature vectors that, unlike the Fréchet distance, can rank models near the
 * real data: KID (Bińkowski et al. 2018), an unbiased squared MMD with the cubic polynomial kernel, whose
 * expectation is 0 for samples of the same distribution at any n; and precision and recall of the
 * feature manifolds (Kynkäänniemi et al. 2019), which report fidelity and diversity apart.
 */
import { Rng } from '../rng';

/** Inner products (or, with `distances`, Euclidean distances) of every row of a with every row of b. */
function gram(a: Float32Array, na: number, b: Float32Array, nb: number, d: number, distances = false): Float64Array {
  const out = new Float64Array(na * nb);
  const norms = (x: Float32Array, n: number) => Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[i * d + k] ** 2;
    return s;
  });
  const [na2, nb2] = distances ? [norms(a, na), norms(b, nb)] : [null, null];
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k] * b[j * d + k];
      out[i * nb + j] = distances ? Math.sqrt(Math.max(0, na2![i] + nb2![j] - 2 * s)) : s;
    }
  }
  return out;
}

export interface Kid {
  /** Mean over the subsets of the unbiased squared MMD. */
  kid: number;
  /** Its standard deviation over the subsets. */
  std: number;
  subsets: number;
  subsetSize: number;
}

/**
 * KID between x (nx rows) and y (ny rows) of d features: the unbiased MMD² with k(u, v) = (u·v/d + 1)³,
 * over `subsets` random subsets of `subsetSize` rows of each (torch-fidelity's convention), so that its
 * spread is reported beside it.
 */
export function kernelInceptionDistance(x: Float32Array, nx: number, y: Float32Array, ny: number, d: number, options: { subsets?: number; subsetSize?: number; seed?: number } = {}): Kid {
  // By default subsets of half the smaller set (at most 1000), so that they differ from each other.
  const m = options.subsetSize !== undefined ? Math.min(options.subsetSize, nx, ny) : Math.min(1000, Math.floor(Math.min(nx, ny) / 2));
  if (m < 2) throw new RangeError('KID needs subsets of at least 2 samples');
  const subsets = options.subsets ?? 100;
  const kernel = (g: Float64Array) => g.map((v) => (v / d + 1) ** 3);
  const kxx = kernel(gram(x, nx, x, nx, d));
  const kyy = kernel(gram(y, ny, y, ny, d));
  const kxy = kernel(gram(x, nx, y, ny, d));
  const rng = new Rng(options.seed ?? 0);
  const values: number[] = [];
  for (let s = 0; s < subsets; s++) {
    const ix = rng.permutation(nx).subarray(0, m);
    const iy = rng.permutation(ny).subarray(0, m);
    let sxx = 0;
    let syy = 0;
    let sxy = 0;
    for (let a = 0; a < m; a++) {
      for (let b = 0; b < m; b++) {
        if (a !== b) {
          sxx += kxx[ix[a] * nx + ix[b]];
          syy += kyy[iy[a] * ny + iy[b]];
        }
        sxy += kxy[ix[a] * ny + iy[b]];
      }
    }
    values.push((sxx + syy) / (m * (m - 1)) - (2 * sxy) / (m * m));
  }
  const kid = values.reduce((a, b) => a + b, 0) / subsets;
  const std = Math.sqrt(values.reduce((a, v) => a + (v - kid) ** 2, 0) / Math.max(1, subsets - 1));
  return { kid, std, subsets, subsetSize: m };
}

/** For each row, the distance to its k-th nearest other row (the radius of its k-NN ball). */
function kthNeighbourRadii(dist: Float64Array, n: number, k: number): Float64Array {
  const radii = new Float64Array(n);
  const row = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    row.set(dist.subarray(i * n, (i + 1) * n));
    row.sort();
    radii[i] = row[Math.min(k, n - 1)]; // row[0] is the row itself (distance 0)
  }
  return radii;
}

/**
 * Precision: the share of generated rows inside the real set's manifold (the union of balls around each
 * real row reaching its k-th nearest real neighbour); recall: the share of real rows inside the generated
 * set's manifold. k = 3, as Kynkäänniemi et al.
 */
export function precisionRecall(real: Float32Array, nr: number, generated: Float32Array, ng: number, d: number, k = 3): { precision: number; recall: number } {
  const rr = kthNeighbourRadii(gram(real, nr, real, nr, d, true), nr, k);
  const gg = kthNeighbourRadii(gram(generated, ng, generated, ng, d, true), ng, k);
  const rg = gram(real, nr, generated, ng, d, true);
  let precise = 0;
  for (let j = 0; j < ng; j++) {
    for (let i = 0; i < nr; i++) {
      if (rg[i * ng + j] <= rr[i]) {
        precise++;
        break;
      }
    }
  }
  let recalled = 0;
  for (let i = 0; i < nr; i++) {
    for (let j = 0; j < ng; j++) {
      if (rg[i * ng + j] <= gg[j]) {
        recalled++;
        break;
      }
    }
  }
  return { precision: precise / ng, recall: recalled / nr };
}
