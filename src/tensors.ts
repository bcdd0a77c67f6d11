import * as tf from '@tensorflow/tfjs-core';

/** A variable holding a copy of `values` (the temporary initial tensor is freed). */
export function variableFrom(values: Float32Array, shape: number[], trainable: boolean): tf.Variable {
  const initial = tf.tensor(values, shape, 'float32');
  const variable = tf.variable(initial, trainable);
  initial.dispose();
  return variable;
}
