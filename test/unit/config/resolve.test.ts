import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveNewRun, resolveResumedRun, withData } from '../../../src/config/resolve';
import { OptionError } from '../../../src/errors';

const optionError = (option: string, detail: RegExp) => (e: unknown) => e instanceof OptionError && e.option === option && detail.test(e.detail);

test('a new run: the defaults, then the recipe (with its U-net changes), then what was given', () => {
  const fc = resolveNewRun('default', {});
  assert.deepEqual(fc.model, { kind: 'fc-unet', classes: 0, width: 2048, height: 28, imageWidth: 28, channels: 1 });
  assert.equal(fc.data.dataset, 'mnist');
  assert.equal(fc.training.optimizer.lr, 1e-3);
  assert.deepEqual(fc.training.lrSchedule, { kind: 'cosine', warmupSteps: 1000, totalSteps: 0 });
  assert.equal(fc.training.ema, 0.9995);
  assert.equal(fc.schedule.prediction, 'epsilon');
  const unet = resolveNewRun('default', { model: 'unet' });
  assert.equal(unet.data.dataset, 'mnist32');
  assert.equal(unet.training.batchSize, 64);
  assert.equal(unet.training.ema, 0.999);
  assert.equal(unet.schedule.prediction, 'v');
  assert.equal(unet.model.kind === 'unet' && unet.model.baseChannels, 16);
  const seed = resolveNewRun('seed', { lr: 3e-4, prediction: 'v', width: 64, seed: 4 });
  assert.equal(seed.training.optimizer.lr, 3e-4);
  assert.equal(seed.training.lrSchedule.kind, 'constant');
  assert.equal(seed.training.ema, 0);
  assert.equal(seed.schedule.prediction, 'v');
  assert.equal(seed.training.seed, 4);
  const folder = resolveNewRun('default', { model: 'unet', data: 'some/folder', imageSize: 16, channels: 1, channelMults: [1, 2] });
  assert.equal(folder.data.dataset, 'folder');
  assert.ok(folder.data.path!.endsWith('some/folder'));
  assert.deepEqual([folder.model.height, folder.model.channels], [16, 1]);
});

test('options of the other model and impossible shapes are refused, naming the option', () => {
  assert.throws(() => resolveNewRun('default', { baseChannels: 8 }), optionError('baseChannels', /option of the convolutional U-net/));
  assert.throws(() => resolveNewRun('default', { model: 'unet', width: 64 }), optionError('width', /option of the fully connected model/));
  assert.throws(() => resolveNewRun('default', { width: 6 }), optionError('width', /multiple of 4/));
  assert.throws(() => resolveNewRun('default', { model: 'unet', baseChannels: 6 }), /invalid U-net: 8 groups do not divide 6 channels/);
});

test('a resumed run keeps its fixed choices, takes the changeable ones, and refuses a change of a fixed one', () => {
  const saved = resolveNewRun('default', { width: 64, seed: 2 });
  const r = resolveResumedRun(saved, { lr: 5e-4, batchSize: 32, ema: 0, lrSchedule: 'constant', warmupSteps: 10, limit: 100, width: 64, seed: 2 });
  assert.equal(r.training.optimizer.lr, 5e-4);
  assert.equal(r.training.batchSize, 32);
  assert.equal(r.training.ema, 0);
  assert.deepEqual(r.training.lrSchedule, { kind: 'constant', warmupSteps: 10, totalSteps: 0 });
  assert.equal(r.data.limit, 100);
  assert.equal(saved.training.optimizer.lr, 1e-3, 'the saved record is not changed');
  assert.throws(() => resolveResumedRun(saved, { width: 128 }), optionError('width', /^128: the checkpoint's run has 64, fixed when a run starts/));
  assert.throws(() => resolveResumedRun(saved, { model: 'unet' }), optionError('model', /^unet: the checkpoint's run has fc/));
  assert.throws(() => resolveResumedRun(saved, { prediction: 'v' }), optionError('prediction', /has epsilon/));
  assert.throws(() => resolveResumedRun(saved, { seed: 3 }), optionError('seed', /has 2/));
  assert.throws(() => resolveResumedRun(saved, { baseChannels: 8 }), optionError('baseChannels', /has no such option/));
});

test('a conditional run: MNIST names its ten digits, a folder its subfolders once loaded; resume keeps them', () => {
  const mnist = resolveNewRun('default', { model: 'unet', conditional: true });
  assert.deepEqual(mnist.data.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.equal(mnist.model.classes, 10);
  assert.equal(mnist.training.labelDropout, 0.1);
  assert.equal(resolveNewRun('default', { conditional: true, labelDropout: 0.2 }).training.labelDropout, 0.2);
  assert.equal(resolveNewRun('default', {}).training.labelDropout, 0);
  assert.throws(() => resolveNewRun('default', { labelDropout: 0.2 }), optionError('labelDropout', /applies to a conditional run/));
  const folder = resolveNewRun('default', { model: 'unet', data: 'some/folder', imageSize: 16, channelMults: [1, 2], conditional: true });
  assert.equal(folder.model.classes, 0, 'known once the data loads');
  const loaded = withData(folder, 30, 2, ['cat', 'dog', 'fox']);
  assert.deepEqual(loaded.data.classes, ['cat', 'dog', 'fox']);
  assert.equal(loaded.model.classes, 3);
  assert.equal(withData(loaded, 30, 2, ['cat', 'dog', 'fox']).model.classes, 3);
  assert.throws(() => withData(loaded, 30, 2, ['cat', 'dog']), optionError('data', /its classes are now cat, dog; the run was started with cat, dog, fox/));
  assert.throws(() => withData(folder, 30, 2, ['cat']), optionError('data', /needs at least two classes/));
  assert.throws(() => resolveResumedRun(mnist, { conditional: false }), optionError('conditional', /the checkpoint's run has true/));
  assert.throws(() => resolveResumedRun(resolveNewRun('default', {}), { labelDropout: 0.3 }), optionError('labelDropout', /the checkpoint's is not/));
});
