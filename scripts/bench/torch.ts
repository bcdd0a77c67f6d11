/** The PyTorch references: the FC model's reference, the U-net's exact twin, and sampling rounds against the twin. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { tuneNativeEnvironment } from '../../src/backend/addon';
import { REFERENCE, ROOT, Result, UNET_REFERENCE } from './common';
import { canPin, childNumber, machineWorth } from './cores';
import { TWIN_WARM_UP_STEPS } from './unet';

export function python(): string | null {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(candidate, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return candidate;
  }
  return null;
}

/** The PyTorch reference's own bench, with its peak RSS. */
export function torchBench(py: string, extraEnv: Record<string, string>, label: string): Result | null {
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
export function torchUnetBench(py: string, extraEnv: Record<string, string>, size = 32, channels = 1, steps: { warmup: number; timed?: number } = { warmup: TWIN_WARM_UP_STEPS }): { train: number; sample?: number } | undefined {
  if (!fs.existsSync(UNET_REFERENCE)) return undefined;
  const timed = steps.timed === undefined ? [] : ['--bench-steps', String(steps.timed)];
  const r = spawnSync(py, [UNET_REFERENCE, 'bench', '--size', String(size), '--channels', String(channels), '--bench-warmup', String(steps.warmup), ...timed], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '1', ...extraEnv } });
  const m = /unet_train_samples_per_s torch ([\d.]+)/.exec(r.stdout);
  const sample = /unet_sample_64x100_s torch ([\d.]+)/.exec(r.stdout);
  if (!m) console.error(`torch U-net twin failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
  return m ? { train: +m[1], sample: sample ? +sample[1] : undefined } : undefined;
}

export interface SamplingRound {
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
export async function samplingRounds(py: string, rounds: number): Promise<SamplingRound[]> {
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

export function tunedCoretype(): string | undefined {
  const env: NodeJS.ProcessEnv = {};
  tuneNativeEnvironment(env);
  return env.OPENBLAS_CORETYPE;
}
