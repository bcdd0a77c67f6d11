/** The U-net rows: training throughput of the twin-shaped 32-px U-net and of 64-px RGB U-nets, and the 32-px U-net's sampling time. */
import { RunRecord } from '../../src/config/runRecord';
import { resolveNewRun } from '../../src/config/resolve';
import { ImageSet, loadMnist, padImages } from '../../src/data/mnist';
import { DDPMScheduler } from '../../src/diffusion/schedule';
import { generate } from '../../src/diffusion/sampler';
import { buildModel } from '../../src/models/build';
import { TWIN_32 } from '../../src/models/unet';
import { defaultWorkers, withWorkers } from '../../src/parallel/dataParallel';
import { Rng } from '../../src/rng';
import { Trainer } from '../../src/training/trainer';

/**
 * U-net steps before the timed ones: V8 compiles tfjs's per-operation paths in each thread over the
 * first ~15 steps (after one warm-up step, the next 20 ran 18-28% slower than steps 21-60, on one
 * thread and on two; by fives, steps 6-10 and 11-15 ran at 85-90% of steps 21-60's rate, 16-20 at 98%). The
 * PyTorch twin, compiled ahead, gets 5 (its own default is 3).
 */
const WARM_UP_STEPS = 15;
export const TWIN_WARM_UP_STEPS = 5;

/** Training samples/s of `trainer` over `steps` batches of 64 from `data` (WARM_UP_STEPS more first); disposes it. */
function timeTrainSteps(trainer: Trainer, data: ImageSet, steps: number): number {
  const batch = (i: number) => Array.from({ length: 64 }, (_, j) => 64 * i + j);
  for (let i = 0; i < WARM_UP_STEPS; i++) trainer.trainStep(data, batch(i));
  const started = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) trainer.trainStep(data, batch(WARM_UP_STEPS + i));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  trainer.dispose();
  return (steps * 64) / seconds;
}

/** A trainer on the threads `diffuse train` would use. */
function benchTrainer(record: RunRecord): Trainer {
  return new Trainer(record, undefined, { workers: defaultWorkers(record.model) });
}

/** The 32-px U-net of the PyTorch twin's shape (diffuse's default is larger since the 90-minute run chose it). */
export const unetRecord = () => resolveNewRun('seed', { model: 'unet', timesteps: 1000, limit: 0, batchSize: 64, lr: 2e-4, seed: 0, ...TWIN_32 });

/** Training throughput of the twin-shaped 32-px U-net on MNIST-32 at batch 64. */
export function measureUnet(steps: number): number {
  return timeTrainSteps(benchTrainer(unetRecord()), padImages(loadMnist('train', 64 * (steps + WARM_UP_STEPS)), 2), steps);
}

/** Seconds to sample 64 images with `steps` DDIM steps from the twin-shaped 32-px U-net, as `diffuse sample` would (the twin's sampling bench). */
export function measureUnetSampling(steps: number): number {
  const record = unetRecord();
  const model = withWorkers(buildModel(record.model, new Rng(0)));
  const scheduler = new DDPMScheduler(record.schedule);
  generate(model, scheduler, { n: 64, rng: new Rng(0), sampler: 'ddim', steps: 2, eta: 0 }); // warm-up
  const started = process.hrtime.bigint();
  generate(model, scheduler, { n: 64, rng: new Rng(0), sampler: 'ddim', steps, eta: 0 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  model.dispose();
  return seconds;
}

export type UnetShape = { baseChannels?: number; channelMults?: number[]; attentionResolutions?: number[]; patchSize?: number };
export const rgb64Record = (overrides: UnetShape) => resolveNewRun('seed', { model: 'unet', data: 'bench-images', imageSize: 64, channels: 3, batchSize: 64, lr: 2e-4, seed: 0, ...overrides });

/** Training throughput of a 64-px RGB U-net at batch 64 (random images: speed does not depend on them). */
export function measureUnetRgb64(steps: number, overrides: UnetShape): number {
  const rng = new Rng(1);
  const count = 64 * (steps + WARM_UP_STEPS);
  return timeTrainSteps(benchTrainer(rgb64Record(overrides)), { count, height: 64, width: 64, channels: 3, data: Float32Array.from({ length: count * 64 * 64 * 3 }, () => 2 * rng.uniform() - 1) }, steps);
}
