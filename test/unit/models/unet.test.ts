import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { ConvUnet, TWIN_32 } from '../../../src/models/unet';
import { unetConfig } from '../../../src/config/defaults';
import { conv2dByIm2col, depthToSpace, groupNorm, spaceToDepth, timestepEmbedding, upsampleNearest } from '../../../src/models/convLayers';
import { parameterCount } from '../../../src/models/denoiser';
import { forwardFlops } from '../../../src/models/flops';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { Rng } from '../../../src/rng';
import { Trainer } from '../../../src/training/trainer';
import { resolveNewRun } from '../../../src/config/resolve';
import { loadTrainingData } from '../../../src/data/dataset';
import { tempDir } from '../../helpers';
import { loadCheckpoint, saveCheckpoint } from '../../../src/io/checkpoint';
import '@tensorflow/tfjs-backend-wasm';

// The fast kernels where built (training a U-net on the cpu backend's loops takes minutes), else cpu.
before(async () => {
  await tf.setBackend(registerBlasBackend() ? BLAS_BACKEND : 'cpu');
});

const random = (shape: number[], seed: number) => tf.tensor(new Rng(seed).fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))), shape);

test('the U-net maps images to noise predictions of the same shape at 32 and 64 px, 1 and 3 channels', () => {
  for (const [size, channels] of [[32, 1], [32, 3], [64, 1], [64, 3]]) {
    const model = new ConvUnet(unetConfig(size, channels, { baseChannels: 8 }), new Rng(0));
    const out = tf.tidy(() => model.predict(random([2, size * size * channels], 1) as tf.Tensor2D, tf.tensor1d([0.05, 0.9])));
    assert.deepEqual(out.shape, [2, size * size * channels]);
    assert.ok(out.dataSync().every(Number.isFinite));
    out.dispose();
    model.dispose();
  }
  const standard = new ConvUnet(unetConfig(32, 1), new Rng(0));
  assert.ok(parameterCount(standard) > 1e6 && parameterCount(standard) < 2e6, `${parameterCount(standard)} parameters`);
  assert.ok([...standard.variables.keys()].some((k) => k.startsWith('down2/attn0/')), 'attention at 8 px');
  assert.ok(![...standard.variables.keys()].some((k) => k.startsWith('down0/attn')), 'no attention at 32 px');
  assert.ok(!standard.variables.has('out/norm/gamma'), 'no GroupNorm before the output convolution');
  standard.dispose();
  // nets from before the output norm was dropped (version-1 checkpoints without the field) keep it
  assert.equal(unetConfig(16, 1).outputNorm, false);
  const old = new ConvUnet(unetConfig(16, 1, { baseChannels: 8, channelMults: [1, 2], outputNorm: true }), new Rng(0));
  assert.ok(old.variables.has('out/norm/gamma'));
  old.dispose();
});

test('the same seed gives the same U-net; its outputs depend on the timestep', () => {
  const a = new ConvUnet(unetConfig(16, 1, { baseChannels: 8, channelMults: [1, 2] }), new Rng(3));
  const b = new ConvUnet(unetConfig(16, 1, { baseChannels: 8, channelMults: [1, 2] }), new Rng(3));
  assert.deepEqual([...a.variables.keys()], [...b.variables.keys()]);
  const x = random([1, 256], 2) as tf.Tensor2D;
  const ya = a.predict(x, tf.tensor1d([0.5])).dataSync();
  assert.deepEqual(ya, b.predict(x, tf.tensor1d([0.5])).dataSync());
  assert.notDeepEqual(ya, a.predict(x, tf.tensor1d([0.1])).dataSync());
  a.dispose();
  b.dispose();
});

test('im2col convolution equals tf.conv2d, with gradients; GroupNorm, space-to-depth and upsampling match simple references', () => {
  const x = random([2, 5, 6, 3], 4) as tf.Tensor4D;
  const w = random([3, 3, 3, 4], 5) as tf.Tensor4D;
  const close = (a: tf.Tensor, b: tf.Tensor, tol = 1e-4) => {
    const d = tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
    assert.ok(d < tol, `max difference ${d}`);
  };
  close(conv2dByIm2col(x, w), tf.conv2d(x, w, 1, 'same'));
  const loss = (f: (p: tf.Tensor4D, q: tf.Tensor4D) => tf.Tensor) => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(f(p as tf.Tensor4D, q as tf.Tensor4D))))([x, w]);
  const [gx1, gw1] = loss(conv2dByIm2col);
  const [gx2, gw2] = loss((p, q) => tf.conv2d(p, q, 1, 'same'));
  close(gx1, gx2, 1e-3);
  close(gw1, gw2, 1e-3);
  // GroupNorm with 2 groups of 2 channels: each group of each image has mean 0 and variance 1.
  const g = groupNorm(random([2, 3, 3, 4], 6) as tf.Tensor4D, 2, tf.ones([4]), tf.zeros([4])).arraySync() as number[][][][];
  for (const img of g) {
    for (const group of [[0, 1], [2, 3]]) {
      const vals = img.flat().flatMap((px) => group.map((c) => px[c]));
      const mean = vals.reduce((s, v) => s + v, 0) / vals.length;
      const variance = vals.reduce((s, v) => s + (v - mean) ** 2, 0) / vals.length;
      assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, `mean ${mean} variance ${variance}`);
    }
  }
  // Upsampling's gradient sums each 2×2 block of dy, for every image of a batch.
  const dy = tf.tensor4d(Float32Array.from({ length: 32 }, (_, i) => i + 1), [2, 4, 4, 1]);
  const grad = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(upsampleNearest(a as tf.Tensor4D), dy)))(tf.zeros([2, 2, 2, 1]));
  assert.deepEqual(grad.dataSync(), Float32Array.from([14, 22, 46, 54, 78, 86, 110, 118]));
  const small = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
  assert.deepEqual(upsampleNearest(small).dataSync(), Float32Array.from([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]));
  assert.deepEqual(spaceToDepth(small).dataSync(), Float32Array.from([1, 2, 3, 4]));
  assert.deepEqual(spaceToDepth(upsampleNearest(small)).shape, [1, 2, 2, 4]);
  const emb = timestepEmbedding(tf.tensor1d([0, 10]), 8).arraySync() as number[][];
  assert.deepEqual(emb[0], [0, 0, 0, 0, 1, 1, 1, 1]);
  assert.ok(Math.abs(emb[1][0] - Math.sin(10)) < 1e-5 && Math.abs(emb[1][4] - Math.cos(10)) < 1e-5);
});

test('patches: space-to-depth and back at blocks 2 and 3; the net folds 2x2 patches in and unfolds its output as (dy, dx, c); sizes are checked', () => {
  for (const [block, shape] of [[2, [2, 4, 6, 3]], [3, [1, 6, 9, 2]]] as const) {
    const x = random([...shape], 11) as tf.Tensor4D;
    const folded = spaceToDepth(x, block);
    assert.deepEqual(folded.shape, [shape[0], shape[1] / block, shape[2] / block, shape[3] * block * block]);
    assert.deepEqual(depthToSpace(folded, block).dataSync(), x.dataSync());
    // the folded pixel (i, j) holds channel c of pixel (block·i + dy, block·j + dx) at (dy·block + dx)·C + c
    const [xs, fs] = [x.arraySync() as number[][][][], folded.arraySync() as number[][][][]];
    const C = shape[3];
    for (const [i, j, dy, dx, c] of [[0, 0, 1, 0, 1], [1, 1, block - 1, block - 1, 0], [1, 0, 0, 1, C - 1]]) {
      assert.equal(fs[0][i][j][(dy * block + dx) * C + c], xs[0][block * i + dy][block * j + dx][c]);
    }
  }
  // The 64-px default works on 2x2 patches: its first convolution reads 4·3 channels, its last writes them.
  const config = unetConfig(64, 3);
  assert.equal(config.patchSize, 2);
  const model = new ConvUnet(config, new Rng(0));
  assert.deepEqual(model.variables.get('init/kernel')!.shape, [3, 3, 12, config.baseChannels]);
  assert.deepEqual(model.variables.get('out/conv/kernel')!.shape, [3, 3, config.baseChannels, 12]);
  assert.ok([...model.variables.keys()].some((k) => k.startsWith('down2/attn0/')), 'attention at 8 px: the third stage of a 32-px feature map');
  // With the output convolution's kernel zeroed and its bias k at channel k, pixel (y, x, c) must read (y%2·2 + x%2)·3 + c.
  model.variables.get('out/conv/kernel')!.assign(tf.zerosLike(model.variables.get('out/conv/kernel')!));
  model.variables.get('out/conv/bias')!.assign(tf.range(0, 12, 1, 'float32'));
  const out = tf.tidy(() => model.predict(random([1, 64 * 64 * 3], 12) as tf.Tensor2D, tf.tensor1d([0.5])).dataSync());
  for (const [y, x, c] of [[0, 0, 0], [0, 1, 2], [1, 0, 1], [63, 62, 2], [5, 7, 0]]) assert.equal(out[(y * 64 + x) * 3 + c], ((y % 2) * 2 + (x % 2)) * 3 + c);
  model.dispose();
  assert.throws(() => unetConfig(32, 1, { patchSize: 3 }), /32 px cannot be cut into 3x3 patches/);
  assert.throws(() => unetConfig(32, 1, { patchSize: 4, channelMults: [1, 2, 4, 8, 8] }), /8 px \(32 px in 4x4 patches\) cannot be halved 4 times/);
  assert.throws(() => unetConfig(32, 1, { patchSize: 0 }), /patch size must be a positive integer/);
});

test('a tiny U-net overfits a small folder of generated coloured squares', async () => {
  const dir = tempDir();
  const colours: [number, number, number][] = [[255, 0, 0], [0, 200, 0], [0, 0, 255], [255, 255, 0]];
  for (let i = 0; i < 4; i++) {
    const px = Buffer.alloc(16 * 16 * 3);
    for (let y = 4; y < 12; y++) for (let x = 4; x < 12; x++) px.set(colours[i], (y * 16 + x) * 3);
    await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(dir, `square-${i}.png`));
  }
  assert.equal(fs.readdirSync(dir).length, 4);
  const meta = resolveNewRun('seed', {
    model: 'unet', data: dir, imageSize: 16, channels: 3, baseChannels: 16, channelMults: [1, 2], attentionResolutions: [8],
    timesteps: 1000, limit: 0, batchSize: 4, lr: 2e-3, seed: 0,
  });
  const data = await loadTrainingData(meta.data);
  const trainer = new Trainer(meta);
  const losses: number[] = [];
  for (let step = 0; step < 300; step++) losses.push(trainer.trainStep(data, [0, 1, 2, 3]));
  const first = losses.slice(0, 10).reduce((a, b) => a + b) / 10;
  const last = losses.slice(-30).reduce((a, b) => a + b) / 30;
  assert.ok(last < first / 5, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  trainer.dispose();
});

test('on wasm (no Conv2DBackpropFilter kernel) the U-net differentiates through im2col and agrees with the cpu backend', async () => {
  const previous = tf.getBackend();
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const model = new ConvUnet(unetConfig(16, 3, { baseChannels: 8, channelMults: [1, 2], attentionResolutions: [8] }), new Rng(7));
    const x = tf.tensor2d(new Rng(8).fillNormal(new Float32Array(2 * 768)), [2, 768]);
    const t = tf.tensor1d([0.2, 0.7]);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.predict(x, t))));
    const result = { loss: value.dataSync()[0], grad: grads[model.variables.get('init/kernel')!.name].dataSync().slice() };
    tf.dispose([value, x, t, ...Object.values(grads)]);
    model.dispose();
    return result;
  };
  const cpu = await run('cpu');
  const wasm = await run('wasm');
  await tf.setBackend(previous);
  assert.ok(Math.abs(cpu.loss - wasm.loss) < 1e-4 * Math.max(1, cpu.loss), `${cpu.loss} vs ${wasm.loss}`);
  let worst = 0;
  cpu.grad.forEach((g, i) => (worst = Math.max(worst, Math.abs(g - wasm.grad[i]))));
  assert.ok(worst < 1e-4, `largest gradient difference ${worst}`);
});

test('the twin-shaped 32-px U-net has exactly 533,105 parameters (as its PyTorch twin), the default 1,638,017', () => {
  const model = new ConvUnet(unetConfig(32, 1, TWIN_32), new Rng(0));
  assert.equal(parameterCount(model), 533_105);
  model.dispose();
  const standard = new ConvUnet(unetConfig(32, 1), new Rng(0));
  assert.equal(parameterCount(standard), 1_638_017);
  standard.dispose();
});

test("the bench's FLOP count sees every convolution (fused bias or not), product and attention: 163,176,464 per 32-px image of the twin's shape", async () => {
  // Convolutions 2·outputs·k²·in, products 2·rows·in·out, attention 4·tokens²·channels; the figure is
  // pinned because the count once missed the convolutions that take their bias in the same kernel (and
  // the bench printed 16 MFLOP).
  const previous = tf.getBackend();
  for (const backend of ['cpu', ...(registerBlasBackend() ? [BLAS_BACKEND] : [])]) {
    await tf.setBackend(backend);
    assert.equal(await forwardFlops(unetConfig(32, 1, TWIN_32)), 163_176_464, backend);
  }
  await tf.setBackend(previous);
});

test('a U-net checkpoint round trip (weights, Adam state, average, v-prediction) gives identical predictions and next step', async () => {
  const images = tempDir();
  for (let i = 0; i < 4; i++) {
    const px = Buffer.alloc(16 * 16 * 3, 60 * i);
    await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(path.join(images, `i-${i}.png`));
  }
  const meta = resolveNewRun('seed', {
    model: 'unet', data: images, imageSize: 16, channels: 3, baseChannels: 8, channelMults: [1, 2], attentionResolutions: [8],
    timesteps: 1000, limit: 0, batchSize: 4, lr: 1e-3, seed: 2, ema: 0.999, prediction: 'v',
  });
  const data = await loadTrainingData(meta.data);
  meta.data.count = data.count;
  const trainer = new Trainer(meta);
  trainer.trainStep(data, [0, 1, 2, 3]);
  trainer.trainStep(data, [3, 2]);
  const dir = tempDir();
  saveCheckpoint(dir, trainer.checkpointMeta(0.1), trainer.tensors());
  const { meta: saved, tensors } = loadCheckpoint(dir);
  assert.equal(saved.schedule.prediction, 'v');
  assert.ok([...tensors.keys()].some((k) => k.startsWith('ema/')) && [...tensors.keys()].some((k) => k.startsWith('adam/v/')));
  const restored = new Trainer(saved, tensors);
  const predict = (model: { predict(x: tf.Tensor2D, t: tf.Tensor1D): tf.Tensor2D }) =>
    tf.tidy(() => model.predict(random([2, 768], 9) as tf.Tensor2D, tf.tensor1d([0.1, 0.8])).dataSync() as Float32Array);
  assert.deepEqual(predict(restored.model), predict(trainer.model));
  const [avgA, avgB] = [trainer.averagedModel()!, restored.averagedModel()!];
  assert.deepEqual(predict(avgB), predict(avgA));
  assert.notDeepEqual(predict(avgA), predict(trainer.model), 'the average differs from the weights');
  avgA.dispose();
  avgB.dispose();
  // The next step (random timesteps and noise from the restored stream, Adam from its moments) is the same.
  assert.equal(restored.trainStep(data, [1, 0, 2]), trainer.trainStep(data, [1, 0, 2]));
  for (const [name, t] of trainer.tensors()) assert.deepEqual(restored.tensors().get(name)!.values, t.values, name);
  restored.dispose();
  trainer.dispose();
});
