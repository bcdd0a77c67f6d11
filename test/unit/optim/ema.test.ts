import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { WeightAverage } from '../../../src/optim/ema';
import { saveCheckpoint, loadCheckpoint } from '../../../src/io/checkpoint';
import { loadMnist } from '../../../src/data/mnist';
import { Trainer } from '../../../src/training/trainer';
import { resolveNewRun } from '../../../src/config/resolve';
import { loadPipeline } from '../../../src/pipeline/load';
import { variableFrom } from '../../../src/tensors';
import { assertCleanFailure, runCli, tempDir, useBackend } from '../../helpers';

before(() => useBackend('cpu'));

test('the average follows shadow ← d·shadow + (1 − d)·w with a warmed-up decay', () => {
  const w = new Map([['a', variableFrom(Float32Array.from([1, 2]), [2], true)]]);
  const ema = new WeightAverage(0.999, w);
  assert.equal(ema.decayAt(0), 0.1);
  assert.equal(ema.decayAt(1e9), 0.999);
  w.get('a')!.assign(tf.tensor1d([3, 6]));
  ema.update(w, 0); // d = 0.1: 0.1·[1, 2] + 0.9·[3, 6]
  const got = ema.shadow.get('a')!.dataSync();
  assert.ok(Math.abs(got[0] - 2.8) < 1e-6 && Math.abs(got[1] - 5.6) < 1e-6, `${got}`);
  ema.reset(w);
  assert.deepEqual([...ema.shadow.get('a')!.dataSync()], [3, 6]);
  ema.dispose();
  w.get('a')!.dispose();
});

test('a run with --ema checkpoints the average, resumes it, and samples from it', () => {
  const dir = tempDir();
  const data = loadMnist('train', 32);
  const trainer = new Trainer(resolveNewRun('seed', { width: 16, timesteps: 1000, limit: 32, batchSize: 8, lr: 1e-2, seed: 1, ema: 0.9 }));
  trainer.trainStep(data, [0, 1, 2, 3]);
  const tensorsBefore = tf.memory().numTensors;
  for (let i = 1; i < 4; i++) trainer.trainStep(data, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]);
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensors leak per step');
  saveCheckpoint(dir, trainer.checkpointMeta(null), trainer.tensors());
  const { meta, tensors } = loadCheckpoint(dir);
  assert.equal(meta.training.ema, 0.9);
  const raw = tensors.get('model/in/kernel')!.values, averaged = tensors.get('ema/in/kernel')!.values;
  assert.notDeepEqual(averaged, raw);
  const { model, averaged: fromAverage } = loadPipeline(dir);
  assert.ok(fromAverage);
  assert.deepEqual(model.variables.get('in/kernel')!.dataSync(), averaged);
  model.dispose();
  const resumed = new Trainer(meta, tensors);
  assert.deepEqual(resumed.ema!.shadow.get('in/kernel')!.dataSync(), averaged);
  resumed.dispose();
  trainer.dispose();
});

test('diffuse train --ema writes a checkpoint that sample uses, and refuses a decay of 1', () => {
  const dir = tempDir();
  const r = runCli(['train', '--epochs', '1', '--limit', '128', '--width', '32', '--ema', '0.99', '--out', dir]);
  assert.equal(r.status, 0, r.stderr);
  const s = runCli(['sample', '--checkpoint', dir, '--n', '4', '--out', path.join(dir, 'g.png')]);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stderr, /averaged weights/);
  assert.ok(fs.existsSync(path.join(dir, 'g.png')));
  assertCleanFailure(runCli(['train', '--ema', '1']), /--ema.*\[0, 1\)/);
});
