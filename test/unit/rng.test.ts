import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/rng';
import { mean, variance } from '../helpers';

test('the same seed gives the same stream, another seed another', () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xs = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(Array.from({ length: 5 }, () => b.nextUint32()), xs);
  assert.notDeepEqual(Array.from({ length: 5 }, () => c.nextUint32()), xs);
});

test('the stream is pinned: a seed gives the values it always gave (checkpoints resume on it, the PyTorch twin repeats it)', () => {
  const r = new Rng(42);
  // An odd length: the last pair's sine is dropped.
  assert.deepEqual(Array.from(r.fillNormal(new Float32Array(5))), [0.6362302303314209, 0.651442289352417, 0.8308019042015076, -1.9218767881393433, 2.2217392921447754]);
  assert.equal(r.uniform(), 0.015209239441901445);
  assert.equal(r.normal(), 1.203128964915042);
  assert.equal(r.int(1000), 324);
});

test('a generator restored from its state continues the same stream', () => {
  const a = new Rng(7);
  a.fillNormal(new Float32Array(11));
  const b = new Rng(a.state());
  assert.deepEqual(a.fillNormal(new Float32Array(9)), b.fillNormal(new Float32Array(9)));
  assert.equal(a.int(1000), b.int(1000));
});

test('normals have mean 0 and variance 1, uniforms lie in [0, 1)', () => {
  const rng = new Rng(3);
  const z = rng.fillNormal(new Float32Array(100_001));
  assert.ok(Math.abs(mean(z)) < 0.01);
  assert.ok(Math.abs(variance(z) - 1) < 0.02);
  for (let i = 0; i < 10000; i++) {
    const u = rng.uniform();
    assert.ok(u >= 0 && u < 1);
  }
});

test('permutation holds every index once', () => {
  const p = new Rng(5).permutation(1000);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.notDeepEqual([...p], Array.from({ length: 1000 }, (_, i) => i));
});

test('threads drawing parts of one array of noise (normalsFrom) get fillNormal\'s values, and skipNormals ends where fillNormal does', () => {
  for (const n of [1, 2, 7, 1025, 4096]) {
    const whole = new Rng(11).fillNormal(new Float32Array(n));
    const cuts = [0, 1, Math.floor(n / 3), Math.floor(n / 2) | 1, n - 1, n].filter((c, i, all) => c <= n && all.indexOf(c) === i).sort((a, b) => a - b);
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [start, end] = [cuts[i], cuts[i + 1]];
      assert.deepEqual([...new Rng(11).normalsFrom(start, end)], [...whole.subarray(start, end)], `${n} values, part [${start}, ${end})`);
    }
    const skipped = new Rng(11);
    skipped.skipNormals(n);
    const drawn = new Rng(11);
    drawn.fillNormal(new Float32Array(n));
    assert.deepEqual(skipped.state(), drawn.state(), `${n} values`);
  }
});
