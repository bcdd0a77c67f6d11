import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ImageSet01, meanPairDistance, nearest, quantile, scoreAgainstData, toUnit } from '../../../src/eval/imageSet';
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
