/**
 * `npm run bench`: training throughput, sampling time and peak memory of the seed model (w = 2048,
 * batch 128, Adam) on each available backend, beside the PyTorch reference in the same run; and the
 * training throughput of the 32-px convolutional U-net of the twin's shape (MNIST-32, batch 64) beside its PyTorch twin.
 * Each measurement runs in its own process so its peak RSS is its own. The U-net rows also give GFLOP/s:
 * FLOPs per image counted from the layer shapes of one forward pass (2 per multiply-add of every
 * convolution and matrix product; the norms, activations and adds left out), three times that per
 * training sample (forward, input gradient, weight gradient), beside OpenBLAS's sgemm on the same cores.
 * They count a 3x3 convolution's FLOPs as the direct definition does; diffuse's Winograd F(4x4, 3x3)
 * tiles do 4x fewer multiply-adds there, so its figure is the direct-equivalent rate (DIFFUSE_WINOGRAD=0
 * to compare).
 *
 *   npm run bench                       # blas and wasm (those available), and PyTorch if installed
 *   npm run bench -- --backends blas    # a subset; --no-torch skips the reference
 *   npm run bench -- --unet64           # also 64-px RGB U-nets (the twin's configuration and today's default)
 *   npm run bench -- --rounds-only       # only the rounds below (cores; sampling against the twin)
 *
 * With PyTorch, the U-net's sampling (64 images x 100 DDIM steps) is also timed in three rounds of
 * (ours, the twin's), each in a fresh process, and the bench prints the ratio per round and their median,
 * also over the rounds where the machine's cores were worth their count before and after (as below).
 *
 * With blas and `taskset`, the twin-shaped U-net also trains in five rounds of (all cores, then each
 * core alone: one thread, pinned), and the bench prints what all cores together are worth in one
 * core's throughput (the cores' mean), per round and the rounds' median, beside what the machine's
 * cores are worth for plain arithmetic in the same minute (see machineWorth).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, defaultBackendEnv, selectBackend } from '../src/backend/select';
import { loadNativeAddon, tuneNativeEnvironment } from '../src/backend/addon';
import { RunRecord } from '../src/config/runRecord';
import { DDPMScheduler } from '../src/diffusion/schedule';
import { buildModel } from '../src/models/build';
import { TWIN_32 } from '../src/models/unet';
import { forwardFlops } from '../src/models/flops';
import { defaultWorkers, withWorkers } from '../src/parallel/dataParallel';
import { Rng } from '../src/rng';
import { generate, predictNoise } from '../src/diffusion/sampler';
import { Trainer } from '../src/training/trainer';
import { resolveNewRun } from '../src/config/resolve';
import { ImageSet, loadMnist, padImages } from '../src/data/mnist';

const ROOT = path.resolve(__dirname, '..', '..');
const REFERENCE = path.resolve(ROOT, '..', 'shared', 'reference', 'torch_fc_ddpm.py');
/** The exact PyTorch twin of the U-net of shape TWIN_32 (same parameters, names and recipe). */
const UNET_REFERENCE = path.resolve(ROOT, '..', 'shared', 'reference', 'torch_unet_ddpm.py');

interface Result {
  backend: string;
  trainSamplesPerSecond: number;
  sampleSeconds: number;
  /** True where sampling time is extrapolated from a part of the 1000 steps. */
  sampleEstimated: boolean;
  peakRssMb: number;
  /** The twin-shaped 32-px convolutional U-net on MNIST-32, batch 64 (absent for the reference). */
  unetTrainSamplesPerSecond?: number;
  /** Seconds to sample 64 images with 100 DDIM steps from the twin-shaped 32-px U-net. */
  unetSampleSeconds?: number;
  /** FLOPs of one forward pass of the twin-shaped 32-px U-net for one image (and of the 64-px models). */
  unetForwardFlops?: number;
  unet64TwinForwardFlops?: number;
  unet64DefaultForwardFlops?: number;
  /** OpenBLAS sgemm GFLOP/s, 1024³, on all the cores. */
  sgemmGflops?: number;
  /** With --unet64: 64-px RGB U-nets at batch 64, the twin's configuration (16x[1,2,2,4], attention at 16) and today's default. */
  unet64TwinSamplesPerSecond?: number;
  unet64DefaultSamplesPerSecond?: number;
}

/** Child: measure one backend. */
async function measure(backend: string, trainSteps: number, sampleSteps: number, unetSteps: number, unet64Steps: number): Promise<Result> {
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
    generate(trainer.model, trainer.scheduler, { n: 64, rng: new Rng(0) });
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

/**
 * U-net steps before the timed ones: V8 compiles tfjs's per-operation paths in each thread over the
 * first ~15 steps (after one warm-up step, the next 20 ran 18-28% slower than steps 21-60, on one
 * thread and on two; by fives, steps 6-10 and 11-15 ran at 85-90% of steps 21-60's rate, 16-20 at 98%). The
 * PyTorch twin, compiled ahead, gets 5 (its own default is 3).
 */
const WARM_UP_STEPS = 15;
const TWIN_WARM_UP_STEPS = 5;

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
const unetRecord = () => resolveNewRun('seed', { model: 'unet', timesteps: 1000, limit: 0, batchSize: 64, lr: 2e-4, seed: 0, ...TWIN_32 });

/** Training throughput of the twin-shaped 32-px U-net on MNIST-32 at batch 64. */
function measureUnet(steps: number): number {
  return timeTrainSteps(benchTrainer(unetRecord()), padImages(loadMnist('train', 64 * (steps + WARM_UP_STEPS)), 2), steps);
}

/** Seconds to sample 64 images with `steps` DDIM steps from the twin-shaped 32-px U-net, as `diffuse sample` would (the twin's sampling bench). */
function measureUnetSampling(steps: number): number {
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

type UnetShape = { baseChannels?: number; channelMults?: number[]; attentionResolutions?: number[]; patchSize?: number };
const rgb64Record = (overrides: UnetShape) => resolveNewRun('seed', { model: 'unet', data: 'bench-images', imageSize: 64, channels: 3, batchSize: 64, lr: 2e-4, seed: 0, ...overrides });

/** Training throughput of a 64-px RGB U-net at batch 64 (random images: speed does not depend on them). */
function measureUnetRgb64(steps: number, overrides: UnetShape): number {
  const rng = new Rng(1);
  const count = 64 * (steps + WARM_UP_STEPS);
  return timeTrainSteps(benchTrainer(rgb64Record(overrides)), { count, height: 64, width: 64, channels: 3, data: Float32Array.from({ length: count * 64 * 64 * 3 }, () => 2 * rng.uniform() - 1) }, steps);
}

/** OpenBLAS sgemm GFLOP/s for 1024³ on all cores, best of five after one warm-up. */
function sgemmGflops(): number {
  const { product, flops } = sgemmProduct(1024);
  let best = Infinity;
  for (let r = 0; r < 6; r++) {
    const started = process.hrtime.bigint();
    product();
    if (r > 0) best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e9);
  }
  return flops / best / 1e9;
}

/** One n³ sgemm on the addon (on its current thread count) and its FLOPs. */
function sgemmProduct(n: number): { product: () => void; flops: number } {
  const native = loadNativeAddon()!;
  const a = new Float32Array(n * n).fill(0.5), b = new Float32Array(n * n).fill(0.25), c = new Float32Array(n * n);
  return { product: () => native.sgemm(false, false, n, n, n, a, b, c), flops: 2 * n ** 3 };
}

function python(): string | null {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(candidate, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return null;
}

/** The PyTorch reference's own bench, with its peak RSS. */
function torchBench(py: string, extraEnv: Record<string, string>, label: string): Result | null {
  const code = `import resource, runpy, sys; sys.argv = ['ref', 'bench']; runpy.run_path(${JSON.stringify(REFERENCE)}, run_name='__main__'); print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)`;
  const r = spawnSync(py, ['-c', code], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '1', ...extraEnv } });
  const train = /train (\d+) samples\/s/.exec(r.stdout);
  const sample = /~ ([\d.]+) s/.exec(r.stdout);
  const rss = /maxrss (\d+)/.exec(r.stdout);
  if (!train || !sample) {
    console.error(`torch reference failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
    return null;
  }
  return { backend: label, trainSamplesPerSecond: +train[1], sampleSeconds: +sample[1], sampleEstimated: true, peakRssMb: rss ? +rss[1] / 1024 : NaN };
}

/**
 * The U-net twin's training samples/s at `size` px, batch 64, and its seconds for 64 images x 100 DDIM
 * steps (its own bench, both cores); `steps` its warm-up and timed training steps (its default 20 timed).
 */
function torchUnetBench(py: string, extraEnv: Record<string, string>, size = 32, channels = 1, steps: { warmup: number; timed?: number } = { warmup: TWIN_WARM_UP_STEPS }): { train: number; sample?: number } | undefined {
  if (!fs.existsSync(UNET_REFERENCE)) return undefined;
  const timed = steps.timed === undefined ? [] : ['--bench-steps', String(steps.timed)];
  const r = spawnSync(py, [UNET_REFERENCE, 'bench', '--size', String(size), '--channels', String(channels), '--bench-warmup', String(steps.warmup), ...timed], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '1', ...extraEnv } });
  const m = /unet_train_samples_per_s torch ([\d.]+)/.exec(r.stdout);
  const sample = /unet_sample_64x100_s torch ([\d.]+)/.exec(r.stdout);
  if (!m) console.error(`torch U-net twin failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
  return m ? { train: +m[1], sample: sample ? +sample[1] : undefined } : undefined;
}

/**
 * The number a child of this script prints as `key VALUE` after running as `mode` (--unet-rate,
 * --unet-sample): on all cores (core null) or pinned to one core alone, one thread, its kernels
 * single-threaded. Null, with a line on stderr, where it failed.
 */
function childNumber(mode: string, key: string, core: number | null = null): number | null {
  const env = core === null ? process.env : { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' };
  const command = [process.execPath, __filename, mode];
  const [file, ...args] = core === null ? command : ['taskset', '-c', String(core), ...command];
  const r = spawnSync(file, args, { encoding: 'utf8', env });
  const m = new RegExp(`^${key} ([\\d.]+)$`, 'm').exec(r.stdout);
  if (r.status !== 0 || !m) {
    console.error(`${mode} ${core === null ? 'on all cores' : `on core ${core}`}: not measured (${r.stderr.trim().split('\n').pop()})`);
    return null;
  }
  return +m[1];
}

interface SamplingRound {
  ours: number;
  twin: number;
  ratio: number;
  /** The machine's own worth (machineWorth) just before and just after the round; NaN where not probed. */
  machine: [number, number];
}

/**
 * Our sampling time against the twin's in `rounds` rounds of (ours, the twin's), each ratio within its
 * round: the VM's speed drifts by a third from minute to minute, and one pair of runs (as the table's)
 * put the ratio anywhere from 0.4 to 0.63 in earlier sessions. Each round sits between two probes of
 * the machine's cores, as the cores rounds do: both samplers run on both cores.
 */
async function samplingRounds(py: string, rounds: number): Promise<SamplingRound[]> {
  const cores = os.availableParallelism();
  const probe = canPin() && cores > 1 ? () => machineWorth(cores) : async () => NaN;
  const out: SamplingRound[] = [];
  for (let i = 0; i < rounds; i++) {
    const before = await probe();
    // The twin's bench after one training step: sampling's cost does not depend on the weights.
    const ours = childNumber('--unet-sample', 'unet_sample_s');
    const twin = torchUnetBench(py, {}, 32, 1, { warmup: 0, timed: 1 })?.sample ?? null;
    const after = await probe();
    if (ours === null || twin === null) break;
    out.push({ ours, twin, ratio: ours / twin, machine: [before, after] });
  }
  return out;
}

/** Whether `taskset` is here to pin a child to a core. */
const canPin = () => spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;

/** OpenBLAS sgemm GFLOP/s on one thread for 0.7 s, 256³ (its matrices stay in L2: the cores' arithmetic, not memory). */
function probeGflops(): number {
  loadNativeAddon()!.setThreads(1);
  const { product, flops } = sgemmProduct(256);
  product();
  const started = process.hrtime.bigint();
  let calls = 0, seconds = 0;
  while ((seconds = Number(process.hrtime.bigint() - started) / 1e9) < 0.7) {
    product();
    calls += 1;
  }
  return (flops * calls) / seconds / 1e9;
}

/** The probe's GFLOP/s in a child pinned to `core` (NaN where it failed: the round then counts as not a full one). */
function probeOnCore(core: number): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('taskset', ['-c', String(core), process.execPath, __filename, '--probe'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('close', () => {
      const m = /^probe_gflops ([\d.]+)$/m.exec(out);
      if (!m) console.error(`the core probe on core ${core} printed nothing`);
      resolve(m ? +m[1] : NaN);
    });
  });
}

/**
 * What this machine's cores are worth together for arithmetic: the probe on each core alone, then on
 * all at once, sum(together) / mean(alone). On separate physical cores it is the core count; this VM's
 * two vCPUs are at times two hyperthreads of one core (register-only FMA loops then run at half speed
 * on each, and the probe's worth falls from ~2 to ~1), so the U-net's worth means something only
 * beside the machine's own, measured in the same minute.
 */
async function machineWorth(cores: number): Promise<number> {
  const alone: number[] = [];
  for (let core = 0; core < cores; core++) alone.push(await probeOnCore(core));
  const together = await Promise.all(Array.from({ length: cores }, (_, core) => probeOnCore(core)));
  return together.reduce((a, b) => a + b, 0) / (alone.reduce((a, b) => a + b, 0) / cores);
}

interface CoresRound {
  all: number;
  single: number[];
  /** all / mean(single): what all cores together are worth in one core's throughput. */
  worth: number;
  /** The machine's own worth (machineWorth) just before and just after the round. */
  machine: [number, number];
}

/**
 * What all cores are worth in one core's throughput, in `rounds` rounds of (all cores, then each core
 * alone), each between two probes of what the machine's cores are worth for arithmetic: this VM's
 * speed drifts by a third from minute to minute and its vCPUs now and then share a physical core, so
 * each ratio is taken within a round (about 30 s) and read beside the machine's. Null without taskset
 * or with one core.
 */
async function coresWorth(rounds: number): Promise<CoresRound[] | null> {
  const cores = os.availableParallelism();
  if (cores < 2 || !canPin()) return null;
  const out: CoresRound[] = [];
  for (let i = 0; i < rounds; i++) {
    const before = await machineWorth(cores);
    const all = childNumber('--unet-rate', 'unet_rate');
    const single = Array.from({ length: cores }, (_, core) => childNumber('--unet-rate', 'unet_rate', core));
    const after = await machineWorth(cores);
    if (all === null || single.some((r) => r === null)) return null;
    const rates = single as number[];
    out.push({ all, single: rates, worth: all / (rates.reduce((a, b) => a + b, 0) / rates.length), machine: [before, after] });
  }
  return out;
}

/** Rounds whose machine gave its cores' full count (within 5%) before and after: the cores were separate. */
const fullRounds = <R extends { machine: [number, number] }>(rounds: R[], cores: number) => rounds.filter((r) => Math.min(...r.machine) >= 0.95 * cores);

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function runChild(backend: string, unet64: boolean): Result | null {
  // FC training steps, FC sampling steps, U-net training steps
  const plan: Record<string, [number, number, number]> = { blas: [200, 1000, 20], wasm: [3, 50, 2], cpu: [2, 20, 1], tensorflow: [200, 1000, 20] };
  const [trainSteps, sampleSteps, unetSteps] = plan[backend] ?? [5, 100, 2];
  const r = spawnSync(process.execPath, [__filename, '--child', backend, String(trainSteps), String(sampleSteps), String(unetSteps), String(unet64 ? Math.max(1, Math.round(unetSteps / 2)) : 0)], { encoding: 'utf8' });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) {
    console.error(`backend ${backend}: not measured (${r.stderr.trim().split('\n').pop()})`);
    return null;
  }
  return JSON.parse(line) as Result;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    console.log(JSON.stringify(await measure(args[1], +args[2], +args[3], +args[4], +args[5])));
    return;
  }
  if (args[0] === '--probe') {
    console.log(`probe_gflops ${probeGflops().toFixed(2)}`);
    return;
  }
  if (args[0] === '--unet-sample') {
    await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
    console.log(`unet_sample_s ${measureUnetSampling(100).toFixed(3)}`);
    return;
  }
  if (args[0] === '--unet-rate') {
    await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
    console.log(`unet_rate ${measureUnet(20).toFixed(1)}`); // availableParallelism() is 1 under taskset: no worker threads
    return;
  }
  const backendsArg = args.indexOf('--backends');
  const roundsOnly = args.includes('--rounds-only');
  const backends = roundsOnly ? [] : backendsArg >= 0 ? args[backendsArg + 1].split(',') : ['tensorflow', 'blas', 'wasm'];
  const results: Result[] = [];
  for (const b of backends) {
    const r = runChild(b, args.includes('--unet64'));
    if (!r || (b !== r.backend)) continue;
    results.push(r);
    console.log(`train_samples_per_s backend=${r.backend} ${r.trainSamplesPerSecond.toFixed(0)}`);
    console.log(`sample_64x1000_s backend=${r.backend} ${r.sampleSeconds.toFixed(1)}${r.sampleEstimated ? ' (extrapolated)' : ''}`);
    console.log(`peak_rss_mb backend=${r.backend} ${r.peakRssMb.toFixed(0)}`);
    console.log(`unet32_train_samples_per_s backend=${r.backend} ${r.unetTrainSamplesPerSecond?.toFixed(1)}`);
    if (r.unetSampleSeconds) console.log(`unet32_sample_64x100_s backend=${r.backend} ${r.unetSampleSeconds.toFixed(2)}`);
    if (r.unetForwardFlops) console.log(`unet32_forward_mflop_per_image ${(r.unetForwardFlops / 1e6).toFixed(1)}`);
    if (r.sgemmGflops) console.log(`sgemm_1024_gflops backend=${r.backend} ${r.sgemmGflops.toFixed(1)}`);
    if (r.unet64TwinSamplesPerSecond) console.log(`unet64rgb_twin_config_train_samples_per_s backend=${r.backend} ${r.unet64TwinSamplesPerSecond.toFixed(1)}`);
    if (r.unet64DefaultSamplesPerSecond) console.log(`unet64rgb_default_train_samples_per_s backend=${r.backend} ${r.unet64DefaultSamplesPerSecond.toFixed(1)}`);
  }
  const rounds = results.some((r) => r.backend === 'blas') || (roundsOnly && loadNativeAddon()) ? await coresWorth(5) : null;
  const worth = rounds ? median(rounds.map((r) => r.worth)) : null;
  const full = rounds?.length ? fullRounds(rounds, rounds[0].single.length) : [];
  if (rounds && worth) {
    const cores = rounds[0].single.length;
    rounds.forEach((r, i) => console.log(`unet32_train_samples_per_s backend=blas round=${i + 1} all_cores ${r.all.toFixed(1)} ${r.single.map((rate, core) => `one_core=${core} ${rate.toFixed(1)}`).join(' ')} worth ${r.worth.toFixed(2)} machine_worth ${r.machine.map((m) => m.toFixed(2)).join(' ')}`));
    console.log(`unet32_all_cores_worth_one_cores backend=blas ${worth.toFixed(2)} (median of ${rounds.length} rounds: ${rounds.map((r) => r.worth.toFixed(2)).join(', ')}; of ${cores} possible)`);
    console.log(`unet32_all_cores_worth_one_cores_full_rounds backend=blas ${full.length ? median(full.map((r) => r.worth)).toFixed(2) : '-'} (${full.length} of ${rounds.length} rounds with the machine's cores worth >= ${(0.95 * cores).toFixed(2)} before and after)`);
  }
  const references: Result[] = [];
  let sampling: SamplingRound[] = [];
  let samplingFull: SamplingRound[] = [];
  const py = args.includes('--no-torch') ? null : python();
  if (py && fs.existsSync(REFERENCE)) {
    const plain = roundsOnly ? null : torchBench(py, {}, 'torch');
    if (plain) {
      const unet = torchUnetBench(py, {});
      plain.unetTrainSamplesPerSecond = unet?.train;
      plain.unetSampleSeconds = unet?.sample;
      // The same model, so the same FLOPs: the twin's GFLOP/s use ours.
      plain.unetForwardFlops = results[0]?.unetForwardFlops;
      plain.unet64TwinForwardFlops = results[0]?.unet64TwinForwardFlops;
      if (args.includes('--unet64')) plain.unet64TwinSamplesPerSecond = torchUnetBench(py, {}, 64, 3)?.train;
    }
    // The same OpenBLAS kernel choice as ours (see src/native/addon.ts), so the comparison is fair.
    const coretype = process.env.OPENBLAS_CORETYPE ?? tunedCoretype();
    const tuned = coretype && !roundsOnly ? torchBench(py, { OPENBLAS_CORETYPE: coretype }, `torch-${coretype}`) : null;
    for (const r of [plain, tuned]) {
      if (!r) continue;
      references.push(r);
      console.log(`train_samples_per_s backend=${r.backend} ${r.trainSamplesPerSecond.toFixed(0)}`);
      console.log(`sample_64x1000_s backend=${r.backend} ${r.sampleSeconds.toFixed(1)}`);
      console.log(`peak_rss_mb backend=${r.backend} ${r.peakRssMb.toFixed(0)}`);
    }
    for (const ours of results) {
      for (const ref of references) {
        console.log(`ratio_train backend=${ours.backend} vs=${ref.backend} ${(ours.trainSamplesPerSecond / ref.trainSamplesPerSecond).toFixed(2)}`);
        console.log(`ratio_sample_time backend=${ours.backend} vs=${ref.backend} ${(ours.sampleSeconds / ref.sampleSeconds).toFixed(2)}`);
        if (ours.unetTrainSamplesPerSecond && ref.unetTrainSamplesPerSecond) console.log(`ratio_unet32_train backend=${ours.backend} vs=${ref.backend} ${(ours.unetTrainSamplesPerSecond / ref.unetTrainSamplesPerSecond).toFixed(2)}`);
        if (ours.unetSampleSeconds && ref.unetSampleSeconds) console.log(`ratio_unet32_sample_time backend=${ours.backend} vs=${ref.backend} ${(ours.unetSampleSeconds / ref.unetSampleSeconds).toFixed(2)}`);
        if (ours.unet64TwinSamplesPerSecond && ref.unet64TwinSamplesPerSecond) console.log(`ratio_unet64rgb_train backend=${ours.backend} vs=${ref.backend} ${(ours.unet64TwinSamplesPerSecond / ref.unet64TwinSamplesPerSecond).toFixed(2)}`);
      }
    }
    if ((results.some((r) => r.backend === 'blas') || roundsOnly) && fs.existsSync(UNET_REFERENCE)) {
      sampling = await samplingRounds(py, 3);
      samplingFull = fullRounds(sampling, os.availableParallelism());
      sampling.forEach((r, i) => console.log(`unet32_sample_64x100_s round=${i + 1} blas ${r.ours.toFixed(2)} torch ${r.twin.toFixed(2)} ratio ${r.ratio.toFixed(2)} machine_worth ${r.machine.map((m) => m.toFixed(2)).join(' ')}`));
      if (sampling.length) {
        console.log(`ratio_unet32_sample_time_rounds backend=blas vs=torch ${median(sampling.map((r) => r.ratio)).toFixed(2)} (median of ${sampling.length} rounds)`);
        console.log(`ratio_unet32_sample_time_full_rounds backend=blas vs=torch ${samplingFull.length ? median(samplingFull.map((r) => r.ratio)).toFixed(2) : '-'} (${samplingFull.length} of ${sampling.length} rounds with the machine's cores worth >= ${(0.95 * os.availableParallelism()).toFixed(2)} before and after)`);
      }
    }
  } else if (!args.includes('--no-torch')) {
    console.error('PyTorch not found (apt-get install -y python3-torch python3-numpy libopenblas0-pthread): no reference');
  }
  const rows = [...results, ...references];
  const num = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
  const wide = args.includes('--unet64');
  // Training GFLOP/s: three forward passes' FLOPs per sample.
  const gflops = (sps?: number, flops?: number) => (sps && flops ? ((3 * flops * sps) / 1e9).toFixed(0) : '-');
  const seconds = (v?: number) => (v === undefined ? '-' : `${v.toFixed(1)} s`);
  if (rows.length) {
    console.log(`\n| backend | FC train samples/s | FC sample 64 x 1000 steps | peak RSS | U-net 32 px train samples/s (GFLOP/s) | U-net 32 px sample 64 x 100 DDIM |${wide ? ' U-net 64 px RGB (twin config) (GFLOP/s) | U-net 64 px RGB (default) (GFLOP/s) |' : ''}`);
    console.log(`|---|---:|---:|---:|---:|---:|${wide ? '---:|---:|' : ''}`);
    for (const r of rows) {
      const extra = wide ? ` ${num(r.unet64TwinSamplesPerSecond)} (${gflops(r.unet64TwinSamplesPerSecond, r.unet64TwinForwardFlops)}) | ${num(r.unet64DefaultSamplesPerSecond)} (${gflops(r.unet64DefaultSamplesPerSecond, r.unet64DefaultForwardFlops)}) |` : '';
      console.log(`| ${r.backend} | ${r.trainSamplesPerSecond.toFixed(0)} | ${r.sampleSeconds.toFixed(1)} s${r.sampleEstimated && !r.backend.startsWith('torch') ? ' (extrapolated)' : ''} | ${r.peakRssMb.toFixed(0)} MB | ${num(r.unetTrainSamplesPerSecond)} (${gflops(r.unetTrainSamplesPerSecond, r.unetForwardFlops)}) | ${seconds(r.unetSampleSeconds)} |${extra}`);
    }
  }
  if (rounds && worth) {
    const cores = rounds[0].single.length;
    console.log(`\nU-net 32 px training, all ${cores} cores against each core alone (pinned, one thread), in ${rounds.length} rounds: ${rounds.map((r) => `${r.all.toFixed(1)} vs ${r.single.map((x) => x.toFixed(1)).join(' / ')} samples/s (worth ${r.worth.toFixed(2)}; machine ${r.machine.map((m) => m.toFixed(2)).join(' / ')})`).join('; ')}. All cores together are worth ${worth.toFixed(2)} of one (the rounds' median)${full.length ? `, ${median(full.map((r) => r.worth)).toFixed(2)} in the ${full.length} rounds where the machine's cores were worth ${cores} (within 5%) for arithmetic` : `; in no round were the machine's cores worth ${cores} for arithmetic`} (machine: sgemm 256³ on one thread per core, all cores at once against each alone, before and after each round).`);
  }
  if (sampling.length) {
    console.log(`\nU-net 32 px sampling, 64 images x 100 DDIM steps, diffuse against the twin in ${sampling.length} rounds (each a process of ours, then the twin's): ${sampling.map((r) => `${r.ours.toFixed(2)} vs ${r.twin.toFixed(2)} s (${r.ratio.toFixed(2)}; machine ${r.machine.map((m) => m.toFixed(2)).join(' / ')})`).join('; ')}. diffuse takes ${median(sampling.map((r) => r.ratio)).toFixed(2)} of the twin's time (the rounds' median)${samplingFull.length ? `, ${median(samplingFull.map((r) => r.ratio)).toFixed(2)} in the ${samplingFull.length} rounds where the machine's cores were worth ${os.availableParallelism()} (within 5%)` : '; in no round were the machine\'s cores worth their count'}.`);
  }
  const sgemm = results.find((r) => r.sgemmGflops)?.sgemmGflops;
  if (sgemm) console.log(`\nOpenBLAS sgemm (1024³, all ${os.availableParallelism()} cores) on this machine: ${sgemm.toFixed(0)} GFLOP/s; U-net GFLOP/s count 3 forward passes per training sample (${((results[0]?.unetForwardFlops ?? 0) / 1e6).toFixed(0)} MFLOP per 32-px image forward), 3x3 convolutions at their direct FLOPs (diffuse's Winograd tiles do ${process.env.DIFFUSE_WINOGRAD === '2' ? '2.25x' : '4x'} fewer${process.env.DIFFUSE_WINOGRAD === '0' ? '; off in this run' : ''}).`);
}

function tunedCoretype(): string | undefined {
  const env: NodeJS.ProcessEnv = {};
  tuneNativeEnvironment(env);
  return env.OPENBLAS_CORETYPE;
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
