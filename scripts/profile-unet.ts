/**
 * Where a U-net training step's time goes, by tfjs kernel (tf.profile), on the blas backend.
 *   node dist/scripts/profile-unet.js [--size 32|64] [--channels 1|3] [--steps N] [--batch B] [--base 16: the twin's 64-px 16x[1,2,2,4], attention 16]
 *     [--forward: a forward pass without gradients instead, as a sampling step runs it] [--by-shape: kernels split by their first input's shape]
 *     [--shape '{"baseChannels":16,"channelMults":[1,2,4],"blocksPerStage":1}': the bench's twin-shaped 32-px net]
 */
import * as tf from '@tensorflow/tfjs';
import { defaultBackendEnv, selectBackend } from '../src/backend/select';
import { Trainer } from '../src/training/trainer';
import { resolveNewRun } from '../src/config/resolve';
import { Rng } from '../src/rng';

async function main(): Promise<void> {
  const arg = (name: string, def: number) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : def;
  };
  const size = arg('--size', 32), channels = arg('--channels', 1), steps = arg('--steps', 3), batchSize = arg('--batch', 64), base = arg('--base', 0);
  const shapeAt = process.argv.indexOf('--shape');
  const shape = shapeAt >= 0 ? (JSON.parse(process.argv[shapeAt + 1]) as object) : {};
  await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
  const trainer = new Trainer(resolveNewRun('seed', { model: 'unet', ...(size === 32 && channels === 1 ? {} : { data: 'bench', imageSize: size, channels }), batchSize, lr: 2e-4, seed: 0, timesteps: 1000, limit: 0, ...(base ? { baseChannels: base, channelMults: [1, 2, 2, 4], attentionResolutions: [16], patchSize: 1 } : {}), ...shape } as never));
  const rng = new Rng(1);
  const count = batchSize * (steps + 1);
  const data = { count, height: size, width: size, channels, data: Float32Array.from({ length: count * size * size * channels }, () => 2 * rng.uniform() - 1) };
  const batch = (i: number) => Array.from({ length: batchSize }, (_, j) => batchSize * i + j);
  const forward = process.argv.includes('--forward');
  const pixels = size * size * channels;
  const x = tf.tensor2d(data.data.subarray(0, batchSize * pixels), [batchSize, pixels]);
  const tFrac = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => (i + 0.5) / batchSize));
  const step = (i: number) => {
    if (forward) tf.tidy(() => { trainer.model.predict(x, tFrac).dataSync(); });
    else trainer.trainStep(data, batch(i));
  };
  const byShape = process.argv.includes('--by-shape');
  step(0);
  const byName = new Map<string, { ms: number; calls: number }>();
  let total = 0;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const prof = await tf.profile(() => { step(1 + s); });
    total += performance.now() - t0;
    for (const k of prof.kernels) {
      const key = byShape ? `${k.name} ${k.inputShapes[0]?.join('x') ?? ''}` : k.name;
      const e = byName.get(key) ?? { ms: 0, calls: 0 };
      e.ms += (k.kernelTimeMs as number) || 0;
      e.calls += 1;
      byName.set(key, e);
    }
  }
  const t1 = performance.now();
  for (let s = 0; s < steps; s++) step(1 + s);
  const plain = (performance.now() - t1) / steps;
  const rows = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const kernelSum = rows.reduce((a, [, e]) => a + e.ms, 0) / steps;
  console.log(`step ${plain.toFixed(1)} ms unprofiled (${((batchSize * 1000) / plain).toFixed(1)} samples/s); profiled ${(total / steps).toFixed(1)} ms, kernels ${kernelSum.toFixed(1)} ms`);
  for (const [name, e] of rows.slice(0, byShape ? 60 : 30)) console.log(`${name.padEnd(byShape ? 48 : 28)} ${(e.ms / steps).toFixed(2).padStart(8)} ms ${String(e.calls / steps).padStart(6)} calls`);
}
main();
