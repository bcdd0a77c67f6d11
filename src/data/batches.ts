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
