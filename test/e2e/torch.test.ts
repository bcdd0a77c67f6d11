/**
 * The way out to PyTorch and back: `diffuse export --safetensors` loads into the PyTorch twins
 * (python/diffuse_torch) with equal outputs, `diffuse import` restores the weights bit for bit, and
 * `torchrun --nproc_per_node 2` trains an exported model with DistributedDataParallel (gloo on
 * 127.0.0.1), both processes holding identical weights after every update, into a file diffuse imports
 * and samples. Conditional models too: the class embedding as `classes_emb.weight`, the twins' outputs
 * equal by class (the null class and no labels included), import equal by class, and torchrun training
 * on the labels with the record's label dropout.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../../src/io/checkpoint';
import { readSafetensors, SafeTensor } from '../../src/io/safetensors';
import { loadPipeline } from '../../src/pipeline/load';
import { registerBlasBackend, BLAS_BACKEND } from '../../src/backend/blasBackend';
import { imageSize } from '../../src/models/denoiser';
import { Rng } from '../../src/rng';
import { ROOT, runCli, tempDir } from '../helpers';

const PYTHON = '/usr/bin/python3';
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
const TORCHRUN = ['/usr/bin/torchrun', '/usr/local/bin/torchrun'].find((p) => fs.existsSync(p));
// .ci/run installs PyTorch; elsewhere without it this is skipped, and the runner lists the skip.
const skip = hasTorch && TORCHRUN ? false : 'no PyTorch (apt-get install -y python3-torch python3-numpy python3-pil)';
const pyEnv = { ...process.env, PYTHONPATH: path.join(ROOT, 'python'), OMP_NUM_THREADS: '1' };

before(async () => {
  await tf.setBackend(registerBlasBackend() ? BLAS_BACKEND : 'cpu');
});

function writeNpy(file: string, values: Float32Array, shape: number[]): void {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(values.buffer, values.byteOffset, values.byteLength)]));
}

function readNpyFloat(file: string): Float32Array {
  const bytes = fs.readFileSync(file);
  const start = 10 + bytes.readUInt16LE(8);
  const out = new Float32Array((bytes.length - start) / 4);
  new Uint8Array(out.buffer).set(bytes.subarray(start));
  return out;
}

function python(args: string[], cwd = ROOT) {
  const r = spawnSync(PYTHON, args, { cwd, encoding: 'utf8', env: pyEnv, timeout: 300_000 });
  assert.equal(r.status, 0, `${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** A checkpoint's model (its sampling weights): predict(inputs `x` at `t`, with `labels` where given), and dispose. */
function predictor(ckpt: string): { predict: (x: Float32Array, t: Float32Array, labels?: Float32Array) => Float32Array; dispose: () => void } {
  const { model } = loadPipeline(ckpt);
  const predict = (x: Float32Array, t: Float32Array, labels?: Float32Array) => {
    const n = t.length;
    return tf.tidy(() => model.predict(tf.tensor2d(x, [n, x.length / n]), tf.tensor1d(t), labels && tf.tensor1d(labels)).dataSync() as Float32Array);
  };
  return { predict, dispose: () => model.dispose() };
}

function predictions(ckpt: string, x: Float32Array, t: Float32Array, labels?: Float32Array): Float32Array {
  const model = predictor(ckpt);
  try {
    return model.predict(x, t, labels);
  } finally {
    model.dispose();
  }
}

/** Random images for a checkpoint's model, one per t. */
function inputs(ckpt: string, t: number[]): { x: Float32Array; t: Float32Array } {
  const pixels = imageSize(loadCheckpoint(ckpt).meta.model);
  return { x: new Rng(5).fillNormal(new Float32Array(t.length * pixels)), t: Float32Array.from(t) };
}

/**
 * diffuse's and the twin's outputs on the same random inputs, for a checkpoint's averaged weights: the
 * largest difference relative to max(1, |diffuse's|). With `labels`, both get them (else neither: no class).
 */
function compareWithTwin(ckpt: string, file: string, labels?: Float32Array, times = [0.001, 0.5, 0.999]): number {
  const { x, t } = inputs(ckpt, times);
  const n = t.length;
  const ours = predictions(ckpt, x, t, labels);
  const dir = tempDir();
  writeNpy(path.join(dir, 'x.npy'), x, [n, x.length / n]);
  writeNpy(path.join(dir, 't.npy'), t, [n]);
  if (labels) writeNpy(path.join(dir, 'labels.npy'), labels, [n]);
  python(['-m', 'diffuse_torch.check', file, path.join(dir, 'x.npy'), path.join(dir, 't.npy'), path.join(dir, 'y.npy'), '--ema', ...(labels ? ['--labels', path.join(dir, 'labels.npy')] : [])]);
  const theirs = readNpyFloat(path.join(dir, 'y.npy'));
  assert.equal(theirs.length, ours.length);
  let worst = 0;
  ours.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - theirs[i]) / Math.max(1, Math.abs(v)))));
  return worst;
}

function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Whether a checkpoint's import holds the same record and weights (Adam's moments aside: they are not exported). */
function assertSameCheckpoint(name: string, ckpt: string, back: string): void {
  const [a, b] = [loadCheckpoint(ckpt), loadCheckpoint(back)];
  assert.deepEqual(b.meta, a.meta);
  for (const [k, v] of a.tensors) {
    if (k.startsWith('adam/')) continue; // Adam's moments are not exported: an import starts them afresh
    assert.ok(sameBytes(v.values, b.tensors.get(k)!.values), `${name}: ${k}`);
  }
}

test('exported FC (ε) and U-net (v; with and without patches) checkpoints give the PyTorch twins the same outputs; import restores them bit for bit', { skip, timeout: 400_000 }, () => {
  const dir = tempDir();
  const runs = [
    ['fc', ['--width', '64', '--limit', '256', '--batch-size', '64']],
    ['unet', ['--model', 'unet', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '16', '--limit', '64', '--batch-size', '32', '--prediction', 'v']],
    ['unet-patches', ['--model', 'unet', '--patch-size', '2', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '8', '--limit', '32', '--batch-size', '16', '--prediction', 'v']],
  ] as const;
  for (const [name, flags] of runs) {
    const ckpt = path.join(dir, name);
    const train = runCli(['train', '--epochs', '1', ...flags, '--out', ckpt]);
    assert.equal(train.status, 0, train.stderr);
    const file = path.join(dir, `${name}.safetensors`);
    const ex = runCli(['export', '--checkpoint', ckpt, '--safetensors', file]);
    assert.equal(ex.status, 0, ex.stderr);
    const worst = compareWithTwin(ckpt, file);
    console.log(`${name}: largest relative difference from the twin ${worst}`);
    assert.ok(worst < 1e-5, `${name}: largest relative difference ${worst}`);
    const back = path.join(dir, `${name}-back`);
    const im = runCli(['import', file, '--out', back]);
    assert.equal(im.status, 0, im.stderr);
    assertSameCheckpoint(name, ckpt, back);
  }
});

test('conditional FC and U-net checkpoints: the class embedding exports as classes_emb.weight, the twins give the same outputs by class (no class included), and an import predicts every class the same', { skip, timeout: 400_000 }, () => {
  const dir = tempDir();
  const runs = [
    ['fc', ['--width', '64', '--limit', '256', '--batch-size', '64']],
    ['unet', ['--model', 'unet', '--base-channels', '8', '--channel-mults', '1,2', '--attention', '16', '--limit', '64', '--batch-size', '32', '--prediction', 'v']],
  ] as const;
  const worst: Record<string, number> = {};
  for (const [name, flags] of runs) {
    const ckpt = path.join(dir, name);
    const train = runCli(['train', '--epochs', '1', '--conditional', '--label-dropout', '0.2', ...flags, '--out', ckpt]);
    assert.equal(train.status, 0, train.stderr);
    const record = loadCheckpoint(ckpt).meta;
    assert.equal(record.model.classes, 10);
    const file = path.join(dir, `${name}.safetensors`);
    const ex = runCli(['export', '--checkpoint', ckpt, '--safetensors', file]);
    assert.equal(ex.status, 0, ex.stderr);
    // the names and shapes PyTorch sees, and the run record (classes, label dropout) in the metadata
    const { tensors, metadata } = readSafetensors(file);
    const exported = JSON.parse(metadata['diffuse.record']);
    assert.deepEqual([exported.model.classes, exported.data.conditional, exported.data.classes, exported.training.labelDropout], [10, true, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], 0.2]);
    if (name === 'fc') {
      assert.deepEqual(tensors.get('in.weight')!.shape, [64, 784 + 1 + 11]); // image, t/T, one-hot of 10 classes + no class
      assert.ok(![...tensors.keys()].some((k) => k.includes('class')));
    } else {
      assert.deepEqual(tensors.get('classes_emb.weight')!.shape, [11, 32]); // nn.Embedding(classes + 1, 4 * base channels)
      assert.deepEqual(tensors.get('ema.classes_emb.weight')!.shape, [11, 32]);
      assert.ok(sameBytes(tensors.get('classes_emb.weight')!.values, loadCheckpoint(ckpt).tensors.get('model/class/embedding')!.values), 'the embedding keeps its layout');
    }
    // four images with labels (10: no class), and without labels (no class for all)
    const labels = Float32Array.from([0, 7, 10, 3]);
    const times = [0.001, 0.5, 0.999, 0.25];
    worst[name] = Math.max(compareWithTwin(ckpt, file, labels, times), compareWithTwin(ckpt, file, undefined, times));
    assert.ok(worst[name] < 1e-5, `${name}: largest relative difference ${worst[name]}`);
    // the labels matter (the comparison is not of one prediction), and no labels is the null class
    const { x, t } = inputs(ckpt, times);
    const original = predictor(ckpt);
    const byClass = (c: number) => original.predict(x, t, new Float32Array(4).fill(c));
    assert.ok(!sameBytes(byClass(0), byClass(10)) && !sameBytes(byClass(0), byClass(1)), `${name}: labels change nothing`);
    assert.ok(sameBytes(byClass(10), original.predict(x, t)), `${name}: no labels is not the null class`);
    const back = path.join(dir, `${name}-back`);
    const im = runCli(['import', file, '--out', back]);
    assert.equal(im.status, 0, im.stderr);
    assertSameCheckpoint(name, ckpt, back);
    const again = predictor(back);
    for (let c = 0; c <= 10; c++) assert.ok(sameBytes(again.predict(x, t, new Float32Array(4).fill(c)), byClass(c)), `${name}: class ${c} after import`);
    assert.ok(sameBytes(again.predict(x, t, labels), original.predict(x, t, labels)), `${name}: mixed labels after import`);
    assert.ok(sameBytes(again.predict(x, t), original.predict(x, t)), `${name}: no labels after import`);
    original.dispose();
    again.dispose();
  }
  console.log(`conditional twins, largest relative differences: ${JSON.stringify(worst)}`);
});

test('torchrun --nproc_per_node 2 trains an exported model in step (gloo), and diffuse imports and samples the result', { skip, timeout: 400_000 }, () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'fc');
  assert.equal(runCli(['train', '--epochs', '1', '--width', '64', '--limit', '256', '--batch-size', '64', '--out', ckpt]).status, 0);
  const file = path.join(dir, 'fc.safetensors');
  assert.equal(runCli(['export', '--checkpoint', ckpt, '--safetensors', file]).status, 0);
  const trained = path.join(dir, 'trained.safetensors');
  // --redirects 2 --tee 1: Debian's torchrun 1.13 on Python 3.11 misreads the default redirect settings
  const r = spawnSync(TORCHRUN!, ['--standalone', '--nproc_per_node', '2', '--redirects', '2', '--tee', '1', '-m', 'diffuse_torch.train', '--init', file, '--data', 'mnist', '--limit', '256', '--batch-size', '64', '--epochs', '2', '--check-sync', '--out', trained], { cwd: ROOT, encoding: 'utf8', env: pyEnv, timeout: 300_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.includes('{"processes"'));
  assert.ok(line, r.stdout);
  const report = JSON.parse(line.slice(line.indexOf('{')));
  assert.equal(report.processes, 2);
  assert.equal(report.updates, 8); // 256 images / 64 a batch, twice
  const back = path.join(dir, 'back');
  const im = runCli(['import', trained, '--out', back]);
  assert.equal(im.status, 0, im.stderr);
  const meta = loadCheckpoint(back).meta;
  assert.equal(meta.training.epoch, 3);
  assert.equal(meta.training.step, 4 + 8);
  const grid = path.join(dir, 'grid.png');
  const s = runCli(['sample', '--checkpoint', back, '--n', '4', '--out', grid]);
  assert.equal(s.status, 0, s.stderr);
  // and training goes on in diffuse from the imported state
  const resumed = runCli(['train', '--epochs', '4', '--resume', '--out', back]);
  assert.equal(resumed.status, 0, resumed.stderr);
});

/** The columns of an FC net's first layer (PyTorch's in.weight [w, fan-in]) that differ between two files. */
function changedColumns(before: SafeTensor, after: SafeTensor, columns: number[]): number[] {
  const [rows, cols] = before.shape;
  return columns.filter((c) => Array.from({ length: rows }, (_, r) => r * cols + c).some((i) => before.values[i] !== after.values[i]));
}

test("torchrun trains a conditional model on its labels with the record's label dropout; diffuse imports it, samples it by class and resumes it", { skip, timeout: 400_000 }, () => {
  const dir = tempDir();
  const ckpt = path.join(dir, 'fc');
  const train = runCli(['train', '--epochs', '1', '--conditional', '--width', '64', '--limit', '256', '--batch-size', '64', '--out', ckpt]);
  assert.equal(train.status, 0, train.stderr);
  const file = path.join(dir, 'fc.safetensors');
  assert.equal(runCli(['export', '--checkpoint', ckpt, '--safetensors', file]).status, 0);
  const trained = path.join(dir, 'trained.safetensors');
  const r = spawnSync(TORCHRUN!, ['--standalone', '--nproc_per_node', '2', '--redirects', '2', '--tee', '1', '-m', 'diffuse_torch.train', '--init', file, '--data', 'mnist', '--limit', '256', '--batch-size', '64', '--epochs', '2', '--check-sync', '--out', trained], { cwd: ROOT, encoding: 'utf8', env: pyEnv, timeout: 300_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  // the one-hot's columns of the first layer: 785..794 the digits, 795 no class. Adam moves a weight only
  // where its gradient was ever nonzero, so a column changes only where its label was seen.
  const classColumns = Array.from({ length: 11 }, (_, c) => 785 + c);
  const start = readSafetensors(file).tensors.get('in.weight')!;
  assert.deepEqual(changedColumns(start, readSafetensors(trained).tensors.get('in.weight')!, classColumns), classColumns, 'every digit and (dropout 0.1) no class trained');
  // every label dropped: only the null class's column moves
  const dropped = path.join(dir, 'dropped.safetensors');
  python(['-m', 'diffuse_torch.train', '--init', file, '--data', 'mnist', '--limit', '128', '--batch-size', '64', '--label-dropout', '1', '--out', dropped]);
  const droppedFile = readSafetensors(dropped);
  assert.deepEqual(changedColumns(start, droppedFile.tensors.get('in.weight')!, classColumns), [795]);
  assert.equal(JSON.parse(droppedFile.metadata['diffuse.record']).training.labelDropout, 1);
  // back in diffuse: the record as it was, trained further; sampled by class, and trained on
  const back = path.join(dir, 'back');
  const im = runCli(['import', trained, '--out', back]);
  assert.equal(im.status, 0, im.stderr);
  const [before, meta] = [loadCheckpoint(ckpt).meta, loadCheckpoint(back).meta];
  assert.deepEqual([meta.model, meta.data.classes, meta.data.conditional, meta.training.labelDropout], [before.model, before.data.classes, true, 0.1]);
  assert.equal(meta.training.step, 4 + 8);
  const s = runCli(['sample', '--checkpoint', back, '--class', 'all', '--per-class', '1', '--out', path.join(dir, 'grid.png')]);
  assert.equal(s.status, 0, s.stderr);
  const resumed = runCli(['train', '--epochs', '4', '--resume', '--out', back]);
  assert.equal(resumed.status, 0, resumed.stderr);
  // a fresh conditional run of the trainer's own: a complete record that diffuse imports and samples by class
  const fresh = path.join(dir, 'fresh.safetensors');
  python(['-m', 'diffuse_torch.train', '--model', 'fc', '--data', 'mnist', '--conditional', '--limit', '64', '--batch-size', '32', '--max-steps', '1', '--out', fresh]);
  const freshBack = path.join(dir, 'fresh');
  assert.equal(runCli(['import', fresh, '--out', freshBack]).status, 0);
  const freshMeta = loadCheckpoint(freshBack).meta;
  assert.deepEqual([freshMeta.model.classes, freshMeta.data.conditional, freshMeta.data.classes.length, freshMeta.training.labelDropout], [10, true, 10, 0.1]);
  const fs2 = runCli(['sample', '--checkpoint', freshBack, '--class', '3', '--n', '2', '--steps', '2', '--out', path.join(dir, 'fresh.png')]);
  assert.equal(fs2.status, 0, fs2.stderr);
});
