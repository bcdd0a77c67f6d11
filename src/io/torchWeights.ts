/**
 * A checkpoint's weights as PyTorch names and layouts, in safetensors files: `down1/block0/conv1/kernel`
 * [kh, kw, in, out] is `down1.block0.conv1.weight` [out, in, kh, kw]; a dense kernel [in, out] is
 * `.weight` [out, in]; a norm's gamma and beta are `.weight` and `.bias`. A conditional U-net's class
 * vectors `class/embedding` [classes + 1, channels] are `classes_emb.weight`, an nn.Embedding's table
 * as lucidrains' denoising-diffusion-pytorch names it (the last row "no class"), in the same layout; a
 * conditional FC net's label is columns of its first layer (`in.weight` [w, pixels + 1 + classes + 1]).
 * The averaged weights carry an `ema.` prefix; the run record travels in the metadata, so a file
 * imports back into a checkpoint.
 */
import { RUN_RECORD_VERSION, RunRecord, migrateRunRecord } from '../config/runRecord';
import { CheckpointError } from '../errors';
import { buildModel } from '../models/build';
import { Rng } from '../rng';
import { NamedArray } from './checkpoint';
import { SafeTensor } from './safetensors';

const LEAVES: Record<string, string> = { kernel: 'weight', gamma: 'weight', beta: 'bias', bias: 'bias' };
export const RECORD_KEY = 'diffuse.record';
export const RECORD_VERSION_KEY = 'diffuse.record_version';

/** Weights whose PyTorch name is not their path with dots: tables an nn.Embedding holds as they are (not transposed). */
const EMBEDDINGS: Record<string, string> = { 'class/embedding': 'classes_emb.weight' };

export function torchName(name: string): string {
  if (name in EMBEDDINGS) return EMBEDDINGS[name];
  const parts = name.split('/');
  const leaf = parts.pop()!;
  return [...parts, LEAVES[leaf] ?? leaf].join('.');
}

/** The PyTorch shape of diffuse's weight `name` of `shape` (an embedding table keeps its own). */
export function torchShape(shape: number[], name = ''): number[] {
  if (name in EMBEDDINGS) return shape;
  if (shape.length === 4) return [shape[3], shape[2], shape[0], shape[1]];
  if (shape.length === 2) return [shape[1], shape[0]];
  return shape;
}

/** For each value of a diffuse tensor of `shape`, where PyTorch's layout puts it ([kh, kw, in, out] → [out, in, kh, kw]; [in, out] → [out, in]). */
function torchPositions(shape: number[], name: string): Int32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const at = new Int32Array(size);
  if (name in EMBEDDINGS) {
    for (let k = 0; k < size; k++) at[k] = k;
  } else if (shape.length === 4) {
    const [kh, kw, cin, cout] = shape;
    for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) at[((y * kw + x) * cin + i) * cout + o] = ((o * cin + i) * kh + y) * kw + x;
  } else if (shape.length === 2) {
    const [rows, cols] = shape;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) at[r * cols + c] = c * rows + r;
  } else {
    for (let k = 0; k < size; k++) at[k] = k;
  }
  return at;
}

/** values of diffuse's weight `name` of `shape` in diffuse's layout → PyTorch's. */
export function toTorchLayout(values: Float32Array, shape: number[], name = ''): Float32Array {
  const out = new Float32Array(values.length);
  torchPositions(shape, name).forEach((to, k) => (out[to] = values[k]));
  return out;
}

/** The inverse of toTorchLayout, for diffuse's weight `name` of `shape`. */
export function fromTorchLayout(values: Float32Array, shape: number[], name = ''): Float32Array {
  const out = new Float32Array(values.length);
  torchPositions(shape, name).forEach((from, k) => (out[k] = values[from]));
  return out;
}

/** A checkpoint's weights (and average) as PyTorch tensors, with the record as metadata. */
export function toTorchTensors(record: RunRecord, tensors: ReadonlyMap<string, NamedArray>): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const out = new Map<string, SafeTensor>();
  for (const [prefix, torchPrefix] of [['model/', ''], ['ema/', 'ema.']] as const) {
    for (const [name, t] of tensors) {
      if (!name.startsWith(prefix)) continue;
      const short = name.slice(prefix.length);
      out.set(torchPrefix + torchName(short), { shape: torchShape(t.shape, short), values: toTorchLayout(t.values, t.shape, short) });
    }
  }
  return { tensors: out, metadata: { format: 'pt', [RECORD_KEY]: JSON.stringify(record), [RECORD_VERSION_KEY]: String(RUN_RECORD_VERSION) } };
}

/**
 * The run record and checkpoint arrays (model/ and, where present, ema/) a safetensors file holds, its
 * names and shapes checked against the model its record describes.
 */
export function fromTorchTensors(file: string, tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string>): { record: RunRecord; arrays: Map<string, NamedArray> } {
  const text = metadata[RECORD_KEY];
  if (!text) throw new CheckpointError(`${file} has no diffuse run record in its metadata ("${RECORD_KEY}"); write it with diffuse export --safetensors or diffuse_torch`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CheckpointError(`${file}: its "${RECORD_KEY}" metadata is not JSON`);
  }
  const record = migrateRunRecord(raw, Number(metadata[RECORD_VERSION_KEY] ?? RUN_RECORD_VERSION), file);
  const model = buildModel(record.model, new Rng(0));
  const expected = [...model.variables].map(([name, v]) => ({ name, shape: v.shape }));
  model.dispose();
  const hasAverage = [...tensors.keys()].some((k) => k.startsWith('ema.'));
  const arrays = new Map<string, NamedArray>();
  const known = new Set<string>();
  for (const [prefix, torchPrefix] of hasAverage ? ([['model/', ''], ['ema/', 'ema.']] as const) : ([['model/', '']] as const)) {
    for (const { name, shape } of expected) {
      const key = torchPrefix + torchName(name);
      known.add(key);
      const t = tensors.get(key);
      const want = torchShape(shape, name);
      if (!t) throw new CheckpointError(`${file} does not match its ${record.model.kind} configuration: tensor ${key} [${want}] is missing`);
      if (t.shape.join(',') !== want.join(',')) throw new CheckpointError(`${file} does not match its ${record.model.kind} configuration: ${key} has shape [${t.shape}], the model needs [${want}]`);
      arrays.set(prefix + name, { shape, values: fromTorchLayout(t.values, shape, name) });
    }
  }
  const extra = [...tensors.keys()].filter((k) => !known.has(k));
  if (extra.length > 0) throw new CheckpointError(`${file} does not match its ${record.model.kind} configuration: ${extra.length} unexpected tensor(s), e.g. ${extra[0]}`);
  return { record, arrays };
}
