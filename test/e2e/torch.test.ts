/**
 * The way out to PyTorch and back: `diffuse export --safetensors` loads into the PyTorch twins
 * (python/diffuse_torch) with equal outputs, `diffuse import` restores the weights bit for bit, and
 * `torchrun --nproc_per_node 2` trains an exported model with DistributedDataParallel (gloo on
 * 127.0.0.1), both processes holding identical weights after every update, into a file diffuse imports
 * and samples.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../../src/io/checkpoint';
import { loadPipeline } from '../../src/pipeline';
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

/** diffuse's and the twin's outputs on the same random inputs, for a checkpoint's averaged weights. */
function compareWithTwin(ckpt: string, file: string): number {
  const { model } = loadPipeline(ckpt);
  const pixels = imageSize(model.config);
  const rng = new Rng(5);
  const x = rng.fillNormal(new Float32Array(3 * pixels));
  const t = Float32Array.from([0.001, 0.5, 0.999]);
  const ours = tf.tidy(() => model.predict(tf.tensor2d(x, [3, pixels]), tf.tensor1d(t)).dataSync() as Float32Array);
  model.dispose();
  const dir = tempDir();
  writeNpy(path.join(dir, 'x.npy'), x, [3, pixels]);
  writeNpy(path.join(dir, 't.npy'), t, [3]);
  python(['-m', 'diffuse_torch.check', file, path.join(dir, 'x.npy'), path.join(dir, 't.npy'), path.join(dir, 'y.npy'), '--ema']);
  const theirs = readNpyFloat(path.join(dir, 'y.npy'));
  assert.equal(theirs.length, ours.length);
  let worst = 0;
  ours.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - theirs[i]) / Math.max(1, Math.abs(v)))));
  return worst;
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
    assert.ok(worst < 1e-5, `${name}: largest relative difference ${worst}`);
    const back = path.join(dir, `${name}-back`);
    const im = runCli(['import', file, '--out', back]);
    assert.equal(im.status, 0, im.stderr);
    const [a, b] = [loadCheckpoint(ckpt), loadCheckpoint(back)];
    assert.deepEqual(b.meta, a.meta);
    for (const [k, v] of a.tensors) {
      if (k.startsWith('adam/')) continue; // Adam's moments are not exported: an import starts them afresh
      assert.ok(Buffer.from(v.values.buffer, v.values.byteOffset, v.values.byteLength).equals(Buffer.from(b.tensors.get(k)!.values.buffer, b.tensors.get(k)!.values.byteOffset, v.values.byteLength)), `${name}: ${k}`);
    }
  }
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
