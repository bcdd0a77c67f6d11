/**
 * Adam (Kingma & Ba), written out so its state (step count, first and second moments) is ours to
 * checkpoint and its update matches PyTorch's torch.optim.Adam: bias-corrected moments, ε outside the root.
 */
import * as tf from '@tensorflow/tfjs-core';
import { inPlaceUpdates, variableFrom } from '../tensors';

export interface AdamConfig {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** Gradients by parameter name: tensors, or arrays (a data-parallel step's averages, as they are). */
export type Gradients = Record<string, tf.Tensor | Float32Array>;

export class Adam {
  readonly config: AdamConfig;
  /** Updates taken so far (t in the paper). */
  step = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  private readonly nameOf = new Map<string, string>();

  constructor(config: AdamConfig, private readonly params: ReadonlyMap<string, tf.Variable>) {
    this.config = { ...config };
    for (const [name, p] of params) {
      this.nameOf.set(p.name, name);
      this.m.set(name, variableFrom(new Float32Array(p.size), p.shape, false));
      this.v.set(name, variableFrom(new Float32Array(p.size), p.shape, false));
    }
  }

  /** f's value and its gradients with respect to the parameters, keyed by the parameters' names. */
  gradients(f: () => tf.Scalar): { value: tf.Scalar; grads: tf.NamedTensorMap } {
    const { value, grads } = tf.variableGrads(f, [...this.params.values()]);
    const named: tf.NamedTensorMap = {};
    for (const [variableName, g] of Object.entries(grads)) named[this.nameOf.get(variableName)!] = g;
    return { value, grads: named };
  }

  /** One update of every parameter from its gradient, at rate `lr` (the configured rate unless given). */
  apply(grads: Gradients, lr = this.config.lr): void {
    this.step += 1;
    const { beta1, beta2, epsilon } = this.config;
    const correction1 = 1 - beta1 ** this.step;
    const correction2 = 1 - beta2 ** this.step;
    const updates = [...this.params].filter(([name]) => grads[name]).map(([name, p]) => ({ p, g: grads[name], m: this.m.get(name)!, v: this.v.get(name)! }));
    if (inPlaceUpdates().adam(updates, { ...this.config, lr }, correction1, correction2)) return;
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const given = grads[name];
        if (!given) continue;
        const g = given instanceof Float32Array ? tf.tensor(given, p.shape, 'float32') : given;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const mNext = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const vNext = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.sqrt(tf.div(vNext, correction2)), epsilon);
        p.assign(tf.sub(p, tf.div(tf.mul(mNext, lr / correction1), denom)));
        m.assign(mNext);
        v.assign(vNext);
      }
    });
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}
