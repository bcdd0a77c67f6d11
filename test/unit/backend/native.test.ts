/**
 * Every kernel of the `blas` backend against tfjs's own cpu kernels, on random inputs of several
 * shapes (odd sizes included), to float32 tolerance; then whole training steps on both paths.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BLAS_BACKEND, registerBlasBackend } from '../../../src/backend/blasBackend';
import { loadNativeAddon, nativeAddonProblem, NATIVE_FUNCTIONS } from '../../../src/backend/addon';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir, widestIsa } from '../../helpers';

// scripts/arm64-test.sh tests an addon built elsewhere
const ADDON = process.env.DIFFUSE_NATIVE_ADDON ?? path.join(ROOT, 'build', 'Release', 'diffuse_native.node');
import { geluLayerNorm, gelu, layerNorm } from '../../../src/models/layers';
import { groupNorm, scaledSoftmax, selfAttention, silu, upsampleNearest } from '../../../src/models/convLayers';
import { Adam } from '../../../src/optim/adam';
import { adamConfig } from '../../../src/config/defaults';
import { Rng } from '../../../src/rng';
import { Trainer } from '../../../src/training/trainer';
import { buildModel } from '../../../src/models/build';
import { attentionBlock } from '../../../src/models/unetBlocks';
import { resolveNewRun } from '../../../src/config/resolve';
import { loadMnist, padImages } from '../../../src/data/mnist';

const available = registerBlasBackend();
const skip = available ? false : 'native kernels not built (apt-get install -y libopenblas-dev && npm run build:native)';

before(async () => {
  await tf.ready();
});

function random(shape: number[], seed: number): { shape: number[]; values: Float32Array } {
  const rng = new Rng(seed);
  return { shape, values: rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))) };
}

/** Runs f on fresh copies of the inputs on a backend and returns the outputs' values. */
function on(backend: string, inputs: { shape: number[]; values: Float32Array }[], f: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): { shape: number[]; values: Float32Array }[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const out = f(...inputs.map((i) => tf.tensor(i.values, i.shape)));
    return (Array.isArray(out) ? out : [out]).map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  });
}

/**
 * Element-wise within tol (relative above 1). `floor`, where given, also lets any element be off by
 * floor x the output's largest magnitude: for results that amplify rounding (see the Conv2D test).
 */
function assertClose(actual: { shape: number[]; values: Float32Array }[], expected: { shape: number[]; values: Float32Array }[], what: string, tol = 2e-4, floor = 0): void {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((a, i) => {
    assert.deepEqual(a.shape, expected[i].shape, `${what}: shape of output ${i}`);
    const largest = expected[i].values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let j = 0; j < a.values.length; j++) {
      const e = expected[i].values[j];
      if (!(Math.abs(a.values[j] - e) <= Math.max(tol * Math.max(1, Math.abs(e)), floor * largest))) {
        assert.fail(`${what}: output ${i}[${j}] = ${a.values[j]}, reference ${e}`);
      }
    }
  });
}

function compare(what: string, inputs: { shape: number[]; values: Float32Array }[], f: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[], tol?: number, floor?: number): void {
  const expected = on('cpu', inputs, f);
  const actual = on(BLAS_BACKEND, inputs, f);
  assertClose(actual, expected, what, tol, floor);
}

test('matMul matches the cpu kernel for all transposes, odd sizes and batches', { skip }, () => {
  let seed = 0;
  // [301, 37, 48]: many rows into 16k columns, the direct 1x1-convolution path (a·b, a·bᵀ; aᵀ·b on sgemm)
  for (const [m, k, n] of [[1, 1, 1], [3, 5, 7], [17, 33, 9], [128, 785, 64], [301, 37, 48]]) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = random(ta ? [k, m] : [m, k], ++seed), b = random(tb ? [n, k] : [k, n], ++seed);
        compare(`matMul ${m}x${k}x${n} ta=${ta} tb=${tb}`, [a, b], (x, y) => tf.matMul(x, y, ta, tb));
      }
    }
  }
  compare('batched matMul', [random([2, 3, 4], 1), random([2, 4, 5], 2)], (x, y) => tf.matMul(x, y));
  compare('broadcast batch', [random([1, 3, 4], 3), random([3, 4, 5], 4)], (x, y) => tf.matMul(x, y));
  compare('3-D times 2-D', [random([2, 3, 4], 5), random([4, 5], 6)], (x, y) => tf.matMul(x, y));
  // batches large enough to go to the cores in one native call (attention's per-head products), all transposes
  for (const [ta, tb] of [[false, false], [false, true], [true, false], [true, true]]) {
    const a = random(ta ? [96, 17, 33] : [96, 33, 17], 7), b = random(tb ? [96, 29, 17] : [96, 17, 29], 8);
    compare(`batched matMul 96 x 33x17x29 ta=${ta} tb=${tb}`, [a, b], (x, y) => tf.matMul(x, y, ta, tb));
  }
  compare('broadcast batch on the right, large', [random([80, 31, 23], 9), random([1, 23, 40], 10)], (x, y) => tf.matMul(x, y));
  compare('batched matMul with bias', [random([40, 31, 23], 11), random([40, 23, 19], 12), random([19], 13)], (x, y, z) => tf.fused.matMul({ a: x, b: y, bias: z }));
});

test('fused matMul with a bias matches, and with an activation falls back correctly', { skip }, () => {
  for (const [m, k, n] of [[5, 3, 7], [128, 33, 65], [300, 21, 32]]) {
    const inputs = [random([m, k], m), random([k, n], k), random([n], n)];
    compare(`fused ${m}x${k}x${n}`, inputs, (a, b, bias) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias }));
    compare(`fused relu ${m}x${k}x${n}`, inputs, (a, b, bias) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation: 'relu' }));
    compare(`fused transposed ${m}x${k}x${n}`, [random([k, m], 1), random([n, k], 2), random([n], 3)], (a, b, bias) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, transposeA: true, transposeB: true }));
    // Its gradient (bias gradient = column sums) through the same kernels.
    compare(`fused gradient ${m}x${k}x${n}`, inputs, (a, b, bias) =>
      tf.grads((x: tf.Tensor, w: tf.Tensor, c: tf.Tensor) => tf.sum(tf.square(tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: c }))))([a, b, bias]));
  }
});

test('sum over leading axes matches; other reductions fall back', { skip }, () => {
  compare('sum axis 0', [random([7, 13], 1)], (x) => tf.sum(x, 0));
  compare('sum axis 0 keepDims', [random([130, 3], 2)], (x) => tf.sum(x, 0, true));
  compare('sum axes 0,1', [random([2, 3, 5], 3)], (x) => tf.sum(x, [0, 1]));
  compare('sum axis 1', [random([7, 13], 4)], (x) => tf.sum(x, 1));
  compare('sum all', [random([7, 13], 5)], (x) => tf.sum(x));
});

test('add, sub and mul match for equal shapes, scalars and rows on either side', { skip }, () => {
  const cases: [string, number[], number[]][] = [
    ['equal', [5, 7], [5, 7]],
    ['scalar right', [5, 7], []],
    ['scalar left', [], [5, 7]],
    ['row right', [129, 9], [9]],
    ['row left', [9], [129, 9]],
    ['[1, n] row', [4, 3], [1, 3]],
    ['column (fallback)', [4, 3], [4, 1]],
    ['3-D with row', [2, 3, 5], [5]],
  ];
  for (const [name, sa, sb] of cases) {
    const inputs = [random(sa, 1), random(sb, 2)];
    compare(`add ${name}`, inputs, (a, b) => tf.add(a, b));
    compare(`sub ${name}`, inputs, (a, b) => tf.sub(a, b));
    compare(`mul ${name}`, inputs, (a, b) => tf.mul(a, b));
  }
});

test('the fused GELU + LayerNorm and its gradients match the composed ops', { skip }, () => {
  for (const [rows, cols] of [[1, 4], [3, 17], [128, 512]]) {
    const inputs = [random([rows, cols], rows), random([cols], cols), random([cols], cols + 1), random([rows, cols], 7)];
    const expected = on('cpu', inputs, (x, g, b, dy) => {
      const f = (x2: tf.Tensor, g2: tf.Tensor, b2: tf.Tensor) => tf.sum(tf.mul(layerNorm(gelu(x2 as tf.Tensor2D), g2 as tf.Tensor1D, b2 as tf.Tensor1D), dy));
      return [layerNorm(gelu(x as tf.Tensor2D), g as tf.Tensor1D, b as tf.Tensor1D), ...tf.grads(f)([x, g, b])];
    });
    const actual = on(BLAS_BACKEND, inputs, (x, g, b, dy) => {
      const f = (x2: tf.Tensor, g2: tf.Tensor, b2: tf.Tensor) => tf.sum(tf.mul(geluLayerNorm(x2 as tf.Tensor2D, g2 as tf.Tensor1D, b2 as tf.Tensor1D), dy));
      return [geluLayerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D), ...tf.grads(f)([x, g, b])];
    });
    assertClose(actual, expected, `geluLayerNorm ${rows}x${cols}`, 5e-4);
  }
});

test('the native Adam update matches the tfjs-op Adam', { skip }, () => {
  const run = (backend: string) => {
    tf.setBackend(backend);
    const params = new Map([
      ['w', tf.variable(tf.tensor(random([33, 17], 1).values, [33, 17]))],
      ['b', tf.variable(tf.tensor(random([17], 2).values, [17]))],
    ]);
    const adam = new Adam(adamConfig(1e-2), params);
    for (let step = 0; step < 3; step++) {
      tf.tidy(() => adam.apply({ w: tf.tensor(random([33, 17], 10 + step).values, [33, 17]), b: tf.tensor(random([17], 20 + step).values, [17]) }));
    }
    const out = [...params.values(), ...adam.m.values(), ...adam.v.values()].map((v) => ({ shape: v.shape, values: v.dataSync() as Float32Array }));
    adam.dispose();
    params.forEach((v) => v.dispose());
    return out;
  };
  const blas = run(BLAS_BACKEND);
  const cpu = run('cpu');
  assertClose(blas, cpu, 'adam', 1e-5);
  // The update itself (3 steps of about the rate each), element by element, to a ten-thousandth of the
  // largest (the weights' own float32 rounding is about 2e-7 here).
  const start = [random([33, 17], 1).values, random([17], 2).values];
  for (let i = 0; i < 2; i++) {
    const update = (after: Float32Array) => Float64Array.from(after, (v, j) => v - start[i][j]);
    const native = update(blas[i].values);
    const reference = update(cpu[i].values);
    const size = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(size > 1e-2 && size < 5e-2, `3 steps at 1e-2 move a weight by up to ${size}`);
    native.forEach((v, j) => assert.ok(Math.abs(v - reference[j]) <= 1e-4 * size, `${i ? 'b' : 'w'}[${j}]: update ${v}, reference ${reference[j]}`));
  }
});

function trainer(seed: number, ema = 0): Trainer {
  return new Trainer(resolveNewRun('seed', { width: 64, timesteps: 1000, limit: 0, batchSize: 32, lr: 1e-3, seed, ema }));
}

test('training on the fast path and the plain path from one seed gives the same losses', { skip }, async () => {
  const data = loadMnist('train', 256);
  const losses = async (backend: string) => {
    await tf.setBackend(backend);
    const t = trainer(5);
    const out = Array.from({ length: 8 }, (_, i) => t.trainStep(data, Array.from({ length: 32 }, (_, j) => 32 * i + j)));
    t.dispose();
    return out;
  };
  const fast = await losses(BLAS_BACKEND);
  const plain = await losses('cpu');
  fast.forEach((l, i) => assert.ok(Math.abs(l - plain[i]) < 1e-4 * plain[i], `step ${i}: ${l} vs ${plain[i]}`));
});

test('a U-net trained on the fast path (Winograd and direct convolutions) and on the plain path from one seed gives the same losses', { skip }, async () => {
  // 8-px noise images: tfjs's cpu kernels take seconds per U-net step even this small.
  const rng = new Rng(3), side = 8, count = 12;
  const images = { count, height: side, width: side, channels: 1, data: Float32Array.from({ length: count * side * side }, () => 2 * rng.uniform() - 1) };
  const losses = async (backend: string) => {
    await tf.setBackend(backend);
    const record = resolveNewRun('default', { model: 'unet', data: 'test-images', imageSize: side, channels: 1, baseChannels: 16, channelMults: [1, 2], attentionResolutions: [4], limit: 0, batchSize: 4, seed: 4 } as never);
    const t = new Trainer(record);
    const out = Array.from({ length: 3 }, (_, i) => t.trainStep(images, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]));
    t.dispose();
    return out;
  };
  const fast = await losses(BLAS_BACKEND);
  const plain = await losses('cpu');
  fast.forEach((l, i) => assert.ok(Math.abs(l - plain[i]) < 1e-4 * plain[i], `step ${i}: ${l} vs ${plain[i]}`));
});

test('the U-net\'s residual and attention blocks, each one recorded operation with its gradient written out on blas, have the op-by-op gradients of the cpu backend', { skip }, async () => {
  // Blocks with and without a skip convolution (16 → 32 → 32 channels, and the up path's concatenations),
  // attention at 4 px, 6x6 images cut into 3x3 (odd sides), 3 images with other timesteps.
  const config = { kind: 'unet', classes: 0, height: 6, imageWidth: 6, channels: 1, baseChannels: 16, channelMults: [1, 2], blocksPerStage: 1, patchSize: 1, attentionResolutions: [3], groups: 8, heads: 4, outputNorm: false } as const;
  const rng = new Rng(8);
  const x = Float32Array.from({ length: 3 * 36 }, () => 2 * rng.uniform() - 1);
  const target = Float32Array.from({ length: 3 * 36 }, () => rng.normal());
  const gradients = async (backend: string) => {
    await tf.setBackend(backend);
    const model = buildModel({ ...config, channelMults: [...config.channelMults], attentionResolutions: [...config.attentionResolutions] }, new Rng(2));
    const names = [...model.variables.keys()];
    const out = tf.tidy(() => {
      const xs = tf.tensor2d(x, [3, 36]);
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.predict(xs, tf.tensor1d([0.05, 0.5, 0.95])), tf.tensor2d(target, [3, 36]))) as tf.Scalar, [...model.variables.values()]);
      const byName = new Map([...model.variables].map(([name, v]) => [v.name, name]));
      const named = new Map(Object.entries(grads).map(([id, g]) => [byName.get(id)!, { shape: g.shape, values: g.dataSync() as Float32Array }]));
      return [{ shape: [], values: value.dataSync() as Float32Array }, ...names.map((name) => named.get(name)!)];
    });
    model.dispose();
    return { names, out };
  };
  const blas = await gradients(BLAS_BACKEND);
  const cpu = await gradients('cpu');
  assert.deepEqual(blas.names, cpu.names);
  assert.ok(blas.names.some((n) => n.endsWith('/skip/kernel')) && blas.names.some((n) => n.includes('attn')), 'the net has skip convolutions and attention');
  blas.out.forEach((g, i) => assertClose([g], [cpu.out[i]], i === 0 ? 'the objective' : `the gradient of ${blas.names[i - 1]}`, 1e-4, 1e-4));
  await tf.setBackend(BLAS_BACKEND);
});

test('the weights\' moving average on the fast path (in place) is d·average + (1 − d)·weights after every step, and its updates match the plain path\'s', { skip }, async () => {
  const data = loadMnist('train', 128);
  const DECAY = 0.9;
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const t = trainer(3, DECAY);
    const names = [...t.model.variables.keys()];
    const values = (vars: ReadonlyMap<string, tf.Variable>) => names.map((n) => Float64Array.from(vars.get(n)!.dataSync()));
    const initial = values(t.model.variables);
    // The reference, in float64: the average starts at the weights, then after update s (1-based)
    // average ← d·average + (1 − d)·weights with d = min(DECAY, (1 + s) / (10 + s)) (src/optim/ema.ts).
    let expected = values(t.model.variables);
    let error = 0;
    let largestStep = 0;
    for (let s = 1; s <= 4; s++) {
      const before = values(t.model.variables);
      t.trainStep(data, Array.from({ length: 32 }, (_, j) => 32 * (s - 1) + j));
      const weights = values(t.model.variables);
      const d = Math.min(DECAY, (1 + s) / (10 + s));
      expected = expected.map((e, k) => e.map((v, j) => d * v + (1 - d) * weights[k][j]));
      values(t.ema!.shadow).forEach((average, k) =>
        average.forEach((v, j) => {
          error = Math.max(error, Math.abs(v - expected[k][j]));
          largestStep = Math.max(largestStep, Math.abs(weights[k][j] - before[k][j]));
        }),
      );
    }
    const out = { initial, weights: values(t.model.variables), average: values(t.ema!.shadow), error, largestStep };
    t.dispose();
    return out;
  };
  const fast = await run(BLAS_BACKEND);
  const plain = await run('cpu');
  for (const [path, r] of [['fast', fast], ['plain', plain]] as const) {
    // Adam at 1e-3 moves weights by about 1e-3 a step; the average is right to float32 rounding, far below that.
    assert.ok(r.largestStep > 5e-4, `${path}: the weights moved by ${r.largestStep}`);
    assert.ok(r.error < 1e-6, `${path} path: the average is off the reference by up to ${r.error}`);
  }
  // The two paths' updates (of the weights and of the average) agree to a thousandth of their size.
  const relative = (what: 'weights' | 'average') => {
    let diff = 0;
    let size = 0;
    fast[what].forEach((a, k) =>
      a.forEach((v, j) => {
        const reference = plain[what][k][j] - plain.initial[k][j];
        diff += (v - fast.initial[k][j] - reference) ** 2;
        size += reference ** 2;
      }),
    );
    return Math.sqrt(diff / size);
  };
  for (const what of ['weights', 'average'] as const) assert.ok(relative(what) < 1e-3, `${what}: updates differ by ${relative(what)} of their size`);
  // Both start from the same weights, and the average is not the weights themselves (no storage shared with them).
  assert.deepEqual(fast.initial, plain.initial);
  assert.notDeepEqual(fast.average[0], fast.weights[0]);
});

test('memory stays flat over training steps on the fast path', { skip }, async () => {
  await tf.setBackend(BLAS_BACKEND);
  const data = loadMnist('train', 256);
  const t = trainer(1);
  t.trainStep(data, [0, 1, 2]);
  const { numTensors, numBytes } = tf.memory();
  for (let i = 0; i < 10; i++) t.trainStep(data, [3 * i, 3 * i + 1, 3 * i + 2]);
  assert.equal(tf.memory().numTensors, numTensors);
  assert.equal(tf.memory().numBytes, numBytes);
  t.dispose();
  // The U-net (convolutions, GroupNorm, attention, the average) too.
  const u = new Trainer(resolveNewRun('default', { model: 'unet', baseChannels: 8, channelMults: [1, 2], attentionResolutions: [16], limit: 0, batchSize: 4, seed: 2 }));
  const digits = padImages(data, 2);
  u.trainStep(digits, [0, 1, 2, 3]);
  const before = tf.memory();
  for (let i = 1; i < 8; i++) u.trainStep(digits, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]);
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
  u.dispose();
});

test('Conv2D and both its gradients match the cpu kernels for strides, paddings, dilations and odd sizes', { skip }, () => {
  let seed = 500;
  const cases: { x: number[]; f: number[]; strides: number; pad: 'same' | 'valid' | number; dilations?: number }[] = [
    { x: [2, 8, 8, 3], f: [3, 3, 3, 5], strides: 1, pad: 'same' },
    { x: [3, 7, 5, 4], f: [3, 3, 4, 2], strides: 2, pad: 'same' },
    { x: [1, 9, 9, 2], f: [3, 2, 2, 3], strides: 1, pad: 'valid' },
    { x: [2, 6, 6, 5], f: [1, 1, 5, 7], strides: 1, pad: 'same' },
    { x: [2, 10, 10, 3], f: [3, 3, 3, 4], strides: 1, pad: 1, dilations: 2 },
    { x: [40, 16, 16, 8], f: [3, 3, 8, 8], strides: 1, pad: 'same' }, // more than one chunk of images
    // The direct path (stride 1, channels in multiples of 16, or 8 into the filter gradient):
    { x: [3, 8, 8, 16], f: [3, 3, 16, 32], strides: 1, pad: 'same' },
    { x: [2, 7, 11, 32], f: [3, 3, 32, 16], strides: 1, pad: 'same' }, // rows not a multiple of 8 pixels
    { x: [2, 9, 9, 16], f: [3, 3, 16, 16], strides: 1, pad: 'valid' },
    { x: [2, 6, 6, 16], f: [5, 5, 16, 16], strides: 1, pad: 1 },
    { x: [2, 8, 8, 8], f: [3, 3, 8, 16], strides: 1, pad: 'same' }, // direct filter gradient, im2col input gradient
    { x: [2, 8, 8, 16], f: [3, 3, 16, 3], strides: 1, pad: 'same' }, // direct input gradient only
    { x: [2, 5, 9, 24], f: [3, 3, 24, 16], strides: 1, pad: 'same' }, // a row of one full tile and 3 pixels over
    { x: [1, 4, 3, 40], f: [3, 3, 40, 32], strides: 1, pad: 'same' }, // rows shorter than a tile; input channels not a multiple of the filter-gradient tile
  ];
  // All three 3x3 paths: Winograd F(4x4, 3x3) tiles (the default), F(2x2, 3x3) tiles, the direct loops.
  for (const winograd of ['4', '2', '0'])
    withEnv('DIFFUSE_WINOGRAD', winograd, () => {
      for (const c of cases) {
        const x = random(c.x, ++seed), filter = random(c.f, ++seed);
        const what = `conv x=[${c.x}] filter=[${c.f}] stride ${c.strides} pad ${c.pad} (DIFFUSE_WINOGRAD=${winograd})`;
        const conv = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad, 'NHWC', c.dilations ?? 1);
        compare(what, [x, filter], conv, 1e-3);
        if (c.dilations) continue; // tfjs has no gradient for dilated convolutions
        // The output gradient is a fixed pattern, so the gradients test the gradient kernels alone (a
        // probe of the output's own values, sin(conv), multiplied the forward pass's rounding by |conv|,
        // up to ~60 here, and failed on a change of summation order); the float64 test below bounds each
        // kernel's own error.
        const grads = (a: tf.Tensor, b: tf.Tensor) => {
          const g = tf.grads((p: tf.Tensor, q: tf.Tensor) => {
            const y = conv(p, q);
            return tf.sum(tf.mul(y, tf.sin(tf.mul(tf.reshape(tf.range(0, y.size), y.shape), 0.7))));
          });
          return g([a, b]);
        };
        compare(`${what}: gradients`, [x, filter], grads, 2e-3, 3e-5);
      }
    });
});

test('convolutions and 1x1 products with their bias (fused ops) and their gradients match the cpu kernels', { skip }, () => {
  let seed = 980;
  // (the 1x1 cases: 50 rows on sgemm, 512 rows into 16 channels on the direct loops as a skinny product)
  for (const [x, f] of [[[2, 8, 8, 16], [3, 3, 16, 32]], [[2, 7, 5, 16], [3, 3, 16, 1]], [[3, 6, 6, 3], [3, 3, 3, 16]], [[2, 5, 5, 8], [1, 1, 8, 24]], [[2, 16, 16, 8], [1, 1, 8, 16]]]) {
    const [b, h, w] = x, c = f[3];
    // a bias per channel; for 3x3 filters one per image and channel (the U-net's time shift); one per output value (a residual)
    const biases = f[0] === 1 ? [[c], [b * h * w, c]] : [[c], [b, 1, 1, c], [b, h, w, c]];
    for (const biasShape of biases) {
      const inputs = [random(x, ++seed), random(f, ++seed), random(biasShape, ++seed)];
      const fused = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
        f[0] === 1
          ? tf.fused.matMul({ a: tf.reshape(p, [-1, f[2]]), b: tf.reshape(q, [f[2], c]), bias: r })
          : tf.fused.conv2d({ x: p as tf.Tensor4D, filter: q as tf.Tensor4D, strides: 1, pad: 'same', bias: r });
      // the bias goes in as Winograd's F(4x4) or F(2x2) tiles store their outputs, else in a pass after the direct loops
      for (const winograd of ['4', '2', '0'])
        withEnv('DIFFUSE_WINOGRAD', winograd, () => {
          const what = `fused conv x=[${x}] filter=[${f}] with bias [${biasShape}]`;
          compare(`${what} (DIFFUSE_WINOGRAD=${winograd})`, inputs, fused, 1e-3);
          compare(`${what}: gradients`, inputs, (p, q, r) => tf.grads((u: tf.Tensor, v: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(fused(u, v, z), tf.cos(fused(u, v, z)))))([p, q, r]), 2e-3, 3e-5);
        });
    }
  }
});

function withEnv(name: string, value: string, f: () => void): void {
  const before = process.env[name];
  process.env[name] = value;
  try {
    f();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/** A convolution's three modes summed in float64, straight from the definition (the addon's geometry). */
function convReference(mode: 0 | 1 | 2, g: number[], a: Float32Array, b: Float32Array): Float64Array {
  const [B, H, W, CI, OH, OW, CO, KH, KW, sH, sW, pT, pL] = g;
  const out = new Float64Array(mode === 0 ? B * OH * OW * CO : mode === 1 ? B * H * W * CI : KH * KW * CI * CO);
  for (let n = 0; n < B; n++)
    for (let oy = 0; oy < OH; oy++)
      for (let ox = 0; ox < OW; ox++)
        for (let ky = 0; ky < KH; ky++)
          for (let kx = 0; kx < KW; kx++) {
            const iy = oy * sH + ky - pT, ix = ox * sW + kx - pL;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            for (let ci = 0; ci < CI; ci++)
              for (let co = 0; co < CO; co++) {
                const xi = ((n * H + iy) * W + ix) * CI + ci, fi = ((ky * KW + kx) * CI + ci) * CO + co, yi = ((n * OH + oy) * OW + ox) * CO + co;
                if (mode === 0) out[yi] += a[xi] * b[fi];
                else if (mode === 1) out[xi] += a[yi] * b[fi];
                else out[fi] += a[xi] * b[yi];
              }
          }
  return out;
}

test('3x3 convolutions on Winograd tiles (4x4 and 2x2), on the direct loops and into few channels match a float64 reference on odd shapes', { skip }, () => {
  const addon = loadNativeAddon()!;
  let seed = 900;
  // batch, in H, W, C, out H, W, C, kernel H, W, strides, padding top, left, dilations (the addon's geometry)
  const cases = [
    [2, 7, 11, 32, 7, 11, 16, 3, 3, 1, 1, 1, 1, 1, 1], // odd sides: the last tiles hang over the edge
    [3, 8, 8, 16, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1],
    [2, 9, 9, 16, 7, 7, 16, 3, 3, 1, 1, 0, 0, 1, 1], // no padding
    [1, 1, 1, 16, 1, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1], // one pixel: one tile, mostly outside
    [2, 4, 4, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1, 1, 1], // a 64-px U-net's deepest layer: one 4x4 tile per image
    [2, 5, 9, 24, 5, 9, 48, 3, 3, 1, 1, 1, 1, 1, 1], // input channels not a multiple of 16 (im2col input gradient)
    [3, 12, 12, 96, 12, 12, 96, 3, 3, 1, 1, 1, 1, 1, 1], // more tiles than one chunk at 96 channels
    [2, 6, 5, 16, 6, 5, 16, 3, 3, 1, 1, 2, 0, 1, 1], // lopsided padding: a row cut below, columns past the right edge
    // Few output channels (a U-net's last layer), forward and the input gradient of their mirror image:
    [2, 7, 11, 16, 7, 11, 1, 3, 3, 1, 1, 1, 1, 1, 1],
    [3, 9, 6, 32, 9, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1],
    [2, 5, 7, 8, 5, 7, 12, 3, 3, 1, 1, 1, 1, 1, 1], // 8 input channels: a run of 24 values
    [2, 6, 6, 3, 6, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1], // an input gradient into 3 channels
    [1, 9, 9, 16, 7, 7, 5, 3, 3, 1, 1, 0, 0, 1, 1], // no padding
  ];
  for (const geometry of cases) {
    const [B, H, W, CI, OH, OW, CO, KH, KW] = geometry;
    const x = random([B * H * W * CI], ++seed).values, filter = random([KH * KW * CI * CO], ++seed).values, dy = random([B * OH * OW * CO], ++seed).values;
    for (const mode of [0, 1, 2] as const) {
      const [a, b] = mode === 0 ? [x, filter] : mode === 1 ? [dy, filter] : [x, dy];
      const expected = convReference(mode, geometry, a, b);
      const largest = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      // F(4x4, 3x3)'s transforms (entries up to 8 and 1/24) multiply float32 rounding about tenfold:
      // measured 1-5e-6 of the largest value up to 96 channels and 1.3e-5 at 128, against 1-8e-7 for
      // F(2x2, 3x3) and the direct loops.
      for (const [winograd, tolerance] of [['4', 2e-5], ['2', 2e-6], ['0', 2e-6]] as const)
        withEnv('DIFFUSE_WINOGRAD', winograd, () => {
          const out = new Float32Array(expected.length).fill(Number.NaN);
          addon.conv(mode, Int32Array.from(geometry), a, b, out);
          const worst = out.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0);
          assert.ok(worst <= tolerance * largest, `conv [${geometry}] mode ${mode} DIFFUSE_WINOGRAD=${winograd}: off by ${worst} of ${largest}`);
        });
    }
  }
});

test('the attention block on blas (one kernel for all heads, no attention matrices; one recorded operation) and its gradients match the composed tfjs ops', { skip }, () => {
  let seed = 950;
  // [batch, height, width, channels], heads: odd token counts and head widths, one head, one token, a 64-px U-net's 16x16 attention;
  // query rows go in blocks (a last block of 1-5 rows), channels in vectors of 16 and 8 then one at a time (24: 16 + 8; 12: 8 + 4; 4: 4), the 32-px U-net's 8x8
  for (const [shape, heads] of [[[3, 5, 3, 12], 3], [[2, 3, 3, 8], 1], [[2, 1, 1, 8], 2], [[2, 16, 16, 32], 4], [[2, 7, 5, 48], 2], [[2, 3, 5, 12], 1], [[2, 8, 8, 64], 4]] as [number[], number][]) {
    const c = shape[3];
    const groups = 4;
    // projections at their initial scale (N(0, 1/c)): N(0, 1) ones make logits of ~±100, where float32's
    // rounding of the logits alone moves outputs that cancel to near zero by more than 1e-4
    const projection = () => { const r = random([c, c], ++seed); return { shape: r.shape, values: r.values.map((x) => x / Math.sqrt(c)) }; };
    const inputs = [random(shape, ++seed), random([c], ++seed), random([c], ++seed), projection(), projection(), projection(), projection(), random([c], ++seed)];
    // x + attention(GroupNorm(x)): the block on blas, op by op (groupNorm, selfAttention) on cpu
    const block = (...t: tf.Tensor[]) => {
      const [x, gamma, beta, q, k, v, out, outBias] = t as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
      if (tf.getBackend() === BLAS_BACKEND) return attentionBlock(x, { norm: { gamma, beta }, q, k, v, out: { kernel: out, bias: outBias } }, groups, heads);
      return tf.add(x, selfAttention(groupNorm(x, groups, gamma, beta), heads, { q, k, v, out, outBias }));
    };
    compare(`attention ${shape}, ${heads} heads`, inputs, block, 1e-4);
    const probe = random([...shape], ++seed);
    compare(`attention gradients ${shape}, ${heads} heads`, [...inputs, probe], (...t) => {
      const g = t[t.length - 1];
      return tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(block(...a), g)))(t.slice(0, -1));
    }, 1e-3, 1e-5);
  }
});

test('fused GroupNorm and SiLU and their gradients match the composed tfjs ops', { skip }, () => {
  let seed = 700;
  const z = random([3, 70001], ++seed); // above the size where the kernel goes parallel
  compare('silu', [z], (a) => silu(a), 1e-4);
  compare('silu gradient', [z], (a) => tf.grad((p: tf.Tensor) => tf.sum(tf.mul(silu(p), tf.cos(p))))(a), 1e-4);
  // exp's ends: underflow to 0, overflow (also past int32 in the exponent) to ∞, NaN kept
  tf.setBackend(BLAS_BACKEND);
  const ends = [-1e30, -3e9, -200, -88, 88, 200, 3e9, 1e30, NaN];
  const got = tf.tidy(() => silu(tf.tensor1d(ends)).dataSync());
  ends.forEach((x, i) => {
    const want = Math.fround(x / (1 + Math.exp(-x))); // in float32: -200 gives 0
    assert.ok(Number.isNaN(x) ? Number.isNaN(got[i]) : Math.abs(got[i] - want) <= 1e-5 * Math.abs(want), `silu(${x}) = ${got[i]}, not ${want}`);
  });
  // Attention's softmax(scale·x) over rows of odd lengths, and its gradient, against tfjs's composition.
  for (const shape of [[3, 5, 7], [2, 64, 64], [1, 1]]) {
    const logits = random(shape, shape.length * 31 + shape[shape.length - 1]);
    compare(`scaled softmax ${shape}`, [logits], (a) => scaledSoftmax(a, 0.35), 1e-5);
    compare(`scaled softmax gradient ${shape}`, [logits], (a) => tf.grad((p: tf.Tensor) => tf.sum(tf.mul(scaledSoftmax(p, 0.35), tf.cos(tf.mul(p, 3)))))(a), 1e-4);
  }
  // sums in registers over 4 rows, runs of 64 rows: 63 rows (a 3-row tail), 130 (runs of 64, 64, 2), 6 channels (no registers)
  for (const [shape, groups] of [[[2, 4, 4, 8], 4], [[3, 5, 3, 6], 3], [[1, 8, 8, 32], 8], [[3, 32, 32, 16], 8], [[2, 9, 7, 24], 3], [[1, 10, 13, 16], 4]] as [number[], number][]) {
    const x = random(shape, ++seed), gamma = random([shape[3]], ++seed), beta = random([shape[3]], ++seed);
    // alone, and fused with the SiLU that follows it in the U-net (against silu(groupNorm) composed on cpu);
    // the forward pass outside a gradient (x̂ not kept), the gradients with it
    for (const thenSilu of [false, true]) {
      const what = `groupNorm${thenSilu ? ' + SiLU' : ''} [${shape}] / ${groups}`;
      const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => groupNorm(a as tf.Tensor4D, groups, g as tf.Tensor1D, b as tf.Tensor1D, thenSilu);
      compare(what, [x, gamma, beta], f, 1e-3);
      const grads = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => tf.sum(tf.mul(f(p, q, r), tf.cos(p))))([a, g, b]);
      compare(`${what}: gradients`, [x, gamma, beta], grads, 2e-3);
    }
  }
  // Σx and Σx² in one pass: values far from zero (mean 100, spread 1) keep their variance
  const far = random([2, 6, 6, 8], ++seed);
  far.values.forEach((v, i) => (far.values[i] = 100 + v));
  compare('groupNorm of values around 100', [far, random([8], ++seed), random([8], ++seed)], (a, g, b) => groupNorm(a as tf.Tensor4D, 2, g as tf.Tensor1D, b as tf.Tensor1D), 1e-3);
});

test('slice, split, transpose, softmax, middle-axis broadcasts and the resize gradient match the cpu kernels or a reference', { skip }, () => {
  const x = random([3, 5, 4, 6], 800);
  compare('slice', [x], (a) => tf.slice(a, [1, 0, 2, 1], [2, 5, 2, 4]));
  compare('slice of a 2-d row block', [random([7, 9], 801)], (a) => tf.slice(a, [2, 3], [4, 5]));
  compare('split on the last axis', [x], (a) => tf.split(a, [2, 3, 1], 3));
  compare('split on a middle axis', [x], (a) => tf.split(a, 2, 2));
  compare('concat gradient', [x, random([3, 5, 4, 2], 802)], (a, b) => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.sin(tf.concat([p, q], 3))))([a, b]));
  compare('transpose keeping the last axis', [x], (a) => tf.transpose(a, [0, 2, 1, 3]));
  compare('transpose moving the last axis', [x], (a) => tf.transpose(a, [3, 1, 0, 2]));
  compare('softmax', [random([4, 3, 17], 803)], (a) => tf.softmax(a));
  // nearest-neighbour resize gradient: against the cpu backend's tile gradient (its own resize gradient is wrong for batches)
  const dy = random([3, 8, 6, 5], 808);
  const tiled = on('cpu', [dy], (g) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(upsampleNearest(x as tf.Tensor4D), g)))(tf.zeros([3, 4, 3, 5])));
  const resized = on(BLAS_BACKEND, [dy], (g) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [8, 6]), g)))(tf.zeros([3, 4, 3, 5])));
  assertClose(resized, tiled, 'resize nearest gradient');
  // doubling (the U-net's upsampling, a native kernel both ways), on odd sides and one large enough to split over threads
  for (const [shape, seed] of [[[3, 5, 3, 7], 815], [[4, 16, 16, 40], 816]] as [number[], number][]) {
    const [, h, w] = shape;
    const small = random(shape, seed);
    compare(`resize doubling ${shape}`, [small], (a) => [
      tf.image.resizeNearestNeighbor(a as tf.Tensor4D, [2 * h, 2 * w]),
      tf.image.resizeNearestNeighbor(a as tf.Tensor4D, [2 * h, 2 * w], false, true),
    ]);
    const g = random([shape[0], 2 * h, 2 * w, shape[3]], seed + 100);
    const expected = on('cpu', [g], (d) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(upsampleNearest(x as tf.Tensor4D), d)))(tf.zeros(shape)));
    const actual = on(BLAS_BACKEND, [g], (d) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [2 * h, 2 * w]), d)))(tf.zeros(shape)));
    assertClose(actual, expected, `resize doubling gradient ${shape}`);
  }
  // and against the forward pass's own source pixels (resize an image of pixel indices), where the cpu
  // kernel is also wrong (half-pixel centres, odd sizes)
  for (const [ih, iw, oh, ow, half] of [[3, 4, 5, 7, true], [5, 5, 3, 2, true], [3, 4, 5, 7, false]] as [number, number, number, number, boolean][]) {
    const g = random([1, oh, ow, 1], 810);
    const sources = on('cpu', [], () => tf.image.resizeNearestNeighbor(tf.tensor4d(Float32Array.from({ length: ih * iw }, (_, i) => i), [1, ih, iw, 1]), [oh, ow], false, half))[0].values;
    const expected = new Float32Array(ih * iw);
    sources.forEach((from, i) => (expected[from] += g.values[i]));
    const actual = on(BLAS_BACKEND, [g], (dy) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [oh, ow], false, half), dy)))(tf.zeros([1, ih, iw, 1])));
    assertClose(actual, [{ shape: [1, ih, iw, 1], values: expected }], `resize nearest gradient ${ih}x${iw} → ${oh}x${ow}, half-pixel ${half}`);
  }
  compare('softmax gradient', [random([4, 3, 17], 804)], (a) => tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.softmax(p), tf.cos(p))))(a));
  for (const op of [tf.add, tf.sub, tf.mul]) {
    compare(`${op.name} of a per-image channel shift`, [x, random([3, 1, 1, 6], 805)], (a, b) => [op(a, b), op(b, a)]);
    compare(`${op.name} of a row statistic`, [random([6, 9], 806), random([6, 1], 807)], (a, b) => [op(a, b), op(b, a)]);
  }
  compare('sums over middle axes and the last', [x], (a) => [tf.sum(a, [1, 2]), tf.sum(a, [1, 2], true), tf.sum(a, -1, true), tf.sum(a, 1)]);
  // shapes big enough for the kernels to split over threads (a U-net's first stage)
  const big = random([8, 32, 32, 12], 811);
  compare('large concat, split, shift and sums', [big, random([8, 32, 32, 4], 812), random([8, 1, 1, 12], 813)], (a, b, c) => [
    tf.concat([a, b], 3),
    ...tf.split(a, [5, 7], 3),
    tf.add(a, c),
    tf.sum(a, [1, 2]),
    tf.sum(a, -1),
  ]);
  compare('large softmax', [random([64, 40, 64], 814)], (a) => tf.softmax(a));
});

test('the addon in use is built from this checkout\'s sources with every function; a stale or older build is refused, saying why', { skip }, () => {
  assert.equal(nativeAddonProblem(ADDON), null);
  const copy = path.join(tempDir(), 'diffuse_native.node');
  fs.copyFileSync(ADDON, copy);
  const stamp = path.join(path.dirname(copy), 'diffuse_native.sources');
  assert.match(nativeAddonProblem(copy)!, /built from other sources/, 'no record of its sources');
  fs.writeFileSync(stamp, 'an older hash\n');
  assert.match(nativeAddonProblem(copy)!, /built from other sources than this checkout's native\/ \(out of date\)/);
  fs.copyFileSync(path.join(path.dirname(ADDON), 'diffuse_native.sources'), stamp);
  assert.equal(nativeAddonProblem(copy), null);
  // built from these sources but lacking kernels (as an addon from an older checkout would)
  const older = Object.fromEntries(NATIVE_FUNCTIONS.filter((n) => n !== 'copyRuns' && n !== 'conv').map((n) => [n, () => {}]));
  assert.equal(nativeAddonProblem(copy, () => older), 'the native addon is out of date: it lacks conv, copyRuns');
  assert.match(nativeAddonProblem(path.join(path.dirname(copy), 'none.node'))!, /not found/);
});

test('the addon flushes subnormal results to zero (they made training steps 6x slower)', { skip }, () => {
  const native = loadNativeAddon()!;
  const c = new Float32Array(1);
  native.sgemm(false, false, 1, 1, 1, Float32Array.of(1e-20), Float32Array.of(1e-20), c);
  assert.equal(c[0], 0); // 1e-40 is below float32's smallest normal number
  native.sgemm(false, false, 1, 1, 1, Float32Array.of(1e-15), Float32Array.of(1e-15), c);
  assert.ok(Math.abs(c[0] - 1e-30) < 1e-36);
});

test('the kernels in use are the set DIFFUSE_ISA names, else the widest this CPU runs (test/unit/backend/isa.test.ts runs this file on each)', { skip }, () => {
  const wanted = process.env.DIFFUSE_ISA;
  assert.equal(loadNativeAddon()!.isa, wanted || widestIsa());
});

