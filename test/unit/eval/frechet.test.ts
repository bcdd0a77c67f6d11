import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frechetDistance, meanAndCovariance, sqrtPsd, symmetricEigen } from '../../../src/eval/frechet';
import { Rng } from '../../../src/rng';

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
}

test('eigen-decomposition of a matrix with known eigenvalues', () => {
  // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
  const { values } = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);
  const sorted = [...values].sort((a, b) => a - b);
  close(sorted[0], 1, 1e-12, 'λ1');
  close(sorted[1], 3, 1e-12, 'λ2');
});

test('the matrix square root squares back, and is known for simple matrices', () => {
  const root = sqrtPsd(Float64Array.from([4, 0, 0, 9]), 2);
  assert.deepEqual([...root].map((v) => +v.toFixed(12)), [2, 0, 0, 3]);
  // [[5, 4], [4, 5]] = S² with S = [[2, 1], [1, 2]].
  const s = sqrtPsd(Float64Array.from([5, 4, 4, 5]), 2);
  [2, 1, 1, 2].forEach((v, i) => close(s[i], v, 1e-12, `S[${i}]`));
  // A random SPD matrix: √A·√A = A.
  const rng = new Rng(3);
  const d = 12;
  const b = Float64Array.from({ length: d * d }, () => rng.normal());
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) a[i * d + j] += b[i * d + k] * b[j * d + k];
  const r = sqrtPsd(a, d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let v = 0;
      for (let k = 0; k < d; k++) v += r[i * d + k] * r[k * d + j];
      close(v, a[i * d + j], 1e-9 * (1 + Math.abs(a[i * d + j])), `(√A)²[${i},${j}]`);
    }
  }
});

test('Fréchet distance of Gaussians with known answers', () => {
  const d = 3;
  const eye = (s: number) => Float64Array.from({ length: 9 }, (_, i) => (i % 4 === 0 ? s : 0));
  close(frechetDistance(new Float64Array(3), eye(1), new Float64Array(3), eye(1), d), 0, 1e-12, 'same');
  // Means apart by (1, 2, 2): distance ‖Δμ‖² = 9.
  close(frechetDistance(new Float64Array(3), eye(1), Float64Array.from([1, 2, 2]), eye(1), d), 9, 1e-12, 'shifted');
  // Σ₁ = I, Σ₂ = 4I: Tr(I + 4I − 2·2I) = d.
  close(frechetDistance(new Float64Array(3), eye(1), new Float64Array(3), eye(4), d), 3, 1e-12, 'scaled');
});

test('Fréchet distance of Gaussians whose covariances do not commute', () => {
  // Σ₁ = [[2, 1], [1, 1]], Σ₂ = diag(1, 3): Σ₁Σ₂ = [[2, 3], [1, 3]] ≠ Σ₂Σ₁. For 2×2 matrices with positive
  // eigenvalues, Tr √(Σ₁Σ₂) = √(Tr(Σ₁Σ₂) + 2·√det(Σ₁Σ₂)) = √(5 + 2√3).
  const c1 = Float64Array.from([2, 1, 1, 1]);
  const c2 = Float64Array.from([1, 0, 0, 3]);
  const m1 = Float64Array.from([0, 1]);
  const m2 = Float64Array.from([3, -3]);
  const expected = 25 + 3 + 4 - 2 * Math.sqrt(5 + 2 * Math.sqrt(3));
  close(frechetDistance(m1, c1, m2, c2, 2), expected, 1e-10, 'Σ₁ vs Σ₂');
  close(frechetDistance(m2, c2, m1, c1, 2), expected, 1e-10, 'symmetric');
  // Rotating both the same way leaves it unchanged.
  const r = (a: number) => Float64Array.from([Math.cos(a), -Math.sin(a), Math.sin(a), Math.cos(a)]);
  const rot = r(0.7);
  const conj = (c: Float64Array) => {
    const out = new Float64Array(4);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) for (let k = 0; k < 2; k++) for (let l = 0; l < 2; l++) out[i * 2 + j] += rot[i * 2 + k] * c[k * 2 + l] * rot[j * 2 + l];
    return out;
  };
  close(frechetDistance(new Float64Array(2), conj(c1), new Float64Array(2), conj(c2), 2), expected - 25, 1e-10, 'rotated');
});

test('mean and covariance of samples, and FD of a set with itself is 0', () => {
  const rng = new Rng(1);
  const n = 20000, d = 2;
  const x = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const a = rng.normal(), b = rng.normal();
    x[i * 2] = 1 + 2 * a;
    x[i * 2 + 1] = -1 + a + b; // var 2, cov with the first 2
  }
  const { mean, cov } = meanAndCovariance(x, n, d);
  close(mean[0], 1, 0.05, 'μ0');
  close(mean[1], -1, 0.05, 'μ1');
  close(cov[0], 4, 0.15, 'var0');
  close(cov[3], 2, 0.1, 'var1');
  close(cov[1], 2, 0.1, 'cov');
  close(frechetDistance(mean, cov, mean, cov, d), 0, 1e-9, 'self');
});
