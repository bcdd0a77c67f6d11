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
  tf.tidy(() => variable.assign(tf.tensor(values.slice(), variable.shape, 'float32')));
}
