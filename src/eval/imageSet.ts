/**
 * Measures for models trained on a folder, where no classifier can judge the samples: memorisation
 * (is each sample a copy of a training image?), diversity (do the samples differ from each other as
 * much as the training images do?) and colour statistics against the data. Distances are RMS pixel
 * differences on a 0..1 scale (pixel L2 / √dims), the plain measure behind the usual nearest-neighbour
 * check; computed as |a|² + |b|² − 2a·b with tfjs matrix products.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface ImageSet01 {
  /** Images one after another, dims values each, in [0, 1]. */
  data: Float32Array;
  count: number;
  dims: number;
}

/** From the model's [-1, 1] (quantized to 8 bits, as a saved image would be). */
export function toUnit(images: Float32Array, count: number, dims: number): ImageSet01 {
  return { data: images.map((v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5) / 255), count, dims };
}

/** |a_i − b_j|² for every row of `a` ([m, d]) and of `b` ([n, d], its squared row norms `bNorms`), as [m, n]. */
function squaredDistances(a: tf.Tensor2D, b: tf.Tensor2D, bNorms: tf.Tensor1D): Float32Array {
  const d2 = tf.tidy(() => tf.add(tf.sub(tf.sum(tf.square(a), 1, true), tf.mul(2, tf.matMul(a, b, false, true))), bNorms));
  const values = d2.dataSync() as Float32Array;
  d2.dispose();
  return values;
}

/** A set as a tensor with its rows' squared norms; the caller disposes both. */
function rowsOf(s: ImageSet01): { rows: tf.Tensor2D; norms: tf.Tensor1D } {
  const rows = tf.tensor2d(s.data.subarray(0, s.count * s.dims), [s.count, s.dims]);
  return { rows, norms: tf.tidy(() => tf.sum(tf.square(rows), 1)) };
}

/**
 * For each row of `a`, the nearest row of `b` and its RMS distance; `excludeSelf` (a and b the same
 * set) skips each row's own match. Works through `a` in blocks so the distance matrix stays small.
 */
export function nearest(a: ImageSet01, b: ImageSet01, excludeSelf = false): { index: Int32Array; distance: Float32Array } {
  const index = new Int32Array(a.count);
  const distance = new Float32Array(a.count);
  const block = Math.max(1, Math.floor(4e6 / Math.max(1, b.count)));
  const { rows: bt, norms: bNorms } = rowsOf(b);
  try {
    for (let start = 0; start < a.count; start += block) {
      const rows = Math.min(block, a.count - start);
      const at = tf.tensor2d(a.data.subarray(start * a.dims, (start + rows) * a.dims), [rows, a.dims]);
      const values = squaredDistances(at, bt, bNorms);
      at.dispose();
      for (let i = 0; i < rows; i++) {
        let best = Infinity;
        let bestJ = -1;
        for (let j = 0; j < b.count; j++) {
          if (excludeSelf && j === start + i) continue;
          const v = values[i * b.count + j];
          if (v < best) {
            best = v;
            bestJ = j;
          }
        }
        index[start + i] = bestJ;
        distance[start + i] = Math.sqrt(Math.max(0, best) / a.dims);
      }
    }
  } finally {
    bt.dispose();
    bNorms.dispose();
  }
  return { index, distance };
}

/** Mean RMS distance between distinct images of the set (all pairs). */
export function meanPairDistance(s: ImageSet01): number {
  if (s.count < 2) return 0;
  const { rows, norms } = rowsOf(s);
  const values = squaredDistances(rows, rows, norms);
  rows.dispose();
  norms.dispose();
  let sum = 0;
  for (let i = 0; i < s.count; i++) for (let j = i + 1; j < s.count; j++) sum += Math.sqrt(Math.max(0, values[i * s.count + j]) / s.dims);
  return sum / ((s.count * (s.count - 1)) / 2);
}

/** The q-quantile (0..1) of values, by linear interpolation. */
export function quantile(values: ArrayLike<number>, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (pos - lo);
}

export interface ColourStats {
  /** Per channel, over all pixels of all images. */
  mean: number[];
  std: number[];
}

export function colourStats(s: ImageSet01, channels: number): ColourStats {
  const sum = new Float64Array(channels);
  const sq = new Float64Array(channels);
  for (let i = 0; i < s.data.length; i++) {
    sum[i % channels] += s.data[i];
    sq[i % channels] += s.data[i] * s.data[i];
  }
  const n = s.data.length / channels;
  const mean = Array.from(sum, (v) => v / n);
  return { mean, std: Array.from(sq, (v, c) => Math.sqrt(Math.max(0, v / n - mean[c] ** 2))) };
}

export interface FolderScores {
  n: number;
  /** Share of samples nearer a training image than `threshold` (the 1% quantile of training images' distance to their nearest other one). */
  copies: number;
  threshold: number;
  /** Mean distance of a sample to its nearest training image, and of a training image to its nearest other one. */
  sampleToTrain: number;
  trainToTrain: number;
  /** Mean distance between samples / between training images (1: as varied as the data). */
  diversity: number;
  samplesPairDistance: number;
  trainPairDistance: number;
  colour: { samples: ColourStats; data: ColourStats };
  /** Each sample's nearest training image. */
  nearestIndex: Int32Array;
}

/**
 * Memorisation, diversity and colour of `samples` against `train`. The training set's own distances
 * use at most `referenceLimit` of its images (all pairs grow as its square).
 */
export function scoreAgainstData(samples: ImageSet01, train: ImageSet01, channels: number, referenceLimit = 2000): FolderScores {
  const ref = train.count > referenceLimit ? { ...train, count: referenceLimit, data: train.data.subarray(0, referenceLimit * train.dims) } : train;
  const trainNearest = nearest(ref, ref, true);
  const threshold = quantile(trainNearest.distance, 0.01);
  const sampleNearest = nearest(samples, train);
  let copies = 0;
  for (const d of sampleNearest.distance) if (d <= threshold) copies++;
  const mean = (v: Float32Array) => v.reduce((s, x) => s + x, 0) / v.length;
  const samplesPairDistance = meanPairDistance(samples);
  const trainPairDistance = meanPairDistance(ref);
  return {
    n: samples.count,
    copies: copies / samples.count,
    threshold,
    sampleToTrain: mean(sampleNearest.distance),
    trainToTrain: mean(trainNearest.distance),
    diversity: samplesPairDistance / trainPairDistance,
    samplesPairDistance,
    trainPairDistance,
    colour: { samples: colourStats(samples, channels), data: colourStats(train, channels) },
    nearestIndex: sampleNearest.index,
  };
}
