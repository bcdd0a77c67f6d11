/**
 * A data-parallel worker (see dataParallel.ts): a copy of the model on the blas backend that, on each
 * request, loads the shared weights and writes its share's gradients and mean loss, or its predictions.
 */
import { workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeAddon } from '../backend/addon';
import { peekValues } from '../backend/blasBackend';
import { TraceCache } from '../ops/kernelTrace';
import { defaultBackendEnv, selectBackend } from '../backend/select';
import { buildModel } from '../models/build';
import { Rng, RngState } from '../rng';
import { assignCopy } from '../tensors';
import { Slot, Task, WorkerSetup, packGradients, unpack } from './dataParallel';
import { lossGradients, noisedShare } from '../diffusion/loss';
import { DDPMScheduler } from '../diffusion/schedule';
import { UNIFORM_WEIGHTING } from '../diffusion/weighting';

function finish(control: Int32Array, request: number, ok: boolean): void {
  Atomics.store(control, Slot.Status, ok ? 0 : 1);
  Atomics.store(control, Slot.Done, request);
  Atomics.notify(control, Slot.Done);
}

async function serve(setup: WorkerSetup): Promise<void> {
  const { control, weights, inputs, output, pixels, port } = setup;
  const fail = (request: number, e: unknown) => {
    port.postMessage({ error: e instanceof Error ? e.message : String(e) });
    finish(control, request, false);
  };
  let model;
  try {
    await selectBackend('blas', { ...defaultBackendEnv, log: () => {} });
    loadNativeAddon()!.setThreads(1);
    model = buildModel(setup.model, new Rng(0)); // its weights come from `weights` at each request
  } catch (e) {
    fail(0, e);
    return;
  }
  const variables = [...model.variables.values()];
  const scheduler = setup.schedule ? new DDPMScheduler(setup.schedule) : null;
  const traces = new TraceCache(); // this thread's loss and gradients, replayed (lossGradients)
  finish(control, 0, true);
  let seen = 0;
  for (;;) {
    Atomics.wait(control, Slot.Request, seen);
    const request = Atomics.load(control, Slot.Request);
    if (request < 0) break;
    seen = request;
    try {
      const n = control[Slot.Count];
      if (control[Slot.Reload]) unpack(weights, variables).forEach((values, k) => assignCopy(variables[k], values));
      tf.tidy(() => {
        const images = inputs.slice(0, n * pixels);
        const labels = control[Slot.Labelled] ? tf.tensor1d(inputs.slice(n * pixels + n, n * pixels + 2 * n)) : undefined;
        if (control[Slot.Task] === Task.Predict) {
          const tFrac = tf.tensor1d(inputs.slice(n * pixels, n * pixels + n));
          output.set(peekValues(model.predict(tf.tensor2d(images, [n, pixels]), tFrac, labels)), 0);
          return;
        }
        if (!scheduler) throw new Error('this pool was started without a noise schedule');
        const t = Int32Array.from(inputs.subarray(n * pixels, n * pixels + n));
        const noiseAt = Array.from(control.subarray(Slot.NoiseState, Slot.NoiseState + 4), (word) => word >>> 0) as RngState;
        const share = noisedShare(scheduler, setup.weighting ?? UNIFORM_WEIGHTING, images, t, noiseAt, control[Slot.NoiseOffset]);
        if (labels) share.labels = labels;
        const { loss, grads } = lossGradients(model, traces, share);
        packGradients(grads, loss, output);
      });
      finish(control, request, true);
    } catch (e) {
      fail(request, e);
    }
  }
  traces.dispose();
  model.dispose();
  port.close();
}

void serve(workerData as WorkerSetup);
