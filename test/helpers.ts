import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import assert from 'node:assert/strict';
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'diffuse.js');

// Tests keep their own data folder (the digit classifier's cache), also when a file is run on its own.
process.env.DIFFUSE_DATA_DIR ??= path.join(ROOT, 'dist', 'test-data');
process.env.DIFFUSE_CACHE_DIR ??= path.join(process.env.DIFFUSE_DATA_DIR, 'cache');

export async function useBackend(name: 'cpu' | 'wasm'): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} unavailable`);
  await tf.ready();
}

export function tempDir(prefix = 'diffuse-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...options.env },
    timeout: options.timeout ?? 5 * 60 * 1000,
  });
}

/** The exit code of a user error (bad option, unusable file or folder), as the README documents. */
export const USER_ERROR_EXIT = 2;

/** A bad-input failure: exit code 2, one line on stderr, the last, no stack trace. */
export function assertCleanFailure(r: SpawnSyncReturns<string>, pattern: RegExp): void {
  assert.equal(r.status, USER_ERROR_EXIT, `expected a user error (exit ${USER_ERROR_EXIT}), got ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n').filter((l) => /error/i.test(l));
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').pop(), lines[0], 'the error is the last line');
  assert.match(lines[0], /^(diffuse: )?error: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

export function variance(xs: ArrayLike<number>): number {
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += (xs[i] - m) ** 2;
  return s / xs.length;
}

/** The widest of the addon's sets that this CPU runs, from /proc/cpuinfo (native/addon.c asks the CPU itself). */
export function widestIsa(): string {
  if (process.arch !== 'x64') return 'generic';
  const flags = new Set((fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
  const avx2 = ['avx2', 'fma', 'bmi1', 'bmi2', 'f16c'].every((f) => flags.has(f));
  if (avx2 && ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd'].every((f) => flags.has(f))) return 'avx512';
  return avx2 ? 'avx2' : 'generic';
}

/** The README's code block of `lang` under its "Use it from code" heading (the first, or the one containing `marker`). */
export function readmeExample(lang: string, marker = ''): string {
  const section = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('## Use it from code')[1]?.split('\n## ')[0] ?? '';
  const blocks = [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
  const block = blocks.find((b) => b.includes(marker));
  assert.ok(block, `the README has a \`\`\`${lang} example under "Use it from code"`);
  return block;
}

