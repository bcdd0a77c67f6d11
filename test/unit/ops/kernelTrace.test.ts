/**
 * Kernel traces (src/backend/kernelTrace.ts): a replay gives what the function gives through tfjs, bit
 * for bit, with other argument values and weights; holds no memory after; and a function that reads a
 * tensor from outside is not replayed.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { registerBlasBackend } from '../../../src/backend/blasBackend';
import { KernelTrace, TraceCache } from '../../../src/ops/kernelTrace';
import { buildModel } from '../../../src/models/build';
import { unetConfig } from '../../../src/config/defaults';
import { Denoiser } from '../../../src/models/denoiser';
import { lossGradients } from '../../../src/diffusion/loss';
import { assignCopy } from '../../../src/tensors';
import { Rng } from '../../../src/rng';

const available = registerBlasBackend();
const skip = available ? false : 'native kernels not built (apt-get install -y libopenblas-dev && npm run build:native)';

before(async () => {
  if (available) await tf.setBackend('blas');
});

/** A small U-net of every part (two stages, a skip convolution, attention at 8 px) on 16-px images. */
function smallUnet(seed: number): Denoiser {
  return buildModel(unetConfig(16, 1, { baseChannels: 8, channelMults: [1, 2], blocksPerStage: 1, attentionResolutions: [8], groups: 4, heads: 2 }), new Rng(seed));
}

function inputs(batch: number, seed: number): tf.Tensor[] {
  const rng = new Rng(seed);
  return [tf.tensor2d(rng.fillNormal(new Float32Array(batch * 256)), [batch, 256]), tf.tensor1d(Float32Array.from({ length: batch }, () => rng.uniform())), tf.tensor2d(rng.fillNormal(new Float32Array(batch * 256)), [batch, 256])];
}

const valuesOf = (ts: tf.Tensor[]) => ts.map((t) => Array.from(t.dataSync()));

test('a U-net prediction replayed equals the prediction through tfjs, bit for bit, for new inputs and new weights', { skip }, () => {
  const model = smallUnet(1);
  const inner = (x: tf.Tensor, t: tf.Tensor) => () => [model.predict(x as tf.Tensor2D, t as tf.Tensor1D)];
  tf.tidy(() => {
    const [x1, t1] = inputs(3, 2);
    const { trace } = KernelTrace.record([x1, t1], inner(x1, t1));
    assert.ok(trace, 'the U-net is traceable');
    const [x2, t2] = inputs(3, 3);
    const plain = valuesOf(KernelTrace.record([x2, t2], inner(x2, t2)).results);
    assert.deepEqual(valuesOf(trace.run([x2, t2])), plain);
    // the weights are read at each replay
    for (const v of model.variables.values()) assignCopy(v, new Rng(v.size).fillNormal(new Float32Array(v.size)).map((z) => 0.1 * z));
    const changed = valuesOf(KernelTrace.record([x2, t2], inner(x2, t2)).results);
    assert.notDeepEqual(changed, plain);
    assert.deepEqual(valuesOf(trace.run([x2, t2])), changed);
    trace.dispose();
  });
  model.dispose();
});

for (const weighted of [false, true]) test(`the loss and gradients${weighted ? ', weighted by image,' : ''} replayed equal those through tfjs, and replays hold no memory`, { skip }, () => {
  const model = smallUnet(4);
  const traces = new TraceCache();
  const once = (seed: number, cache: TraceCache) =>
    tf.tidy(() => {
      const [x, t, target] = inputs(4, seed);
      const weights = weighted ? tf.tensor2d([0.5 + seed, 1, 2, 0.1], [4, 1]) : undefined;
      const { loss, grads } = lossGradients(model, cache, { xt: x as tf.Tensor2D, tFrac: t as tf.Tensor1D, target: target as tf.Tensor2D, weights });
      return valuesOf([loss, ...grads]);
    });
  once(5, traces); // records
  const replayed = once(6, traces);
  const plain = once(6, new TraceCache()); // a new cache's first call runs through tfjs
  assert.deepEqual(replayed, plain);
  const before = { tensors: tf.memory().numTensors, data: tf.backend().numDataIds() };
  for (let i = 0; i < 3; i++) once(7 + i, traces);
  assert.deepEqual({ tensors: tf.memory().numTensors, data: tf.backend().numDataIds() }, before);
  traces.dispose();
  model.dispose();
});

test('tensors made during the call are constants; a tensor from outside, or a recorded gradient, runs the function each time', { skip }, () => {
  tf.tidy(() => {
    const traces = new TraceCache();
    let calls = 0;
    const affine = (x: tf.Tensor) => () => {
      calls++;
      return [tf.add(tf.mul(x, tf.scalar(3)), tf.tensor1d([1, 2]))];
    };
    const x1 = tf.tensor1d([1, 1]);
    const x2 = tf.tensor1d([5, -2]);
    traces.run([x1], affine(x1));
    assert.deepEqual(Array.from(traces.run([x2], affine(x2))[0].dataSync()), [16, -4]);
    assert.equal(calls, 1, 'replayed, not called again');

    const outside = tf.variable(tf.tensor1d([1, 1]), false);
    const readsOutside = tf.tensor1d([10, 20]);
    let outsideCalls = 0;
    const usesOutside = (x: tf.Tensor) => () => {
      outsideCalls++;
      return [tf.add(tf.add(x, readsOutside), outside)];
    };
    const other = new TraceCache(); // a cache holds one function's traces
    other.run([x1], usesOutside(x1));
    assert.deepEqual(Array.from(other.run([x2], usesOutside(x2))[0].dataSync()), [16, 19]);
    assert.equal(outsideCalls, 2, 'not replayed: it reads a tensor that is neither an argument, a variable nor made in the call');

    const gradient = tf.grad((x: tf.Tensor) => tf.sum(traces.run([x], affine(x))[0]))(x2);
    assert.deepEqual(Array.from(gradient.dataSync()), [3, 3]);
    assert.equal(calls, 2, 'with a gradient recorded, the function runs through tfjs');
    traces.dispose();
    other.dispose();
    outside.dispose();
  });
});
