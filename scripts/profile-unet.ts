/**
 * Where a U-net training step's time goes, by tfjs kernel (tf.profile), on the blas backend.
 *   node dist/scripts/profile-unet.js [--size 32|64] [--channels 1|3] [--steps N] [--batch B] [--base 16: the twin's 64-px 16x[1,2,2,4], attention 16]
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
  await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
  const trainer = new Trainer(resolveNewRun('seed', { model: 'unet', ...(size === 32 && channels === 1 ? {} : { data: 'bench', imageSize: size, channels }), batchSize, lr: 2e-4, seed: 0, timesteps: 1000, limit: 0, ...(base ? { baseChannels: base, channelMults: [1, 2, 2, 4], attentionResolutions: [16], patchSize: 1 } : {}) } as never));
  const rng = new Rng(1);
  const count = batchSize * (steps + 1);
  const data = { count, height: size, width: size, channels, data: Float32Array.from({ length: count * size * size * channels }, () => 2 * rng.uniform() - 1) };
  const batch = (i: number) => Array.from({ length: batchSize }, (_, j) => batchSize * i + j);
  trainer.trainStep(data, batch(0));
  const byName = new Map<string, { ms: number; calls: number }>();
  let total = 0;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const prof = await tf.profile(() => { trainer.trainStep(data, batch(1 + s)); });
    total += performance.now() - t0;
    for (const k of prof.kernels) {
      const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
      e.ms += (k.kernelTimeMs as number) || 0;
      e.calls += 1;
      byName.set(k.name, e);
    }
  }
  const t1 = performance.now();
  for (let s = 0; s < steps; s++) trainer.trainStep(data, batch(1 + s));
  const plain = (performance.now() - t1) / steps;
  const rows = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const kernelSum = rows.reduce((a, [, e]) => a + e.ms, 0) / steps;
  console.log(`step ${plain.toFixed(1)} ms unprofiled (${((batchSize * 1000) / plain).toFixed(1)} samples/s); profiled ${(total / steps).toFixed(1)} ms, kernels ${kernelSum.toFixed(1)} ms`);
  for (const [name, e] of rows.slice(0, 30)) console.log(`${name.padEnd(28)} ${(e.ms / steps).toFixed(2).padStart(8)} ms ${String(e.calls / steps).padStart(6)} calls`);
}
main();
