import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendEnv, selectBackend } from '../../../src/backend/select';
import { UserError } from '../../../src/errors';

/** A fake world: `installed` packages load, `working` backends start; calls are recorded. */
function fakeEnv(installed: string[], working: string[], blasBuilt = false) {
  const logs: string[] = [];
  const started: string[] = [];
  const env: BackendEnv = {
    load: (pkg) => {
      if (!installed.includes(pkg)) throw new Error(`Cannot find module '${pkg}'`);
    },
    registerBlas: () => blasBuilt,
    setBackend: async (name) => {
      started.push(name);
      return working.includes(name);
    },
    log: (m) => logs.push(m),
  };
  return { env, logs, started };
}

const PORTABLE = ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu'];

test('auto prefers the native GPU binding, then the native CPU one', async () => {
  let w = fakeEnv(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', ...PORTABLE], ['tensorflow', 'wasm', 'cpu']);
  assert.deepEqual(await selectBackend('auto', w.env), { name: 'tensorflow', package: '@tensorflow/tfjs-node-gpu' });
  assert.deepEqual(w.logs, ['diffuse: backend tensorflow']);
  w = fakeEnv(['@tensorflow/tfjs-node', ...PORTABLE], ['tensorflow', 'wasm', 'cpu']);
  assert.deepEqual(await selectBackend('auto', w.env), { name: 'tensorflow', package: '@tensorflow/tfjs-node' });
});

test('auto takes the native BLAS kernels next, and says how to install the native TensorFlow', async () => {
  const w = fakeEnv(PORTABLE, ['blas', 'wasm', 'cpu'], true);
  assert.equal((await selectBackend('auto', w.env)).name, 'blas');
  assert.deepEqual(w.started, ['blas']);
  assert.equal(w.logs.length, 1);
  assert.match(w.logs[0], /^diffuse: backend blas; native TensorFlow is not installed \(npm install @tensorflow\/tfjs-node/);
});

test('the blas notice names the instruction set of the kernels in use', async () => {
  const w = fakeEnv(PORTABLE, ['blas'], true);
  w.env.nativeIsa = () => 'avx2';
  assert.equal((await selectBackend('blas', w.env)).name, 'blas');
  assert.deepEqual(w.logs, ['diffuse: backend blas (avx2 kernels)']);
});

test('auto falls back to wasm and says once how to get both native backends', async () => {
  const w = fakeEnv(PORTABLE, ['wasm', 'cpu']);
  assert.equal((await selectBackend('auto', w.env)).name, 'wasm');
  assert.equal(w.logs.length, 1);
  assert.match(w.logs[0], /backend wasm; native TensorFlow is not installed \(npm install @tensorflow\/tfjs-node.*; the native BLAS kernels cannot be used.*: apt-get install -y build-essential libopenblas-dev/);
});

test('auto falls back to cpu when wasm cannot start', async () => {
  const w = fakeEnv(PORTABLE, ['cpu']);
  assert.equal((await selectBackend('auto', w.env)).name, 'cpu');
  assert.deepEqual(w.started, ['wasm', 'cpu']);
});

test('an explicit backend is used alone, and a missing native one is a clear error', async () => {
  const w = fakeEnv(PORTABLE, ['wasm', 'cpu']);
  assert.equal((await selectBackend('cpu', w.env)).name, 'cpu');
  assert.deepEqual(w.started, ['cpu']);
  await assert.rejects(selectBackend('tensorflow', w.env), (e: Error) => e instanceof UserError && /not installed; install it with: npm install/.test(e.message));
  await assert.rejects(selectBackend('blas', w.env), (e: Error) => e instanceof UserError && /native kernels cannot be used.*npm run build:native/.test(e.message));
  const broken = fakeEnv(PORTABLE, ['cpu']);
  await assert.rejects(selectBackend('wasm', broken.env), /wasm backend could not be started/);
});
