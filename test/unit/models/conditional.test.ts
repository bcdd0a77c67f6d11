/**
 * Class conditioning (Ho & Salimans 2022's classifier-free guidance): labels reach both models, their
 * "no class" is what an absent label means, guidance at w = 1 and w = 0 is the conditional and the
 * unconditional prediction, the label dropout comes from the run's generator, and data-parallel
 * training and a checkpoint's round trip keep the labels' effect.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { resolveNewRun } from '../../../src/config/resolve';
import { ImageSet } from '../../../src/data/mnist';
import { saveCheckpoint } from '../../../src/io/checkpoint';
import { buildModel } from '../../../src/models/build';
import { ClassifierFree } from '../../../src/models/classifierFree';
import { Denoiser } from '../../../src/models/denoiser';
import { checkGuide, loadPipeline } from '../../../src/pipeline/load';
import { Rng } from '../../../src/rng';
import { Trainer } from '../../../src/training/trainer';
import { tempDir } from '../../helpers';

const available = registerBlasBackend();
const skip = available ? false : 'native kernels not built (apt-get install -y libopenblas-dev && npm run build:native)';

/** A small conditional 16-px U-net over three classes, or the FC net over them. */
const UNET = { model: 'unet', data: 'test-images', imageSize: 16, channels: 1, baseChannels: 8, channelMults: [1, 2], attentionResolutions: [8], limit: 0, batchSize: 6, conditional: true } as never;
const withClasses = (record: ReturnType<typeof resolveNewRun>, classes = 3) => ({ ...record, model: { ...record.model, classes }, data: { ...record.data, classes: ['a', 'b', 'c'].slice(0, classes) } });

function images(count: number, size: number, seed: number): ImageSet {
  const rng = new Rng(seed);
  return { count, height: size, width: size, channels: 1, data: Float32Array.from({ length: count * size * size }, () => 2 * rng.uniform() - 1), labels: Int32Array.from({ length: count }, (_, i) => i % 3), classNames: ['a', 'b', 'c'] };
}

const values = (f: () => tf.Tensor) => tf.tidy(() => f().dataSync() as Float32Array).slice();

function inputs(batch: number, pixels: number) {
  const rng = new Rng(7);
  return { x: tf.tensor2d(Float32Array.from({ length: batch * pixels }, () => rng.normal()), [batch, pixels]), t: tf.tensor1d(Float32Array.from({ length: batch }, (_, i) => (i + 1) / (batch + 1))) };
}

before(async () => {
  await tf.setBackend('cpu');
});

test('both models see the label: classes differ, and an absent label is the learned "no class"', () => {
  for (const record of [withClasses(resolveNewRun('default', UNET)), withClasses(resolveNewRun('default', { width: 16, conditional: true, data: 'x', imageSize: 8, channels: 1 } as never))]) {
    const model = buildModel(record.model, new Rng(1));
    const { x, t } = inputs(3, 8 * 8 * (record.model.kind === 'unet' ? 4 : 1));
    const xs = record.model.kind === 'unet' ? x : x.slice([0, 0], [3, 64]);
    const a = values(() => model.predict(xs as tf.Tensor2D, t, tf.tensor1d([0, 0, 0])));
    const b = values(() => model.predict(xs as tf.Tensor2D, t, tf.tensor1d([1, 1, 1])));
    const none = values(() => model.predict(xs as tf.Tensor2D, t, tf.tensor1d([3, 3, 3])));
    const absent = values(() => model.predict(xs as tf.Tensor2D, t));
    assert.ok(a.some((v, i) => v !== b[i]), `${record.model.kind}: class 0 and class 1 predict the same`);
    assert.deepEqual(absent, none, `${record.model.kind}: an absent label is "no class"`);
    model.dispose();
  }
});

test('classifier-free guidance: w = 1 is the conditional prediction and w = 0 the unconditional one, bit for bit; w = 3 extrapolates', () => {
  const record = withClasses(resolveNewRun('default', UNET));
  const model = buildModel(record.model, new Rng(2));
  const { x, t } = inputs(4, 256);
  const y = tf.tensor1d([0, 1, 2, 1]);
  const conditional = values(() => model.predict(x, t, y));
  const unconditional = values(() => model.predict(x, t));
  assert.deepEqual(values(() => new ClassifierFree(model, 1).predict(x, t, y)), conditional);
  assert.deepEqual(values(() => new ClassifierFree(model, 0).predict(x, t, y)), unconditional);
  const three = values(() => new ClassifierFree(model, 3).predict(x, t, y));
  three.forEach((v, i) => assert.ok(Math.abs(v - (unconditional[i] + 3 * (conditional[i] - unconditional[i]))) < 1e-5, `${i}: ${v}`));
  assert.deepEqual(values(() => new ClassifierFree(model, 3).predict(x, t)), unconditional, 'no labels: unconditional');
  model.dispose();
});

/** Weights after `steps` updates of a conditional U-net from seed 4 on `workers` threads. */
function train(workers: number, labelDropout: number, steps = 3): Float32Array[] {
  const record = withClasses(resolveNewRun('default', { ...(UNET as object), labelDropout, lr: 1e-3, seed: 4 } as never));
  const trainer = new Trainer(record, undefined, { workers });
  const data = images(6 * steps, 16, 9);
  for (let s = 0; s < steps; s++) trainer.trainStep(data, Array.from({ length: 6 }, (_, j) => s * 6 + j));
  const weights = [...trainer.model.variables.values()].map((v) => (v.dataSync() as Float32Array).slice());
  trainer.dispose();
  return weights;
}

test('label dropout comes from the run\'s generator: a seed repeats the run; another dropout is another run', { skip }, async () => {
  await tf.setBackend(BLAS_BACKEND);
  try {
    const a = train(1, 0.5);
    assert.deepEqual(train(1, 0.5), a, 'the same seed, the same weights');
    const other = train(1, 0.2);
    assert.ok(other.some((w, k) => w.some((v, j) => v !== a[k][j])), 'dropout 0.5 trains otherwise than 0.2');
    // on two threads (the labels travel to the worker with the images) the run follows the one-thread one
    const shared = train(2, 0.5);
    let worst = 0;
    a.forEach((w, k) => w.forEach((v, j) => (worst = Math.max(worst, Math.abs(shared[k][j] - v)))));
    assert.ok(worst < 2e-5, `two threads: weights differ by up to ${worst}`);
  } finally {
    await tf.setBackend('cpu');
  }
});

test('a conditional checkpoint loads for sampling with the same predictions by class', () => {
  const record = withClasses(resolveNewRun('default', UNET));
  const trainer = new Trainer(record);
  trainer.trainStep(images(6, 16, 3), [0, 1, 2, 3, 4, 5]);
  const dir = tempDir();
  saveCheckpoint(dir, trainer.checkpointMeta(0.5), trainer.tensors());
  const { x, t } = inputs(3, 256);
  const y = tf.tensor1d([2, 0, 1]);
  const averaged = trainer.averagedModel() ?? trainer.model;
  const expected = values(() => averaged.predict(x, t, y));
  const pipeline = loadPipeline(dir);
  const loaded: Denoiser = pipeline.model;
  assert.equal(pipeline.record.model.classes, 3);
  assert.deepEqual(pipeline.record.data.classes, ['a', 'b', 'c']);
  assert.deepEqual(values(() => loaded.predict(x, t, y)), expected);
  loaded.dispose();
  trainer.dispose();
  assert.ok(fs.existsSync(path.join(dir, 'checkpoint.json')));
});

test('a guide must read the labels as the checkpoint does: the same classes, or none', () => {
  const record = withClasses(resolveNewRun('default', UNET));
  checkGuide(record, record, 'same');
  checkGuide(record, resolveNewRun('default', { ...(UNET as object), conditional: false } as never), 'unconditional');
  assert.throws(() => checkGuide(record, withClasses(resolveNewRun('default', UNET), 2), 'fewer'), /fewer: its classes \(a, b\) are not the checkpoint's \(a, b, c\)/);
  assert.throws(() => resolveNewRun('default', { conditional: true, labelDropout: 0 }), /must train its "no class"/);
});
