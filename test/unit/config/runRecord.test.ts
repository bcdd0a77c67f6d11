import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RUN_RECORD_VERSION, migrateRunRecord } from '../../../src/config/runRecord';
import { loadCheckpoint } from '../../../src/io/checkpoint';
import { resolveNewRun } from '../../../src/config/resolve';
import { ROOT, tempDir } from '../../helpers';

const V1 = path.join(ROOT, 'test', 'fixtures', 'v1-fc');

test('a stored version-1 checkpoint loads with every field of the current record filled in', () => {
  const raw = JSON.parse(fs.readFileSync(path.join(V1, 'checkpoint.json'), 'utf8'));
  assert.equal(raw.version, 1);
  assert.equal(raw.model.channels, undefined);
  assert.equal(raw.schedule.prediction, undefined);
  const { meta } = loadCheckpoint(V1);
  assert.deepEqual(meta.model, { kind: 'fc-unet', classes: 0, width: 4, height: 28, imageWidth: 28, channels: 1 });
  assert.equal(meta.schedule.prediction, 'epsilon');
  assert.equal(meta.training.ema, 0);
  assert.deepEqual(meta.sampling, { clipDenoised: false, sampler: 'ancestral', steps: null });
  assert.equal(meta.training.epoch, 1);
});

test('the oldest version-1 records (no average, rate schedule, sampler or output-head fields) get what their readers assumed', () => {
  const record = {
    model: { kind: 'unet', height: 32, imageWidth: 32, channels: 1, baseChannels: 8, channelMults: [1, 2], blocksPerStage: 1, attentionResolutions: [8], groups: 8, heads: 4 },
    schedule: { kind: 'linear', timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
    data: { dataset: 'mnist32', limit: 0, count: 60000 },
    training: { epoch: 3, step: 10, batchSize: 64, optimizer: { kind: 'adam', lr: 1e-4, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, seed: 0, rng: { s: [1, 2, 3, 4] }, loss: 0.1 },
  };
  const r = migrateRunRecord(record, 1, 'old.json');
  assert.equal(r.model.kind === 'unet' && r.model.outputNorm, true);
  assert.equal(r.schedule.prediction, 'epsilon');
  assert.equal(r.training.ema, 0);
  assert.deepEqual(r.training.lrSchedule, { kind: 'constant', warmupSteps: 0, totalSteps: 0 });
  assert.deepEqual(r.sampling, { clipDenoised: false, sampler: 'ancestral', steps: null });
  assert.equal((record.model as { outputNorm?: boolean }).outputNorm, undefined, 'the input is not changed');
  // a current record passes through unchanged
  assert.deepEqual(migrateRunRecord(r as unknown as Record<string, unknown>, RUN_RECORD_VERSION, 'new.json'), r);
});

test('version-2 records gain the data fields of version 3 as they meant: no flip, a folder composited onto black', () => {
  const base = resolveNewRun('default', { width: 8 });
  const v2 = (data: object) => ({ ...structuredClone(base), data }) as unknown as Record<string, unknown>;
  const mnist = migrateRunRecord(v2({ dataset: 'mnist', limit: 0, count: 10 }), 2, 'v2.json');
  assert.deepEqual(mnist.data, { dataset: 'mnist', limit: 0, count: 10, flip: false, conditional: false, classes: [] });
  const folder = migrateRunRecord(v2({ dataset: 'folder', path: '/x', imageSize: 16, channels: 3, limit: 0, count: 10 }), 2, 'v2.json');
  assert.equal(folder.data.background, '#000000');
  assert.equal(folder.data.flip, false);
  // New folder runs default to white, and say so in the record.
  const now = resolveNewRun('default', { model: 'unet', data: '/x', imageSize: 16 });
  assert.equal(now.data.background, '#ffffff');
  assert.equal(now.data.flip, false);
  assert.equal(resolveNewRun('default', { model: 'unet', data: '/x', imageSize: 16, background: '#102030', flip: true }).data.background, '#102030');
  assert.throws(() => resolveNewRun('default', { background: '#ffffff' }), /is an option of a folder of images, not of mnist/);
});

test('version-3 U-net records gain the patch size of version 4 as they meant: none (1)', () => {
  const v3 = structuredClone(resolveNewRun('default', { model: 'unet' })) as unknown as { model: Record<string, unknown> };
  delete v3.model.patchSize;
  const r = migrateRunRecord(v3 as unknown as Record<string, unknown>, 3, 'v3.json');
  assert.equal(r.model.kind === 'unet' && r.model.patchSize, 1);
  assert.equal(migrateRunRecord(structuredClone(resolveNewRun('default', {})) as unknown as Record<string, unknown>, 3, 'v3.json').model.kind, 'fc-unet');
});

test('a checkpoint from a newer diffuse, or without a version, is refused with a clear error', () => {
  const dir = tempDir();
  fs.cpSync(V1, dir, { recursive: true });
  const file = path.join(dir, 'checkpoint.json');
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.writeFileSync(file, JSON.stringify({ ...raw, version: RUN_RECORD_VERSION + 1 }));
  assert.throws(() => loadCheckpoint(dir), new RegExp(`format version ${RUN_RECORD_VERSION + 1}; this diffuse reads up to ${RUN_RECORD_VERSION} \\(a newer diffuse wrote it\\)`));
  fs.writeFileSync(file, JSON.stringify({ ...raw, version: undefined }));
  assert.throws(() => loadCheckpoint(dir), /no valid format version/);
});

test('version-4 records gain the class fields of version 5 as they meant: unconditional', () => {
  const v4 = structuredClone(resolveNewRun('default', { model: 'unet' })) as unknown as { model: Record<string, unknown>; data: Record<string, unknown>; training: Record<string, unknown> };
  delete v4.model.classes;
  delete v4.data.conditional;
  delete v4.data.classes;
  delete v4.training.labelDropout;
  const r = migrateRunRecord(v4 as unknown as Record<string, unknown>, 4, 'v4.json');
  assert.equal(r.model.classes, 0);
  assert.equal(r.data.conditional, false);
  assert.deepEqual(r.data.classes, []);
  assert.equal(r.training.labelDropout, 0);
});

test('version-5 records gain the loss weighting and noise levels of version 6 as they meant: uniform', () => {
  const v5 = structuredClone(resolveNewRun('default', { model: 'unet', weighting: 'min-snr', levels: 'log-normal' })) as unknown as { training: Record<string, unknown> };
  delete v5.training.weighting;
  delete v5.training.levels;
  const r = migrateRunRecord(v5 as unknown as Record<string, unknown>, 5, 'v5.json');
  assert.deepEqual(r.training.weighting, { kind: 'uniform' });
  assert.deepEqual(r.training.levels, { kind: 'uniform' });
  // a version-6 record keeps its own
  const v6 = migrateRunRecord(resolveNewRun('default', { model: 'unet', weighting: 'min-snr' }) as unknown as Record<string, unknown>, 6, 'v6.json');
  assert.deepEqual(v6.training.weighting, { kind: 'min-snr', gamma: 5 });
});
