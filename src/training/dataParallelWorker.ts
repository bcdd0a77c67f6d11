/**
 * A data-parallel worker (see dataParallel.ts): a copy of the model on the blas backend that, on each
 * request, loads the shared weights and writes its share's gradients and mean loss, or its predictions.
 */
import { workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { loadNativeAddon } from '../backend/addon';
import { defaultBackendEnv, selectBackend } from '../backend/select';
import { buildModel } from '../models/build';
import { Rng } from '../rng';
import { assignCopy } from '../tensors';
import { Slot, Task, WorkerSetup, pack, unpack } from './dataParallel';
import { denoisingLoss } from './trainer';

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
  finish(control, 0, true);
  let seen = 0;
  for (;;) {
    Atomics.wait(control, Slot.Request, seen);
    const request = Atomics.load(control, Slot.Request);
    if (request < 0) break;
    seen = request;
    try {
      const n = control[Slot.Count];
      unpack(weights, variables).forEach((values, k) => assignCopy(variables[k], values));
      tf.tidy(() => {
        const xs = tf.tensor2d(inputs.slice(0, n * pixels), [n, pixels]);
        const tFrac = tf.tensor1d(inputs.slice(2 * n * pixels, 2 * n * pixels + n));
        if (control[Slot.Task] === Task.Predict) {
          output.set(model.predict(xs, tFrac).dataSync() as Float32Array, 0);
          return;
        }
        const target = tf.tensor2d(inputs.slice(n * pixels, 2 * n * pixels), [n, pixels]);
        const { value, grads } = tf.variableGrads(() => denoisingLoss(model, xs, tFrac, target), variables);
        pack([...variables.map((v) => grads[v.name].dataSync() as Float32Array), value.dataSync() as Float32Array], output);
      });
      finish(control, request, true);
    } catch (e) {
      fail(request, e);
    }
  }
  model.dispose();
  port.close();
}

void serve(workerData as WorkerSetup);
