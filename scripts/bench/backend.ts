/** One backend's figures, each backend measured in a child process of its own so its peak RSS is its own. */
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, defaultBackendEnv, selectBackend } from '../../src/backend/select';
import { generate, predictNoise } from '../../src/diffusion/sampler';
import { loadMnist } from '../../src/data/mnist';
import { resolveNewRun } from '../../src/config/resolve';
import { forwardFlops } from '../../src/models/flops';
import { Rng } from '../../src/rng';
import { Trainer } from '../../src/training/trainer';
import { ENTRY, Result } from './common';
import { sgemmGflops } from './sgemm';
import { measureUnet, measureUnetRgb64, measureUnetSampling, rgb64Record, unetRecord } from './unet';

/** Child: measure one backend. */
export async function measure(backend: string, trainSteps: number, sampleSteps: number, unetSteps: number, unet64Steps: number): Promise<Result> {
  await selectBackend(backend as BackendChoice, { ...defaultBackendEnv, log: () => {} });
  const trainer = new Trainer(resolveNewRun('seed', { width: 2048, timesteps: 1000, limit: 0, batchSize: 128, lr: 1e-4, seed: 0 }));
  const data = loadMnist('train', 128 * (trainSteps + 5));
  const batch = (i: number) => Array.from({ length: 128 }, (_, j) => 128 * i + j);
  for (let i = 0; i < 5; i++) trainer.trainStep(data, batch(i)); // warm-up
  let started = process.hrtime.bigint();
  for (let i = 0; i < trainSteps; i++) trainer.trainStep(data, batch(5 + i));
  const trainSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  // Sampling: the full 1000 steps where affordable, else the first `sampleSteps` reverse steps, scaled.
  started = process.hrtime.bigint();
  if (sampleSteps >= 1000) {
    generate(trainer.model, trainer.scheduler, { n: 64, rng: new Rng(0), sampler: 'ancestral' });
  } else {
    const rng = new Rng(0);
    let x = rng.fillNormal(new Float32Array(64 * 784));
    const z = new Float32Array(64 * 784);
    for (let t = 999; t > 999 - sampleSteps; t--) {
      x = trainer.scheduler.step(predictNoise(trainer.model, trainer.scheduler, x, 64, t), t, x, rng.fillNormal(z), x);
    }
  }
  const sampleSeconds = (Number(process.hrtime.bigint() - started) / 1e9) * (1000 / Math.min(1000, sampleSteps));
  trainer.dispose();
  const twin64 = { baseChannels: 16, channelMults: [1, 2, 2, 4], attentionResolutions: [16], patchSize: 1 }; // on pixels, as the twin
  return {
    unetTrainSamplesPerSecond: measureUnet(unetSteps),
    unetSampleSeconds: unetSteps > 0 && backend === 'blas' ? measureUnetSampling(100) : undefined,
    unetForwardFlops: await forwardFlops(unetRecord().model),
    sgemmGflops: backend === 'blas' ? sgemmGflops() : undefined,
    ...(unet64Steps > 0
      ? {
          unet64TwinSamplesPerSecond: measureUnetRgb64(unet64Steps, twin64),
          unet64DefaultSamplesPerSecond: measureUnetRgb64(unet64Steps, {}),
          unet64TwinForwardFlops: await forwardFlops(rgb64Record(twin64).model),
          unet64DefaultForwardFlops: await forwardFlops(rgb64Record({}).model),
        }
      : {}),
    backend: tf.getBackend(),
    trainSamplesPerSecond: (trainSteps * 128) / trainSeconds,
    sampleSeconds,
    sampleEstimated: sampleSteps < 1000,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

export function runChild(backend: string, unet64: boolean): Result | null {
  // FC training steps, FC sampling steps, U-net training steps
  const plan: Record<string, [number, number, number]> = { blas: [200, 1000, 20], wasm: [3, 50, 2], cpu: [2, 20, 1], tensorflow: [200, 1000, 20] };
  const [trainSteps, sampleSteps, unetSteps] = plan[backend] ?? [5, 100, 2];
  const r = spawnSync(process.execPath, [ENTRY, '--child', backend, String(trainSteps), String(sampleSteps), String(unetSteps), String(unet64 ? Math.max(1, Math.round(unetSteps / 2)) : 0)], { encoding: 'utf8' });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) {
    console.error(`backend ${backend}: not measured (${r.stderr.trim().split('\n').pop()})`);
    return null;
  }
  return JSON.parse(line) as Result;
}
