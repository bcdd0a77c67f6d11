import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint } from '../../../src/io/checkpoint';
import { loadMnist } from '../../../src/data/mnist';
import { Trainer } from '../../../src/training/trainer';
import { resolveNewRun } from '../../../src/config/resolve';
import { loadPipeline } from '../../../src/pipeline/load';
import { tempDir, useBackend } from '../../helpers';
import { RunRecord } from '../../../src/config/runRecord';

before(() => useBackend('cpu'));

function meta(width: number): RunRecord {
  return { ...resolveNewRun('seed', { width, timesteps: 1000, limit: 32, batchSize: 8, lr: 1e-3, seed: 3 }), data: { dataset: 'mnist', flip: false, limit: 32, count: 32, conditional: false, classes: [] } };
}

function predict(model: { predict(x: tf.Tensor2D, t: tf.Tensor1D): tf.Tensor2D }): Float32Array {
  return tf.tidy(() => model.predict(tf.ones([2, 784]).mul(0.3) as tf.Tensor2D, tf.tensor1d([0.1, 0.9])).dataSync() as Float32Array);
}

test('a checkpoint round trip gives identical outputs, optimizer state and RNG state', () => {
  const dir = tempDir();
  const data = loadMnist('train', 32);
  const trainer = new Trainer(meta(32));
  trainer.trainStep(data, [0, 1, 2, 3]);
  trainer.epoch = 1;
  saveCheckpoint(dir, trainer.checkpointMeta(0.5), trainer.tensors());

  const { meta: saved, tensors } = loadCheckpoint(dir);
  assert.equal(saved.training.epoch, 1);
  assert.equal(saved.training.step, 1);
  const restored = new Trainer(saved, tensors);
  assert.deepEqual(predict(restored.model), predict(trainer.model));
  // The next step from the restored trainer equals the next step of the original.
  assert.equal(restored.trainStep(data, [4, 5]), trainer.trainStep(data, [4, 5]));
  assert.deepEqual(predict(restored.model), predict(trainer.model));
  const { model } = loadPipeline(dir);
  assert.deepEqual(model.config, { kind: 'fc-unet', classes: 0, width: 32, height: 28, imageWidth: 28, channels: 1 });
  model.dispose();
  restored.dispose();
  trainer.dispose();
});

test('saving replaces the previous weights file and leaves no temporary files', () => {
  const dir = tempDir();
  const trainer = new Trainer(meta(16));
  saveCheckpoint(dir, trainer.checkpointMeta(null), trainer.tensors());
  trainer.epoch = 1;
  saveCheckpoint(dir, trainer.checkpointMeta(null), trainer.tensors());
  const files = fs.readdirSync(dir).sort();
  assert.deepEqual(files, [CHECKPOINT_FILE, 'weights-00001-0.bin']);
  trainer.dispose();
});

test('missing, corrupt and truncated checkpoints are refused with clear errors', () => {
  const dir = tempDir();
  assert.throws(() => loadCheckpoint(dir), /no checkpoint in/);
  const trainer = new Trainer(meta(16));
  saveCheckpoint(dir, trainer.checkpointMeta(null), trainer.tensors());
  trainer.dispose();
  const json = path.join(dir, CHECKPOINT_FILE);
  const good = fs.readFileSync(json, 'utf8');
  const weights = path.join(dir, JSON.parse(good).weights);
  fs.truncateSync(weights, 100);
  assert.throws(() => loadCheckpoint(dir), /corrupt checkpoint: .* has 100 bytes/);
  fs.writeFileSync(json, good.slice(0, 50));
  assert.throws(() => loadCheckpoint(dir), /not valid JSON/);
  fs.writeFileSync(json, '{"hello": 1}');
  assert.throws(() => loadCheckpoint(dir), /not a diffuse checkpoint/);
});

test('a checkpoint whose tensors do not fit its recorded architecture is refused', () => {
  const dir = tempDir();
  const trainer = new Trainer(meta(16));
  saveCheckpoint(dir, trainer.checkpointMeta(null), trainer.tensors());
  trainer.dispose();
  const json = path.join(dir, CHECKPOINT_FILE);
  const file = JSON.parse(fs.readFileSync(json, 'utf8'));
  file.model.width = 32;
  fs.writeFileSync(json, JSON.stringify(file));
  assert.throws(() => loadPipeline(dir), /does not match its model: model\/.* has shape/);
  file.model.kind = 'transformer';
  fs.writeFileSync(json, JSON.stringify(file));
  assert.throws(() => loadPipeline(dir), /unknown model kind "transformer"/);
});
