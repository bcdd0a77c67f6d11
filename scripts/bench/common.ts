/** What the bench's parts share: where things are, one backend's figures, and the rounds' statistics. */
import * as path from 'node:path';

/** The repository (this file is dist/scripts/bench/common.js). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
/** The bench's entry, which its children run again with a mode flag (--child, --probe, --unet-rate, --unet-sample). */
export const ENTRY = path.resolve(__dirname, '..', 'bench.js');
export const REFERENCE = path.resolve(ROOT, '..', 'shared', 'reference', 'torch_fc_ddpm.py');
/** The exact PyTorch twin of the U-net of shape TWIN_32 (same parameters, names and recipe). */
export const UNET_REFERENCE = path.resolve(ROOT, '..', 'shared', 'reference', 'torch_unet_ddpm.py');

export interface Result {
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

/** Rounds whose machine gave its cores' full count (within 5%) before and after: the cores were separate. */
export const fullRounds = <R extends { machine: [number, number] }>(rounds: R[], cores: number) => rounds.filter((r) => Math.min(...r.machine) >= 0.95 * cores);

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
