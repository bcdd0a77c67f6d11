/**
 * Backend selection. `tensorflow` is the native binding (@tensorflow/tfjs-node-gpu if it loads, else
 * @tensorflow/tfjs-node); neither is a dependency, because their install step downloads libtensorflow,
 * so they are looked for at run time. `auto` tries tensorflow, then wasm, then cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from './errors';

export const BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
export const NATIVE_INSTALL_HINT = 'npm install @tensorflow/tfjs-node, or @tensorflow/tfjs-node-gpu with CUDA';

/** What selection needs from the outside world, injectable for tests. */
export interface BackendEnv {
  load(pkg: string): void;
  setBackend(name: string): Promise<boolean>;
  log(message: string): void;
}

export const defaultBackendEnv: BackendEnv = {
  load: (pkg) => {
    require(pkg);
  },
  setBackend: (name) => tf.setBackend(name),
  log: (message) => process.stderr.write(message + '\n'),
};

export interface SelectedBackend {
  name: 'tensorflow' | 'wasm' | 'cpu';
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
  return (await env.setBackend(name)) ? { name, package: pkg } : null;
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
  for (const name of ['wasm', 'cpu'] as const) {
    if (selected) break;
    if (choice === name || choice === 'auto') {
      selected = await tryPortable(name, env);
      if (!selected && choice === name) throw new UserError(`the ${name} backend could not be started`);
    }
  }
  if (!selected) throw new UserError('no tfjs backend could be started');
  const hint = nativeMissing ? `; native TensorFlow is not installed (${NATIVE_INSTALL_HINT})` : '';
  env.log(`diffuse: backend ${selected.name}${hint}`);
  return selected;
}
