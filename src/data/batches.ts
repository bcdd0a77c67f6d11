import { Rng } from '../rng';

/**
 * One epoch's mini-batches as index lists, in an order drawn from `rng`. The last batch is smaller
 * when the set does not divide evenly, so every image is seen once per epoch (also for tiny --limit runs).
 */
export function epochBatches(count: number, batchSize: number, rng: Rng): Uint32Array[] {
  const order = rng.permutation(count);
  const batches: Uint32Array[] = [];
  for (let start = 0; start < count; start += batchSize) batches.push(order.subarray(start, Math.min(start + batchSize, count)));
  return batches;
}

/** Copies the examples named by `indices` (each `size` numbers long) into one contiguous batch. */
export function gatherBatch(data: Float32Array, size: number, indices: ArrayLike<number>): Float32Array {
  const out = new Float32Array(indices.length * size);
  for (let b = 0; b < indices.length; b++) out.set(data.subarray(indices[b] * size, (indices[b] + 1) * size), b * size);
  return out;
}

/** Mirrors, in place, each image of `batch` (height × width × channels each) for which `flip[b]` is set. */
export function mirrorImages(batch: Float32Array, shape: { height: number; width: number; channels: number }, flip: ArrayLike<boolean>): Float32Array {
  const { height, width, channels } = shape;
  const size = height * width * channels;
  for (let b = 0; b < flip.length; b++) {
    if (!flip[b]) continue;
    for (let y = 0; y < height; y++) {
      const row = b * size + y * width * channels;
      for (let x = 0; x < width >> 1; x++) {
        const l = row + x * channels;
        const r = row + (width - 1 - x) * channels;
        for (let c = 0; c < channels; c++) {
          const v = batch[l + c];
          batch[l + c] = batch[r + c];
          batch[r + c] = v;
        }
      }
    }
  }
  return batch;
}
