/**
 * An exponential moving average of the weights (Polyak averaging), from which diffusion models are
 * usually sampled. Its decay warms up as min(decay, (1 + step) / (10 + step)), so the early average is
 * not dominated by the random initial weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import { assignCopy, inPlaceUpdates, variableFrom } from '../tensors';

export class WeightAverage {
  readonly shadow = new Map<string, tf.Variable>();

  constructor(readonly decay: number, params: ReadonlyMap<string, tf.Variable>) {
    for (const [name, p] of params) this.shadow.set(name, variableFrom(p.dataSync() as Float32Array, p.shape, false));
  }

  decayAt(step: number): number {
    return Math.min(this.decay, (1 + step) / (10 + step));
  }

  /** Sets the average to the weights themselves (a checkpoint that had no average yet). */
  reset(params: ReadonlyMap<string, tf.Variable>): void {
    for (const [name, p] of params) assignCopy(this.shadow.get(name)!, p.dataSync() as Float32Array);
  }

  /** shadow ← d·shadow + (1 − d)·weights, after optimizer update number `step`. */
  update(params: ReadonlyMap<string, tf.Variable>, step: number): void {
    const d = this.decayAt(step);
    if (inPlaceUpdates().average([...params].map(([name, p]) => ({ shadow: this.shadow.get(name)!, p })), d)) return;
    tf.tidy(() => {
      for (const [name, p] of params) {
        const s = this.shadow.get(name)!;
        s.assign(tf.add(tf.mul(s, d), tf.mul(p, 1 - d)));
      }
    });
  }

  dispose(): void {
    for (const v of this.shadow.values()) v.dispose();
  }
}
