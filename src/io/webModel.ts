/** What `diffuse export --web` writes beside the page: the run record and the sampling weights' index. */
import type { RunRecord } from '../config/runRecord';

export const WEB_MODEL_FILE = 'model.json';
export const WEB_WEIGHTS_FILE = 'weights.bin';
/** The guide's sampling weights, where the page was exported with --guide. */
export const WEB_GUIDE_WEIGHTS_FILE = 'guide-weights.bin';

/** A checkpoint's sampling weights as the page loads them: names and shapes in file order. */
export interface WebWeights {
  /** The weights in their file, float32 little-endian, one after another in this order. */
  tensors: { name: string; shape: number[] }[];
  /** Whether these are the run's moving average of the weights (what `diffuse sample` uses). */
  averaged: boolean;
  parameters: number;
}

/** The model in weights.bin; with `guide`, autoguidance by the weights in guide-weights.bin (src/models/autoguidance.ts). */
export interface WebModel extends WebWeights {
  format: 'diffuse-web-model';
  version: 1;
  record: RunRecord;
  exportedAt: string;
  guide?: WebWeights & { record: RunRecord; weight: number };
}
