/**
 * safetensors, Hugging Face's tensor file: an 8-byte little-endian header length N, N bytes of JSON
 * ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }, padded
 * with spaces), then the tensors' bytes, little-endian, offsets counted from the end of the header. No
 * npm library for it is maintained, and the format is small: written here, checked strictly on read.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { CheckpointError } from '../errors';
import { writeOutputFile } from '../files';

export interface SafeTensor {
  shape: number[];
  values: Float32Array;
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** The largest header this reader accepts (as the reference implementation: 100 MB). */
const MAX_HEADER = 100_000_000;

/** The file's bytes for `tensors` (float32) in the given order, with string `metadata`. */
export function encodeSafetensors(tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new Error('a tensor cannot be named __metadata__');
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.values.length) throw new Error(`${name}: shape [${t.shape}] holds ${size} values, not ${t.values.length}`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * size] };
    offset += 4 * size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of tensors.values()) {
    out.set(littleEndianBytes(t.values), at);
    at += 4 * t.values.length;
  }
  return out;
}

function littleEndianBytes(values: Float32Array): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (os.endianness() === 'LE') return bytes;
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return out;
}

export function writeSafetensors(file: string, tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string> = {}): void {
  writeOutputFile(file, encodeSafetensors(tensors, metadata));
}

/** The tensors (float32; F64, F16 and BF16 are converted) and metadata of a safetensors file's bytes; anything malformed is refused. */
export function decodeSafetensors(bytes: Uint8Array, what = 'the file'): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const bad = (why: string) => new CheckpointError(`${what} is not a valid safetensors file: ${why}`);
  if (bytes.length < 8) throw bad(`${bytes.length} bytes, too short for the header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) throw bad(`the header length ${n} points past the end of the file (${bytes.length} bytes)`);
  const headerEnd = 8 + Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.subarray(8, headerEnd)).toString('utf8'));
  } catch {
    throw bad('the header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('the header is not a JSON object');
  const metadata: Record<string, string> = {};
  const raw = header.__metadata__;
  if (raw !== undefined) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('__metadata__ is not an object');
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== 'string') throw bad(`metadata ${k} is not a string`);
      metadata[k] = v;
    }
  }
  const dataLength = bytes.length - headerEnd;
  const entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== 'string' || !(e.dtype in BYTES)) throw bad(`${name} has dtype ${JSON.stringify(e?.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`${name} has shape ${JSON.stringify(e.shape)}`);
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
      throw bad(`${name} has data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (end > dataLength) throw bad(`${name}'s data ends at byte ${end} of ${dataLength}: the file is truncated or the header points past its end`);
    const size = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== size * BYTES[e.dtype]) throw bad(`${name}: ${end - begin} bytes for shape [${e.shape}] of ${e.dtype}`);
    entries.push({ name, dtype: e.dtype, shape: e.shape as number[], begin, end });
  }
  // The data must be covered exactly once, without holes or overlaps.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  let expected = 0;
  for (const e of sorted) {
    if (e.begin !== expected) throw bad(e.begin < expected ? `${e.name} overlaps another tensor` : `a hole before ${e.name}`);
    expected = e.end;
  }
  if (expected !== dataLength) throw bad(`${dataLength - expected} bytes after the last tensor`);
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) tensors.set(e.name, { shape: e.shape, values: toFloat32(view, headerEnd + e.begin, e.end - e.begin, e.dtype, e.name, bad) });
  return { tensors, metadata };
}

function toFloat32(view: DataView, at: number, bytes: number, dtype: string, name: string, bad: (why: string) => Error): Float32Array {
  const count = bytes / BYTES[dtype];
  const out = new Float32Array(count);
  if (dtype === 'F32') for (let i = 0; i < count; i++) out[i] = view.getFloat32(at + 4 * i, true);
  else if (dtype === 'F64') for (let i = 0; i < count; i++) out[i] = view.getFloat64(at + 8 * i, true);
  else if (dtype === 'BF16') {
    const f = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < count; i++) {
      f.setUint32(0, view.getUint16(at + 2 * i, true) << 16);
      out[i] = f.getFloat32(0);
    }
  } else if (dtype === 'F16') for (let i = 0; i < count; i++) out[i] = half(view.getUint16(at + 2 * i, true));
  else throw bad(`${name} holds ${dtype}, not floating-point weights`);
  return out;
}

function half(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

export function readSafetensors(file: string): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new CheckpointError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return decodeSafetensors(bytes, file);
}
