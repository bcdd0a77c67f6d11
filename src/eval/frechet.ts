/**
 * The Fréchet distance between Gaussians fitted to two feature sets (the measure behind FID):
 * ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), with Tr((Σ₁Σ₂)^½) = Tr((Σ₁^½ Σ₂ Σ₁^½)^½), whose argument is
 * symmetric positive semi-definite, so only symmetric eigendecompositions are needed.
 */

/** A d×d symmetric matrix, row-major. */
export type Matrix = Float64Array;

/** Mean and covariance (divided by n − 1) of n rows of d features. */
export function meanAndCovariance(features: ArrayLike<number>, n: number, d: number): { mean: Float64Array; cov: Matrix } {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += features[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const cov = new Float64Array(d * d);
  const centered = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) centered[j] = features[i * d + j] - mean[j];
    for (let a = 0; a < d; a++) {
      const ca = centered[a];
      if (ca === 0) continue;
      for (let b = a; b < d; b++) cov[a * d + b] += ca * centered[b];
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = cov[a * d + b] / Math.max(1, n - 1);
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  }
  return { mean, cov };
}

/**
 * Eigenvalues and eigenvectors of a symmetric matrix by cyclic Jacobi rotations: slow for large d but
 * simple and accurate to machine precision. Returns values and vectors (columns of V, row-major).
 */
export function symmetricEigen(matrix: Matrix, d: number, maxSweeps = 60): { values: Float64Array; vectors: Matrix } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += a[p * d + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          // A ← Jᵀ A J, applied as column then row rotations.
          const akp = a[k * d + p], akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k], aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k * d + p], vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(d);
  for (let i = 0; i < d; i++) values[i] = a[i * d + i];
  return { values, vectors: v };
}

/** The symmetric positive semi-definite square root: V·diag(√max(λ, 0))·Vᵀ. */
export function sqrtPsd(matrix: Matrix, d: number): Matrix {
  const { values, vectors } = symmetricEigen(matrix, d);
  const out = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const root = Math.sqrt(Math.max(values[k], 0));
    if (root === 0) continue;
    for (let i = 0; i < d; i++) {
      const vik = vectors[i * d + k] * root;
      if (vik === 0) continue;
      for (let j = 0; j < d; j++) out[i * d + j] += vik * vectors[j * d + k];
    }
  }
  return out;
}

function multiply(a: Matrix, b: Matrix, d: number): Matrix {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let k = 0; k < d; k++) {
      const aik = a[i * d + k];
      if (aik === 0) continue;
      for (let j = 0; j < d; j++) out[i * d + j] += aik * b[k * d + j];
    }
  }
  return out;
}

export function frechetDistance(m1: Float64Array, c1: Matrix, m2: Float64Array, c2: Matrix, d: number): number {
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (m1[i] - m2[i]) ** 2;
  const root1 = sqrtPsd(c1, d);
  const inner = multiply(multiply(root1, c2, d), root1, d);
  // Symmetrize against rounding before the eigendecomposition.
  for (let i = 0; i < d; i++) for (let j = i + 1; j < d; j++) inner[i * d + j] = inner[j * d + i] = (inner[i * d + j] + inner[j * d + i]) / 2;
  const { values } = symmetricEigen(inner, d);
  let traceRoot = 0;
  for (const v of values) traceRoot += Math.sqrt(Math.max(v, 0));
  let trace = 0;
  for (let i = 0; i < d; i++) trace += c1[i * d + i] + c2[i * d + i];
  return Math.max(0, meanTerm + trace - 2 * traceRoot);
}
