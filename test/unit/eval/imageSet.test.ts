import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { COPY_NEIGHBOURS, ImageSet01, copiesOf, meanPairDistance, nearest, nearestK, quantile, spreadIndices, scoreAgainstData, toUnit } from '../../../src/eval/imageSet';
import { Rng } from '../../../src/rng';
import { useBackend } from '../../helpers';

before(() => useBackend('cpu'));

/** n images of `dims` values: smooth random shapes (a few random blobs), in [0, 1]. */
function shapes(n: number, side: number, rng: Rng): ImageSet01 {
  const dims = side * side;
  const data = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      const cx = rng.uniform() * side;
      const cy = rng.uniform() * side;
      const r = 1 + rng.uniform() * side * 0.3;
      for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) data[i * dims + y * side + x] = Math.min(1, data[i * dims + y * side + x] + 0.5);
    }
  }
  return { data, count: n, dims };
}

test('nearest neighbours and distances match a plain loop (odd sizes, self excluded)', () => {
  const rng = new Rng(1);
  const a = shapes(7, 5, rng);
  const b = shapes(11, 5, rng);
  const brute = (x: ImageSet01, y: ImageSet01, self: boolean) =>
    Array.from({ length: x.count }, (_, i) => {
      let best = Infinity;
      let at = -1;
      for (let j = 0; j < y.count; j++) {
        if (self && i === j) continue;
        let s = 0;
        for (let d = 0; d < x.dims; d++) s += (x.data[i * x.dims + d] - y.data[j * y.dims + d]) ** 2;
        if (s < best) [best, at] = [s, j];
      }
      return { at, d: Math.sqrt(best / x.dims) };
    });
  for (const [x, y, self] of [[a, b, false], [b, b, true]] as const) {
    const got = nearest(x, y, self);
    brute(x, y, self).forEach((e, i) => {
      assert.equal(got.index[i], e.at);
      assert.ok(Math.abs(got.distance[i] - e.d) < 1e-4);
    });
  }
  assert.ok(Math.abs(meanPairDistance({ data: Float32Array.from([0, 0, 1, 1, 0, 1]), count: 3, dims: 2 }) - (1 + Math.SQRT1_2 + Math.SQRT1_2) / 3) < 1e-6);
  assert.equal(quantile([3, 1, 2, 4], 0), 1);
  assert.equal(quantile([3, 1, 2, 4], 0.5), 2.5);
});

test('memorisation on known cases: a "model" that returns training images scores 100% copies, fresh noise 0%, new shapes ~0%', () => {
  const rng = new Rng(2);
  const train = shapes(200, 12, rng);
  const copies = { data: train.data.slice(0, 50 * train.dims), count: 50, dims: train.dims };
  const asCopies = scoreAgainstData(copies, train, 1);
  assert.equal(asCopies.copies, 1);
  assert.equal(asCopies.sampleToTrain, 0);
  assert.deepEqual(Array.from(asCopies.nearestIndex), Array.from({ length: 50 }, (_, i) => i));
  const noise = { data: Float32Array.from({ length: 50 * train.dims }, () => rng.uniform()), count: 50, dims: train.dims };
  const asNoise = scoreAgainstData(noise, train, 1);
  assert.equal(asNoise.copies, 0);
  assert.ok(asNoise.sampleToTrain > asNoise.trainToTrain);
  // New draws from the same process: as far from the training set as its images are from each other.
  const fresh = scoreAgainstData(shapes(100, 12, rng), train, 1);
  assert.ok(fresh.copies <= 0.05, `fresh shapes: ${fresh.copies} copies`);
  assert.ok(Math.abs(fresh.diversity - 1) < 0.1, `fresh shapes diversity ${fresh.diversity}`);
  // One image repeated: no diversity.
  const same = { data: new Float32Array(10 * train.dims).map((_, i) => train.data[i % train.dims]), count: 10, dims: train.dims };
  assert.equal(scoreAgainstData(same, train, 1).diversity, 0);
  // Colour statistics per channel.
  const two = toUnit(Float32Array.from([-1, 1, -1, 1]), 2, 2);
  assert.deepEqual(scoreAgainstData(two, two, 2).colour.samples, { mean: [0, 1], std: [0, 0] });
});

test('copies on a set with exact duplicates (where the 1% quantile of nearest-other distances is 0): a copy of a training image counts, an unrelated image does not', () => {
  const rng = new Rng(3);
  const distinct = shapes(150, 12, rng);
  // 30 of the images twice more (as the Faenza icons hold duplicates, the emoji skin-tone variants).
  const dims = distinct.dims;
  const train: ImageSet01 = { data: new Float32Array((150 + 60) * dims), count: 210, dims };
  train.data.set(distinct.data);
  for (let d = 0; d < 60; d++) train.data.set(distinct.data.subarray((d % 30) * dims, ((d % 30) + 1) * dims), (150 + d) * dims);
  assert.equal(quantile(nearest(train, train, true).distance, 0.01), 0, 'the old threshold collapses');
  // Samples: copies of duplicated images (5), of single ones (5), and fresh shapes (40).
  const fresh = shapes(40, 12, rng);
  const samples: ImageSet01 = { data: new Float32Array(50 * dims), count: 50, dims };
  for (let i = 0; i < 5; i++) samples.data.set(train.data.subarray(i * dims, (i + 1) * dims), i * dims);
  for (let i = 0; i < 5; i++) samples.data.set(train.data.subarray((100 + i) * dims, (101 + i) * dims), (5 + i) * dims);
  samples.data.set(fresh.data, 10 * dims);
  const k = nearestK(samples, train, COPY_NEIGHBOURS);
  assert.equal(k.k, 50);
  const flags = copiesOf(k.distances, k.k);
  assert.deepEqual(Array.from(flags.subarray(0, 10)), new Array(10).fill(1), 'exact copies, of duplicated images and of single ones');
  assert.ok(flags.subarray(10).reduce((a, b) => a + b, 0) <= 2, `fresh shapes counted as copies: ${Array.from(flags.subarray(10))}`);
  const s = scoreAgainstData(samples, train, 1);
  assert.ok(s.copies >= 0.2 && s.copies <= 0.24, `copies ${s.copies}`);
  assert.equal(s.neighbours, 50);
  // The training set's own duplicates: the 90 images of the 30 triples, of 210.
  assert.ok(Math.abs(s.trainCopies - 90 / 210) < 0.03, `train copies ${s.trainCopies}`);
  // A slightly changed copy is still a copy; an unrelated image with no neighbourhood (noise) is not.
  const nearly: ImageSet01 = { data: train.data.slice(100 * dims, 101 * dims).map((v) => Math.min(1, v + 0.02)), count: 1, dims };
  const near = nearestK(nearly, train, COPY_NEIGHBOURS);
  assert.equal(copiesOf(near.distances, near.k)[0], 1);
  const noise: ImageSet01 = { data: Float32Array.from({ length: dims }, () => rng.uniform()), count: 1, dims };
  const far = nearestK(noise, train, COPY_NEIGHBOURS);
  assert.equal(copiesOf(far.distances, far.k)[0], 0);
  // The k nearest, sorted, match a plain sort; a set smaller than k uses all its images (less itself).
  const all = Array.from({ length: train.count }, (_, j) => {
    let sum = 0;
    for (let d = 0; d < dims; d++) sum += (samples.data[20 * dims + d] - train.data[j * dims + d]) ** 2;
    return Math.sqrt(sum / dims);
  }).sort((a, b) => a - b);
  Array.from(k.distances.subarray(20 * 50, 21 * 50)).forEach((v, p) => assert.ok(Math.abs(v - all[p]) < 1e-4, `${p}: ${v} vs ${all[p]}`));
  const small = { ...train, count: 7 };
  assert.equal(nearestK(small, small, COPY_NEIGHBOURS, true).k, 6);
});

test('spreadIndices: k of n spread evenly from the first, one from each run of a draw by class; all when k >= n', () => {
  assert.deepEqual(spreadIndices(450, 32).length, 32);
  // 9 classes of 50 in order: every class shown, 3 or 4 each
  const perClass = new Map<number, number>();
  for (const i of spreadIndices(450, 32)) perClass.set(Math.floor(i / 50), (perClass.get(Math.floor(i / 50)) ?? 0) + 1);
  assert.deepEqual([...perClass.keys()], [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.ok([...perClass.values()].every((c) => c === 3 || c === 4), `${[...perClass.values()]}`);
  assert.deepEqual(spreadIndices(8, 4), [0, 2, 4, 6]);
  assert.deepEqual(spreadIndices(10, 32), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});
