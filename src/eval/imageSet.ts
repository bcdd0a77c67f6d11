/**
 * Measures in pixel space for models trained on a folder (the folder classifier's figures are in
 * folderFeatures.ts): memorisation (is each sample a copy of a training image? the copy rule at
 * COPY_ALPHA), diversity (do the samples differ from each other as much as the training images do?)
 * and colour statistics against the data. Distances are RMS pixel
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
 * For each row of `a`, its `k` nearest rows of `b` (k at most b's rows, less one with `excludeSelf`):
 * the nearest one's index and the k RMS distances in increasing order ([a.count, k]); `excludeSelf`
 * (a and b the same set) skips each row's own match. Works through `a` in blocks so the distance
 * matrix stays small.
 */
export function nearestK(a: ImageSet01, b: ImageSet01, k: number, excludeSelf = false): { index: Int32Array; distances: Float32Array; k: number } {
  k = Math.max(0, Math.min(k, b.count - (excludeSelf ? 1 : 0)));
  const index = new Int32Array(a.count).fill(-1);
  const distances = new Float32Array(a.count * k);
  if (k === 0) return { index, distances, k };
  const block = Math.max(1, Math.floor(4e6 / Math.max(1, b.count)));
  const { rows: bt, norms: bNorms } = rowsOf(b);
  const best = new Float64Array(k);
  const bestAt = new Int32Array(k);
  try {
    for (let start = 0; start < a.count; start += block) {
      const rows = Math.min(block, a.count - start);
      const at = tf.tensor2d(a.data.subarray(start * a.dims, (start + rows) * a.dims), [rows, a.dims]);
      const values = squaredDistances(at, bt, bNorms);
      at.dispose();
      for (let i = 0; i < rows; i++) {
        // The k smallest so far, kept sorted (insertion: after the first rows few values enter).
        best.fill(Infinity);
        bestAt.fill(-1);
        for (let j = 0; j < b.count; j++) {
          if (excludeSelf && j === start + i) continue;
          const v = values[i * b.count + j];
          if (v >= best[k - 1]) continue;
          let p = k - 1;
          for (; p > 0 && best[p - 1] > v; p--) {
            best[p] = best[p - 1];
            bestAt[p] = bestAt[p - 1];
          }
          best[p] = v;
          bestAt[p] = j;
        }
        index[start + i] = bestAt[0];
        for (let p = 0; p < k; p++) distances[(start + i) * k + p] = Math.sqrt(Math.max(0, best[p]) / a.dims);
      }
    }
  } finally {
    bt.dispose();
    bNorms.dispose();
  }
  return { index, distances, k };
}

/** k of n indices spread evenly, 0 first (all n when k ≥ n): a conditional draw's classes come in runs, so the first k would show one or two. */
export function spreadIndices(n: number, k: number): number[] {
  const m = Math.min(n, k);
  return Array.from({ length: m }, (_, i) => Math.floor((i * n) / m));
}

/** For each row of `a`, the nearest row of `b` and its RMS distance (nearestK with k = 1). */
export function nearest(a: ImageSet01, b: ImageSet01, excludeSelf = false): { index: Int32Array; distance: Float32Array } {
  const { index, distances } = nearestK(a, b, 1, excludeSelf);
  return { index, distance: distances };
}

/**
 * The copy rule, after Carlini et al. 2023 ("Extracting training data from diffusion models", their
 * CIFAR-10 criterion): an image is a copy when its distance to its nearest training image is at most
 * COPY_ALPHA (1/3) of its mean distance to its COPY_NEIGHBOURS (50) nearest training images (fewer in a
 * smaller set). The distance is judged against the image's own neighbourhood, not against one threshold
 * for the whole set: the old rule's threshold (the 1% quantile of the training images' distances to
 * their nearest other one) is 0 as soon as 1% of the images have an exact duplicate, and then nothing
 * could count as a copy. Here an exact copy of an image that has duplicates is still a copy (its nearest
 * distance is 0, its 50 nearest are not all duplicates), and a near copy of one of a few variants (the
 * emoji's skin tones) too, as its nearest is much nearer than the rest of its 50.
 */
export const COPY_ALPHA = 1 / 3;
export const COPY_NEIGHBOURS = 50;

/** Whether each row is a copy by the rule, from its k sorted nearest distances ([count, k]). */
export function copiesOf(distances: Float32Array, k: number, alpha = COPY_ALPHA): Uint8Array {
  const count = k > 0 ? distances.length / k : 0;
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    let sum = 0;
    for (let p = 0; p < k; p++) sum += distances[i * k + p];
    out[i] = distances[i * k] <= (alpha * sum) / k ? 1 : 0;
  }
  return out;
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
  /** Share of samples that are copies by the copy rule (copiesOf: nearest training image within COPY_ALPHA of the mean distance to their `neighbours` nearest). */
  copies: number;
  /** The neighbours the rule used (COPY_NEIGHBOURS, fewer in a smaller set). */
  neighbours: number;
  /** Share of training images that are copies of another training image by the same rule: the folder's own duplicates. */
  trainCopies: number;
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
  const trainNearest = nearestK(ref, ref, COPY_NEIGHBOURS, true);
  const sampleNearest = nearestK(samples, train, COPY_NEIGHBOURS);
  const share = (flags: Uint8Array) => (flags.length ? flags.reduce((s, x) => s + x, 0) / flags.length : 0);
  const firsts = (d: Float32Array, k: number) => Float32Array.from({ length: k ? d.length / k : 0 }, (_, i) => d[i * k]);
  const mean = (v: Float32Array) => v.reduce((s, x) => s + x, 0) / v.length;
  const samplesPairDistance = meanPairDistance(samples);
  const trainPairDistance = meanPairDistance(ref);
  return {
    n: samples.count,
    copies: share(copiesOf(sampleNearest.distances, sampleNearest.k)),
    neighbours: sampleNearest.k,
    trainCopies: share(copiesOf(trainNearest.distances, trainNearest.k)),
    sampleToTrain: mean(firsts(sampleNearest.distances, sampleNearest.k)),
    trainToTrain: trainNearest.k ? mean(firsts(trainNearest.distances, trainNearest.k)) : 0,
    diversity: samplesPairDistance / trainPairDistance,
    samplesPairDistance,
    trainPairDistance,
    colour: { samples: colourStats(samples, channels), data: colourStats(train, channels) },
    nearestIndex: sampleNearest.index,
  };
}
