/**
 * Backend selection. `tensorflow` is the native binding (@tensorflow/tfjs-node-gpu if it loads, else
 * @tensorflow/tfjs-node); neither is a dependency, because their install step downloads libtensorflow,
 * so they are looked for at run time. `blas` is tfjs's cpu backend with this project's native kernels
 * (OpenBLAS), there when `npm ci` could build them. `auto` tries tensorflow, blas, wasm, then cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors';
import { notice } from '../progress';
import { loadNativeAddon, NATIVE_BUILD_HINT, nativeLoadError } from './addon';
import { registerBlasBackend } from './blasBackend';

export const BACKENDS = ['auto', 'tensorflow', 'blas', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
export const NATIVE_INSTALL_HINT = 'npm install @tensorflow/tfjs-node, or @tensorflow/tfjs-node-gpu with CUDA';

/** What selection needs from the outside world, injectable for tests. */
export interface BackendEnv {
  load(pkg: string): void;
  /** Registers the `blas` backend; false where the native addon is not built. */
  registerBlas(): boolean;
  /** The instruction set of the native kernels in use (avx512, avx2, generic), where known. */
  nativeIsa?(): string | undefined;
  setBackend(name: string): Promise<boolean>;
  log(message: string): void;
}

export const defaultBackendEnv: BackendEnv = {
  load: (pkg) => {
    require(pkg);
  },
  registerBlas: () => registerBlasBackend(),
  nativeIsa: () => loadNativeAddon()?.isa,
  setBackend: (name) => tf.setBackend(name),
  log: notice, // said with the command's first line, after any error that ends it first
};

export interface SelectedBackend {
  name: 'tensorflow' | 'blas' | 'wasm' | 'cpu';
  /** The package that provided it. */
  package: string;
}

async function tryNative(env: BackendEnv): Promise<SelectedBackend | null> {
  for (const pkg of NATIVE_PACKAGES) {
    try {
      env.load(pkg);
    } catch {
      continue;
    }
    if (await env.setBackend('tensorflow')) return { name: 'tensorflow', package: pkg };
  }
  return null;
}

async function tryPortable(name: 'wasm' | 'cpu', env: BackendEnv): Promise<SelectedBackend | null> {
  const pkg = `@tensorflow/tfjs-backend-${name}`;
  try {
    env.load(pkg);
  } catch {
    return null;
  }
  if (!(await env.setBackend(name))) return null;
  // The cpu backend greets its first use in Node with advice to install tfjs-node on stderr, where a
  // command's error must be the first line and a library prints nothing: diffuse's notice says it.
  if (name === 'cpu') quietCpuBackend();
  return { name, package: pkg };
}

function quietCpuBackend(): void {
  const backend = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (backend && 'firstUse' in backend) backend.firstUse = false;
}

/** Activates the requested backend and says once on stderr which one runs. */
export async function selectBackend(choice: BackendChoice, env: BackendEnv = defaultBackendEnv): Promise<SelectedBackend> {
  let selected: SelectedBackend | null = null;
  let nativeMissing = false;
  if (choice === 'tensorflow' || choice === 'auto') {
    selected = await tryNative(env);
    nativeMissing = selected === null;
    if (!selected && choice === 'tensorflow') {
      throw new UserError(`the native TensorFlow backend is not installed; install it with: ${NATIVE_INSTALL_HINT}`);
    }
  }
  let blasMissing = false;
  if (!selected && (choice === 'blas' || choice === 'auto')) {
    if (env.registerBlas() && (await env.setBackend('blas'))) selected = { name: 'blas', package: 'build/Release/diffuse_native.node' };
    blasMissing = selected === null;
    if (!selected && choice === 'blas') {
      throw new UserError(`the blas backend's native kernels cannot be used${reason()}; build them with: ${NATIVE_BUILD_HINT}`);
    }
  }
  for (const name of ['wasm', 'cpu'] as const) {
    if (selected) break;
    if (choice === name || choice === 'auto') {
      selected = await tryPortable(name, env);
      if (!selected && choice === name) throw new UserError(`the ${name} backend could not be started`);
    }
  }
  if (!selected) throw new UserError('no tfjs backend could be started');
  const hints: string[] = [];
  if (nativeMissing) hints.push(`native TensorFlow is not installed (${NATIVE_INSTALL_HINT})`);
  if (blasMissing) hints.push(`the native BLAS kernels cannot be used${reason()}: ${NATIVE_BUILD_HINT}`);
  const isa = selected.name === 'blas' ? env.nativeIsa?.() : undefined;
  env.log(`diffuse: backend ${selected.name}${isa ? ` (${isa} kernels)` : ''}${hints.map((h) => `; ${h}`).join('')}`);
  return selected;
}

function reason(): string {
  const error = nativeLoadError();
  return error ? ` (${error})` : '';
}
