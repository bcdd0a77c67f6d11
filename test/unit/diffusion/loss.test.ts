/**
 * The training loss (src/training/trainer.ts): meanSquaredError and its written-out gradient equal
 * tfjs's mean(squaredDifference) and its autodiff gradient, on the cpu backend and on blas.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { Rng } from '../../../src/rng';
import { meanSquaredError } from '../../../src/diffusion/loss';

const backends = ['cpu', ...(registerBlasBackend() ? [BLAS_BACKEND] : [])];

test('meanSquaredError and its gradient equal mean(squaredDifference) and its gradient', async () => {
  const rng = new Rng(3);
  for (const backend of backends) {
    await tf.setBackend(backend);
    for (const shape of [[3, 7], [5, 3, 3, 2], [64, 1024]]) {
      const size = shape.reduce((a, b) => a * b, 1);
      const p = tf.tensor(Float32Array.from({ length: size }, () => rng.normal()), shape);
      const t = tf.tensor(Float32Array.from({ length: size }, () => rng.normal()), shape);
      const ours = tf.valueAndGrad((x: tf.Tensor) => tf.mul(meanSquaredError(x, t), 3) as tf.Scalar)(p);
      const theirs = tf.valueAndGrad((x: tf.Tensor) => tf.mul(tf.mean(tf.squaredDifference(x, t)), 3) as tf.Scalar)(p);
      const [v1, v2] = [ours.value.dataSync()[0], theirs.value.dataSync()[0]];
      assert.ok(Math.abs(v1 - v2) <= 1e-6 * Math.abs(v2), `${backend} ${shape}: loss ${v1} vs ${v2}`);
      const g1 = ours.grad.dataSync(), g2 = theirs.grad.dataSync();
      g2.forEach((g, i) => assert.ok(Math.abs(g1[i] - g) <= 1e-6 * Math.abs(g) + 1e-9, `${backend} ${shape}: gradient ${i} ${g1[i]} vs ${g}`));
      tf.dispose([p, t, ours.value, ours.grad, theirs.value, theirs.grad]);
    }
  }
});
