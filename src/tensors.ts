import * as tf from '@tensorflow/tfjs-core';

/**
 * A variable holding a copy of `values` (the temporary initial tensor is freed). A copy, because the
 * cpu-style backends keep the array they are given, and the blas backend updates weights in place.
 */
export function variableFrom(values: Float32Array, shape: number[], trainable: boolean): tf.Variable {
  const initial = tf.tensor(values.slice(), shape, 'float32');
  const variable = tf.variable(initial, trainable);
  initial.dispose();
  return variable;
}

/** Sets a variable to a copy of `values` (not the array itself: see variableFrom). */
export function assignCopy(variable: tf.Variable, values: Float32Array): void {
  if (values.length === variable.size && inPlace.copy(variable, values)) return;
  tf.tidy(() => variable.assign(tf.tensor(values.slice(), variable.shape, 'float32')));
}

/**
 * Whole-array, in-place passes for the training updates (Adam, the weights' average) that a backend
 * may install (the blas backend does): one native loop per parameter instead of several tfjs ops. Each
 * returns false where it does not apply (another backend active), and the caller uses tfjs ops.
 */
export interface InPlaceUpdates {
  adam(
    updates: { p: tf.Variable; g: tf.Tensor | Float32Array; m: tf.Variable; v: tf.Variable }[],
    config: { lr: number; beta1: number; beta2: number; epsilon: number },
    correction1: number,
    correction2: number,
  ): boolean;
  average(pairs: { shadow: tf.Variable; p: tf.Variable }[], decay: number): boolean;
  /** The variable's values overwritten with `values` (a data-parallel worker loads every weight at every step). */
  copy(variable: tf.Variable, values: Float32Array): boolean;
}

let inPlace: InPlaceUpdates = { adam: () => false, average: () => false, copy: () => false };

export function installInPlaceUpdates(updates: InPlaceUpdates): void {
  inPlace = updates;
}

export function inPlaceUpdates(): InPlaceUpdates {
  return inPlace;
}
