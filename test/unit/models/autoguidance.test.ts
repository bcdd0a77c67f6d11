import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { AutoGuided } from '../../../src/models/autoguidance';
import { FcUnet, fcUnetConfig } from '../../../src/models/fcUnet';
import { Rng } from '../../../src/rng';
import { useBackend } from '../../helpers';

before(() => useBackend('cpu'));

test('autoguidance predicts bad + w·(good − bad): the good model at w = 1, the bad one at w = 0', () => {
  const good = new FcUnet(fcUnetConfig(16), new Rng(1));
  const bad = new FcUnet(fcUnetConfig(16), new Rng(2));
  const x = tf.randomNormal([3, 784], 0, 1, 'float32', 7) as tf.Tensor2D;
  const t = tf.tensor1d([0.1, 0.5, 0.9]);
  const g = good.predict(x, t).dataSync(), b = bad.predict(x, t).dataSync();
  for (const w of [0, 1, 2.5]) {
    const guided = new AutoGuided(good, bad, w);
    const before = tf.memory().numTensors;
    const out = guided.predict(x, t);
    assert.equal(tf.memory().numTensors, before + 1, 'only the result is left');
    const y = out.dataSync();
    out.dispose();
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - (b[i] + w * (g[i] - b[i]))));
    assert.ok(worst < 1e-5, `w = ${w}: ${worst}`);
    assert.equal(guided.variables, good.variables);
  }
  new AutoGuided(good, bad, 2).dispose();
  assert.ok(good.variables.get('in/kernel')!.isDisposed && bad.variables.get('in/kernel')!.isDisposed, 'disposing it disposes both models');
  tf.dispose([x, t]);
});
