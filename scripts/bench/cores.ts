/**
 * What the machine's cores are worth: the twin-shaped U-net trained on all cores against each core alone
 * (pinned, one thread), each round between two probes of the cores' plain arithmetic.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { loadNativeAddon } from '../../src/backend/addon';
import { ENTRY } from './common';
import { sgemmProduct } from './sgemm';

/**
 * The number a child of this script prints as `key VALUE` after running as `mode` (--unet-rate,
 * --unet-sample): on all cores (core null) or pinned to one core alone, one thread, its kernels
 * single-threaded. Null, with a line on stderr, where it failed.
 */
export function childNumber(mode: string, key: string, core: number | null = null): number | null {
  const env = core === null ? process.env : { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' };
  const command = [process.execPath, ENTRY, mode];
  const [file, ...args] = core === null ? command : ['taskset', '-c', String(core), ...command];
  const r = spawnSync(file, args, { encoding: 'utf8', env });
  const m = new RegExp(`^${key} ([\\d.]+)$`, 'm').exec(r.stdout);
  if (r.status !== 0 || !m) {
    console.error(`${mode} ${core === null ? 'on all cores' : `on core ${core}`}: not measured (${r.stderr.trim().split('\n').pop()})`);
    return null;
  }
  return +m[1];
}

/** Whether `taskset` is here to pin a child to a core. */
export const canPin = () => spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;

/** OpenBLAS sgemm GFLOP/s on one thread for 0.7 s, 256³ (its matrices stay in L2: the cores' arithmetic, not memory). */
export function probeGflops(): number {
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
    const child = spawn('taskset', ['-c', String(core), process.execPath, ENTRY, '--probe'], { stdio: ['ignore', 'pipe', 'inherit'] });
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
export async function machineWorth(cores: number): Promise<number> {
  const alone: number[] = [];
  for (let core = 0; core < cores; core++) alone.push(await probeOnCore(core));
  const together = await Promise.all(Array.from({ length: cores }, (_, core) => probeOnCore(core)));
  return together.reduce((a, b) => a + b, 0) / (alone.reduce((a, b) => a + b, 0) / cores);
}

export interface CoresRound {
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
export async function coresWorth(rounds: number): Promise<CoresRound[] | null> {
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
