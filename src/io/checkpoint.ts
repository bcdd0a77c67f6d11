/**
 * Checkpoints: a directory with `checkpoint.json` (configuration, progress, RNG state, tensor index) and
 * one weights file of float32 values it names. Saving writes the new weights file under a new name, then
 * replaces checkpoint.json by rename, then deletes the old weights: a kill at any moment leaves a
 * checkpoint.json that points at a complete weights file. The writer holds the run folder's lock
 * (runLock.ts), so after a save it may remove what killed writers left behind.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as path from 'node:path';
import { CheckpointError } from '../errors';
import { TEMP_MARK, ensureDirectory, processIsGone, writeAtomically } from '../files';
import { RUN_RECORD_VERSION, RunRecord, migrateRunRecord } from '../config/runRecord';
import { assignCopy } from '../tensors';

export const CHECKPOINT_FILE = 'checkpoint.json';
const FORMAT = 'diffuse-checkpoint';

export interface NamedArray {
  shape: number[];
  values: Float32Array;
}

interface CheckpointFile extends RunRecord {
  format: typeof FORMAT;
  version: number;
  savedAt: string;
  weights: string;
  tensors: { name: string; shape: number[] }[];
}

/**
 * For tests only: DIFFUSE_TEST_FAULT=MODE:POINT[:N] makes the Nth save of this process (default 1)
 * kill itself (MODE kill, as a power cut would) or throw (MODE fail, as a full disk would) at POINT:
 * after-weights (new weights in place, checkpoint.json not yet written), before-rename (the new
 * checkpoint.json written and flushed under its temporary name) or after-rename (checkpoint.json
 * replaced, the old weights not yet deleted).
 */
export const FAULT_POINTS = ['after-weights', 'before-rename', 'after-rename'] as const;
let saves = 0;

function faultPoint(point: (typeof FAULT_POINTS)[number]): void {
  const spec = process.env.DIFFUSE_TEST_FAULT;
  if (!spec) return;
  const [mode, where, nth = '1'] = spec.split(':');
  if (where !== point || Number(nth) !== saves) return;
  if (mode === 'kill') process.kill(process.pid, 'SIGKILL');
  throw new Error(`injected fault ${point}`);
}

function isTempOfDeadWriter(name: string): boolean {
  const at = name.lastIndexOf(TEMP_MARK);
  const pid = at < 0 ? NaN : Number(name.slice(at + TEMP_MARK.length));
  return Number.isInteger(pid) && (pid === process.pid || processIsGone(pid));
}

/** Removes weights files the checkpoint does not name and temporary files of dead writers. */
function removeStrays(dir: string, weights: string): void {
  for (const name of fs.readdirSync(dir)) {
    const stray = (/^weights-.*\.bin$/.test(name) && name !== weights) || isTempOfDeadWriter(name);
    if (stray) fs.rmSync(path.join(dir, name), { force: true });
  }
}

export function saveCheckpoint(dir: string, meta: RunRecord, tensors: ReadonlyMap<string, NamedArray>): void {
  saves++;
  ensureDirectory(dir, 'checkpoint directory');
  const previous = readCheckpointFile(dir, false)?.weights;
  let weights = `weights-${String(meta.training.epoch).padStart(5, '0')}-${meta.training.step}.bin`;
  if (weights === previous) weights = weights.replace('.bin', `-${Date.now()}.bin`);

  const bytes = new Uint8Array(concatValues([...tensors.values()]).buffer);
  const file: CheckpointFile = {
    format: FORMAT,
    version: RUN_RECORD_VERSION,
    savedAt: new Date().toISOString(),
    ...meta,
    weights,
    tensors: [...tensors].map(([name, t]) => ({ name, shape: t.shape })),
  };
  try {
    writeAtomically(path.join(dir, weights), bytes);
    faultPoint('after-weights');
    writeAtomically(path.join(dir, CHECKPOINT_FILE), JSON.stringify(file, null, 2) + '\n', () => faultPoint('before-rename'));
    faultPoint('after-rename');
  } catch (e) {
    throw new CheckpointError(`cannot write checkpoint in ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  removeStrays(dir, weights);
}

/** The arrays' values one after another, as a checkpoint's (or an export's) weights file holds them. */
export function concatValues(arrays: readonly NamedArray[]): Float32Array {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.values.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a.values, offset);
    offset += a.values.length;
  }
  return out;
}

/** Where a checkpoint's sampling weights are: its moving average (`ema/`) where the run kept one, else `model/`. */
export function samplingPrefix(tensors: ReadonlyMap<string, unknown>): 'ema/' | 'model/' {
  return [...tensors.keys()].some((k) => k.startsWith('ema/')) ? 'ema/' : 'model/';
}

export function checkpointExists(dir: string): boolean {
  return fs.existsSync(path.join(dir, CHECKPOINT_FILE));
}

function readCheckpointFile(dir: string, required: boolean): CheckpointFile | null {
  const file = path.join(dir, CHECKPOINT_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (!required) return null;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(code === 'ENOENT' ? `no checkpoint in ${dir} (${CHECKPOINT_FILE} not found)` : `cannot read ${file}: ${code}`);
  }
  let parsed: CheckpointFile;
  try {
    parsed = JSON.parse(text) as CheckpointFile;
  } catch {
    if (!required) return null;
    throw new CheckpointError(`corrupt checkpoint: ${file} is not valid JSON`);
  }
  if (parsed?.format !== FORMAT || !Array.isArray(parsed.tensors) || typeof parsed.weights !== 'string') {
    if (!required) return null;
    throw new CheckpointError(`${file} is not a diffuse checkpoint`);
  }
  if (!required) return parsed; // only its weights file's name is wanted
  return { ...parsed, ...migrateRunRecord(parsed as unknown as Record<string, unknown>, parsed.version, file) };
}

/** The run record of the checkpoint in `dir`, without reading its weights. */
export function loadCheckpointRecord(dir: string): RunRecord {
  const { model, schedule, data, training, sampling } = readCheckpointFile(dir, true)!;
  return { model, schedule, data, training, sampling };
}

export function loadCheckpoint(dir: string): { meta: RunRecord; tensors: Map<string, NamedArray> } {
  let file = readCheckpointFile(dir, true)!;
  let weightsPath = path.join(dir, path.basename(file.weights));
  let bytes: Buffer | undefined;
  // A training run may replace the checkpoint between reading its index and its weights (and then
  // delete the weights it named): read the index again while it keeps changing.
  for (let attempt = 0; bytes === undefined; attempt++) {
    try {
      bytes = fs.readFileSync(weightsPath);
    } catch (e) {
      const again = readCheckpointFile(dir, true)!;
      if (attempt >= 10 || again.weights === file.weights) {
        throw new CheckpointError(`corrupt checkpoint: cannot read weights ${weightsPath}: ${(e as NodeJS.ErrnoException).code}`);
      }
      file = again;
      weightsPath = path.join(dir, path.basename(file.weights));
    }
  }
  const sizes = file.tensors.map((t) => t.shape.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  if (bytes.length !== total * 4) {
    throw new CheckpointError(`corrupt checkpoint: ${weightsPath} has ${bytes.length} bytes, expected ${total * 4}`);
  }
  // Copy into an aligned buffer: a Buffer's byteOffset need not be a multiple of 4.
  const floats = new Float32Array(total);
  new Uint8Array(floats.buffer).set(bytes);
  const tensors = new Map<string, NamedArray>();
  let offset = 0;
  file.tensors.forEach((t, i) => {
    tensors.set(t.name, { shape: t.shape, values: floats.subarray(offset, offset + sizes[i]) });
    offset += sizes[i];
  });
  const { model, schedule, data, training, sampling } = file;
  return { meta: { model, schedule, data, training, sampling }, tensors };
}

/** Copies the saved arrays named `prefix + name` into the variables; shapes must agree. */
export function restoreVariables(saved: Map<string, NamedArray>, prefix: string, vars: ReadonlyMap<string, tf.Variable>, required: boolean): void {
  for (const [name, v] of vars) {
    const t = saved.get(`${prefix}${name}`);
    if (!t) {
      if (required) throw new CheckpointError(`checkpoint does not match its model: tensor ${prefix}${name} is missing`);
      continue;
    }
    if (t.shape.join('x') !== v.shape.join('x')) {
      throw new CheckpointError(`checkpoint does not match its model: ${prefix}${name} has shape [${t.shape}], the model needs [${v.shape}]`);
    }
    assignCopy(v, t.values);
  }
}

