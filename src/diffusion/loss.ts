/**
 * The training objective of a diffusion model (Ho et al.): images noised to their timesteps, the
 * schedule's target (ε or v) and the mean squared error of the model's prediction against it, with its
 * gradients. Shared by the trainer's main thread and the data-parallel workers.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers the gradients, which tfjs-core's CommonJS build leaves out
import { Denoiser } from '../models/denoiser';
import { TraceCache } from '../ops/kernelTrace';
import { Rng, RngState } from '../rng';
import { DDPMScheduler } from './schedule';
import { Weighting, lossWeights } from './weighting';

/** The training objective: mean squared error between the model's output and the schedule's target, each image's weighted by `weights` ([n, 1]) where given. */
export function denoisingLoss(model: Denoiser, xt: tf.Tensor2D, tFrac: tf.Tensor1D, target: tf.Tensor2D, labels?: tf.Tensor1D, weights?: tf.Tensor2D): tf.Scalar {
  return meanSquaredError(model.predict(xt, tFrac, labels), target, weights);
}

/** A share's inputs to the loss, as tensors: the noised images, t/T, the target, and the labels and weights where the run has them. */
export interface LossInputs {
  xt: tf.Tensor2D;
  tFrac: tf.Tensor1D;
  target: tf.Tensor2D;
  labels?: tf.Tensor1D;
  weights?: tf.Tensor2D;
}

/**
 * denoisingLoss() and its gradients in the order of model.variables; after the first call at a share's
 * size, replayed from `traces` (ops/kernelTrace.ts: the same kernels past tfjs's engine, whose work
 * is paid again by each thread of a data-parallel step).
 */
export function lossGradients(model: Denoiser, traces: TraceCache, inputs: LossInputs): { loss: tf.Scalar; grads: tf.Tensor[] } {
  const variables = [...model.variables.values()];
  const { xt, tFrac, target, labels, weights } = inputs;
  const args = [xt, tFrac, target, ...(labels ? [labels] : []), ...(weights ? [weights] : [])];
  const [loss, ...grads] = traces.run(args, () => {
    const { value, grads } = tf.variableGrads(() => denoisingLoss(model, xt, tFrac, target, labels, weights), variables);
    return [value, ...variables.map((v) => grads[v.name])];
  });
  return { loss: loss as tf.Scalar, grads };
}

/**
 * mean((prediction − target)²), differentiated in the prediction only, as ops the blas backend runs
 * natively (subtract, multiply, sum) with the gradient 2(prediction − target)/n written out: tfjs's
 * mean(squaredDifference) and its gradient went through its generic broadcasting kernels, 6.5 ms for a
 * batch of 32 RGB 32-px images against 0.5 ms. With `weights` ([n, 1], one per row): mean(w·(p − t)²),
 * the difference scaled by its row's weight once (a broadcast, paid only by weighted runs).
 */
export function meanSquaredError(prediction: tf.Tensor, target: tf.Tensor, weights?: tf.Tensor2D): tf.Scalar {
  const loss = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [p, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const diff = tf.sub(p, target);
    const weighted = weights ? tf.mul(diff, weights) : diff;
    save([weighted]);
    return { value: tf.div(tf.sum(tf.mul(weighted, diff)), diff.size) as tf.Scalar, gradFunc: (dy: tf.Tensor, [d]: tf.Tensor[]) => tf.mul(d, tf.mul(dy, 2 / d.size)) };
  });
  return loss(prediction) as tf.Scalar;
}

/**
 * Images x0 (a share of a batch) at timesteps t, noised: ε is the part of the batch's noise that
 * starts at value `offset`, drawn from `noiseAt`, the generator's state where the batch's noise begins
 * (Rng.normalsFrom), so any thread noises its share as the whole batch's one draw would. Returns the
 * loss's inputs: x_t, t/T, the model's target, and each image's weight where `weighting` has one.
 */
export function noisedShare(scheduler: DDPMScheduler, weighting: Weighting, x0: Float32Array, t: Int32Array, noiseAt: RngState, offset: number): LossInputs {
  const eps = new Rng(noiseAt).normalsFrom(offset, offset + x0.length);
  const T = scheduler.timesteps;
  const n = t.length;
  const pixels = x0.length / n;
  const weights = lossWeights(scheduler, t, weighting);
  return {
    xt: tf.tensor2d(scheduler.addNoise(x0, eps, t), [n, pixels]),
    tFrac: tf.tensor1d(Float32Array.from(t, (v) => v / T)),
    target: tf.tensor2d(scheduler.trainingTarget(x0, eps, t), [n, pixels]),
    ...(weights ? { weights: tf.tensor2d(weights, [n, 1]) } : {}),
  };
}
