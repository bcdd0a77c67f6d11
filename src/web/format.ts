/** What `diffuse export --web` writes beside the page: the run record and the sampling weights' index. */
import type { RunRecord } from '../config/runRecord';

export const WEB_MODEL_FILE = 'model.json';
export const WEB_WEIGHTS_FILE = 'weights.bin';

export interface WebModel {
  format: 'diffuse-web-model';
  version: 1;
  record: RunRecord;
  /** The weights in weights.bin, float32 little-endian, one after another in this order. */
  tensors: { name: string; shape: number[] }[];
  /** Whether these are the run's moving average of the weights (what `diffuse sample` uses). */
  averaged: boolean;
  parameters: number;
  exportedAt: string;
}
