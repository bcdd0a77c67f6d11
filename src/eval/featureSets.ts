/**
 * Measures on two sets of feature vectors that, unlike the Fréchet distance, can rank models near the
 * real data: KID (Bińkowski et al. 2018), an unbiased squared MMD with the cubic polynomial kernel, whose
 * expectation is 0 for samples of the same distribution at any n; and precision and recall of the
 * feature manifolds (Kynkäänniemi et al. 2019), which report fidelity and diversity apart.
 */
import { Rng } from '../rng';
import { frechetDistance, meanAndCovariance } from './frechet';

/**
 * Rows of d features, with what the measures need of the set alone (its rows' inner products, each
 * row's k-NN radius) computed once: a reference set scored against several sample sets pays for them once.
 */
export class FeatureSet {
  readonly squaredNorms: Float64Array;
  private own?: Float64Array;
  private readonly radiiByK = new Map<number, Float64Array>();

  constructor(
    readonly rows: Float32Array,
    readonly n: number,
    readonly d: number,
  ) {
    this.squaredNorms = Float64Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let k = 0; k < d; k++) s += rows[i * d + k] ** 2;
      return s;
    });
  }

  /** u·v for every pair of its rows. */
  dots(): Float64Array {
    return (this.own ??= dotProducts(this, this));
  }

  /** For each row, the distance to its k-th nearest other row (the radius of its k-NN ball). */
  radii(k: number): Float64Array {
    let radii = this.radiiByK.get(k);
    if (!radii) {
      const dots = this.dots();
      radii = new Float64Array(this.n);
      const row = new Float64Array(this.n);
      for (let i = 0; i < this.n; i++) {
        for (let j = 0; j < this.n; j++) row[j] = distance(this, this, dots, i, j);
        row.sort();
        radii[i] = row[Math.min(k, this.n - 1)]; // row[0] is the row itself (distance 0)
      }
      this.radiiByK.set(k, radii);
    }
    return radii;
  }
}

/** Inner products of every row of a with every row of b ([a.n, b.n]). */
export function dotProducts(a: FeatureSet, b: FeatureSet): Float64Array {
  const { d } = a;
  const out = new Float64Array(a.n * b.n);
  for (let i = 0; i < a.n; i++) {
    for (let j = 0; j < b.n; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a.rows[i * d + k] * b.rows[j * d + k];
      out[i * b.n + j] = s;
    }
  }
  return out;
}

/** The Euclidean distance between row i of a and row j of b, from their inner products `ab`. */
function distance(a: FeatureSet, b: FeatureSet, ab: Float64Array, i: number, j: number): number {
  return Math.sqrt(Math.max(0, a.squaredNorms[i] + b.squaredNorms[j] - 2 * ab[i * b.n + j]));
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
 * KID between x and y: the unbiased MMD² with k(u, v) = (u·v/d + 1)³, over `subsets` random subsets of
 * `subsetSize` rows of each (torch-fidelity's convention), so that its spread is reported beside it.
 * `yx` are y's and x's inner products, where the caller has them.
 */
export function kernelInceptionDistance(x: FeatureSet, y: FeatureSet, options: { subsets?: number; subsetSize?: number; seed?: number } = {}, yx = dotProducts(y, x)): Kid {
  const [nx, ny, d] = [x.n, y.n, x.d];
  // By default subsets of half the smaller set (at most 1000), so that they differ from each other.
  const m = options.subsetSize !== undefined ? Math.min(options.subsetSize, nx, ny) : Math.min(1000, Math.floor(Math.min(nx, ny) / 2));
  if (m < 2) throw new RangeError('KID needs subsets of at least 2 samples');
  const subsets = options.subsets ?? 100;
  const kernel = (g: Float64Array) => g.map((v) => (v / d + 1) ** 3);
  const kxx = kernel(x.dots());
  const kyy = kernel(y.dots());
  const kyx = kernel(yx);
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
        sxy += kyx[iy[b] * nx + ix[a]];
      }
    }
    values.push((sxx + syy) / (m * (m - 1)) - (2 * sxy) / (m * m));
  }
  const kid = values.reduce((a, b) => a + b, 0) / subsets;
  const std = Math.sqrt(values.reduce((a, v) => a + (v - kid) ** 2, 0) / Math.max(1, subsets - 1));
  return { kid, std, subsets, subsetSize: m };
}

/** The share of `count` rows for which some row of the other set makes `inside` true. */
function shareCovered(count: number, others: number, inside: (row: number, other: number) => boolean): number {
  let covered = 0;
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < others; j++) {
      if (inside(i, j)) {
        covered++;
        break;
      }
    }
  }
  return covered / count;
}

/**
 * Precision: the share of generated rows inside the real set's manifold (the union of balls around each
 * real row reaching its k-th nearest real neighbour); recall: the share of real rows inside the generated
 * set's manifold. k = 3, as Kynkäänniemi et al. `rg` are the sets' inner products, where the caller has them.
 */
export function precisionRecall(real: FeatureSet, generated: FeatureSet, k = 3, rg = dotProducts(real, generated)): { precision: number; recall: number } {
  const [rr, gg] = [real.radii(k), generated.radii(k)];
  return {
    precision: shareCovered(generated.n, real.n, (j, i) => distance(real, generated, rg, i, j) <= rr[i]),
    recall: shareCovered(real.n, generated.n, (i, j) => distance(real, generated, rg, i, j) <= gg[j]),
  };
}

/** KID, precision and recall of generated rows against real ones, their inner products computed once. */
export function compareFeatureSets(generated: FeatureSet, real: FeatureSet): { kid: Kid; precision: number; recall: number } {
  const rg = dotProducts(real, generated);
  return { kid: kernelInceptionDistance(generated, real, {}, rg), ...precisionRecall(real, generated, 3, rg) };
}

/** FD, KID, precision and recall of a set of images' features against a reference's. */
export interface FeatureScores {
  n: number;
  fd: number;
  /** KID (unbiased MMD², cubic kernel) and its spread over subsets. */
  kid: number;
  kidStd: number;
  /** Share of the scored images on the reference's feature manifold, and of the reference's on theirs. */
  precision: number;
  recall: number;
}

/** The real images' features that sets are scored against, with their mean and covariance computed once. */
export interface Reference {
  mean: Float64Array;
  cov: Float64Array;
  features: FeatureSet;
}

/** The reference of n rows of d features. */
export function referenceOf(features: Float32Array, n: number, d: number): Reference {
  return { ...meanAndCovariance(features, n, d), features: new FeatureSet(features, n, d) };
}

/** FD, KID, precision and recall of n rows of features against the reference. */
export function scoreFeatures(features: Float32Array, n: number, ref: Reference): FeatureScores {
  const { d } = ref.features;
  const { mean, cov } = meanAndCovariance(features, n, d);
  const { kid, precision, recall } = compareFeatureSets(new FeatureSet(features, n, d), ref.features);
  return { n, fd: frechetDistance(mean, cov, ref.mean, ref.cov, d), kid: kid.kid, kidStd: kid.std, precision, recall };
}
