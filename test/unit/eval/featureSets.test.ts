import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FeatureSet, kernelInceptionDistance, precisionRecall } from '../../../src/eval/featureSets';
import { Rng } from '../../../src/rng';

const D = 16;

/** n rows of D features from N(shift, 1) per feature. */
function gaussian(n: number, seed: number, shift = 0): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(n * D)).map((v) => v + shift);
}

/** n rows around well-separated centres (row i in cluster clusters[i mod length]), spread in 3 of the D dimensions. */
function clustered(n: number, seed: number, clusters: number[]): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n * D);
  for (let i = 0; i < n; i++) {
    const c = clusters[i % clusters.length];
    for (let k = 0; k < D; k++) out[i * D + k] = (k === 3 + c ? 20 : 0) + (k < 3 ? 0.5 * rng.normal() : 0);
  }
  return out;
}

test('KID: two samples of one distribution score about 0 within their spread; a shifted one far above', () => {
  const set = (rows: Float32Array, n: number, d = D) => new FeatureSet(rows, n, d);
  const same = kernelInceptionDistance(set(gaussian(400, 1), 400), set(gaussian(400, 2), 400));
  assert.ok(Math.abs(same.kid) < 3 * same.std + 1e-9, `same: ${same.kid} ± ${same.std}`);
  assert.equal(same.subsetSize, 200);
  const shifted = kernelInceptionDistance(set(gaussian(400, 1, 0.5), 400), set(gaussian(400, 2), 400));
  assert.ok(shifted.kid > 10 * same.std && shifted.kid > 3 * shifted.std, `shifted: ${shifted.kid} ± ${shifted.std}`);
  // the unbiased estimate against a hand computation (one subset: both whole sets)
  const k = (a: number[], b: number[]) => ((a[0] * b[0] + a[1] * b[1]) / 2 + 1) ** 3;
  const [x0, x1, y0, y1] = [[1, 0], [0, 1], [1, 1], [2, 0]];
  const expected = (2 * k(x0, x1)) / 2 + (2 * k(y0, y1)) / 2 - (2 * (k(x0, y0) + k(x0, y1) + k(x1, y0) + k(x1, y1))) / 4;
  const exact = kernelInceptionDistance(set(Float32Array.from([...x0, ...x1]), 2, 2), set(Float32Array.from([...y0, ...y1]), 2, 2), { subsets: 1, subsetSize: 2 });
  assert.ok(Math.abs(exact.kid - expected) < 1e-9, `${exact.kid} vs ${expected}`);
});

test('precision and recall: a copy with half the clusters removed keeps precision and loses half the recall', () => {
  const all = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const set = (rows: Float32Array) => new FeatureSet(rows, 500, D);
  const real = set(clustered(500, 1, all));
  const same = precisionRecall(real, set(clustered(500, 2, all)));
  // not 1 for two finite samples of one distribution: some points fall outside the other's k-NN balls
  assert.ok(same.precision > 0.9 && same.recall > 0.9, JSON.stringify(same));
  const half = precisionRecall(real, set(clustered(500, 3, all.slice(0, 5))));
  assert.ok(half.precision > 0.9, `precision ${half.precision}`);
  assert.ok(Math.abs(half.recall - same.recall / 2) < 0.05, `recall ${half.recall} (whole copy: ${same.recall})`);
  // samples off the real manifold: precision falls, recall of the real clusters falls too
  const off = precisionRecall(real, set(clustered(500, 4, [10, 11, 12])));
  assert.ok(off.precision < 0.05 && off.recall < 0.05, JSON.stringify(off));
});
