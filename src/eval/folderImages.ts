/**
 * The folder classifier's images (folderClassifier.ts): which of a folder's images it trains on and
 * which are held out, the side it sees them at and their resizing to it, quarter turns (the rotation
 * task's), and the training batches' augmentation (shifts, flips, turns).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../rng';

/** The side the net sees (larger images are averaged down to it). */
export const SIDE = 32;
/** The share of each class held out of training, to measure the classifier on images it has not seen. */
export const HELD_OUT = 0.1;
/** The seed of the held-out split. */
const SPLIT_SEED = 0;

/** Which images trained the classifier and which were held out: per class, HELD_OUT of them (rounded, at least one of any class with two or more), seeded. */
export function heldOutSplit(count: number, labels?: Int32Array, share = HELD_OUT, seed = SPLIT_SEED): { train: Int32Array; heldOut: Int32Array } {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < count; i++) {
    const c = labels ? labels[i] : 0;
    if (!byClass.has(c)) byClass.set(c, []);
    byClass.get(c)!.push(i);
  }
  const rng = new Rng(seed);
  const held = new Uint8Array(count);
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(c)!;
    const k = members.length < 2 ? 0 : Math.max(1, Math.round(members.length * share));
    const order = rng.permutation(members.length);
    for (let j = 0; j < k; j++) held[members[order[j]]] = 1;
  }
  const pick = (v: number) => Int32Array.from({ length: count }, (_, i) => i).filter((i) => held[i] === v);
  return { train: pick(0), heldOut: pick(1) };
}

/** The side the net sees for images of `side` pixels: SIDE, or below it a multiple of 8 (at least 8). */
export function classifierSide(side: number): number {
  return side >= SIDE ? SIDE : Math.max(8, side - (side % 8));
}

/** `count` images of side × side × channels brought to `to` pixels a side: averaged over blocks where `to` divides the side, else resized bilinearly. */
export function resizeImages(data: Float32Array, count: number, side: number, channels: number, to: number): Float32Array {
  if (to === side) return data;
  if (side % to === 0) {
    const f = side / to;
    const out = new Float32Array(count * to * to * channels);
    const scale = 1 / (f * f);
    for (let i = 0; i < count; i++) {
      const src = i * side * side * channels;
      const dst = i * to * to * channels;
      for (let y = 0; y < to; y++) {
        for (let x = 0; x < to; x++) {
          for (let c = 0; c < channels; c++) {
            let s = 0;
            for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) s += data[src + ((y * f + dy) * side + x * f + dx) * channels + c];
            out[dst + (y * to + x) * channels + c] = s * scale;
          }
        }
      }
    }
    return out;
  }
  const out = new Float32Array(count * to * to * channels);
  const block = 256;
  for (let first = 0; first < count; first += block) {
    const n = Math.min(block, count - first);
    const resized = tf.tidy(() => tf.image.resizeBilinear(tf.tensor4d(data.subarray(first * side * side * channels, (first + n) * side * side * channels), [n, side, side, channels]), [to, to], false, true));
    out.set(resized.dataSync(), first * to * to * channels);
    resized.dispose();
  }
  return out;
}

/** Image i of `images` (s × s × c each) turned by `quarter` quarter turns clockwise, written at `out`'s offset `at`. */
export function rotateInto(images: Float32Array, i: number, s: number, c: number, quarter: number, out: Float32Array, at: number): void {
  const src = i * s * s * c;
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      // The source pixel that lands at (y, x).
      const [sy, sx] = quarter === 0 ? [y, x] : quarter === 1 ? [s - 1 - x, y] : quarter === 2 ? [s - 1 - y, s - 1 - x] : [x, s - 1 - y];
      for (let k = 0; k < c; k++) out[at + (y * s + x) * c + k] = images[src + (sy * s + sx) * c + k];
    }
  }
}

/** A training batch: each image shifted by up to `shift` pixels (edges repeated), mirrored at random where `flip`, turned by `quarters[b]`. */
export function augment(images: Float32Array, indices: ArrayLike<number>, s: number, c: number, rng: Rng, o: { shift: number; flip: boolean; quarters?: Int32Array }): Float32Array {
  const size = s * s * c;
  const out = new Float32Array(indices.length * size);
  const turned = new Float32Array(size);
  for (let b = 0; b < indices.length; b++) {
    rotateInto(images, indices[b], s, c, o.quarters ? o.quarters[b] : 0, turned, 0);
    const dx = rng.int(2 * o.shift + 1) - o.shift;
    const dy = rng.int(2 * o.shift + 1) - o.shift;
    const mirror = o.flip && rng.uniform() < 0.5;
    for (let y = 0; y < s; y++) {
      const sy = Math.min(s - 1, Math.max(0, y - dy));
      for (let x = 0; x < s; x++) {
        const tx = mirror ? s - 1 - x : x;
        const sx = Math.min(s - 1, Math.max(0, tx - dx));
        for (let k = 0; k < c; k++) out[b * size + (y * s + x) * c + k] = turned[(sy * s + sx) * c + k];
      }
    }
  }
  return out;
}
