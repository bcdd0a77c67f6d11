/**
 * The README's commands work: every `diffuse` and `node scripts/...` line of its shell blocks is run in
 * order in a fresh folder, shrunk to test size (1-2 epochs on 64 images, 4 samples with 2 steps).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, ROOT, tempDir } from '../helpers';

/** Sets `--flag value` in args (replacing a given value), or appends it. */
function setFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  return i >= 0 ? [...args.slice(0, i + 1), value, ...args.slice(i + 2)] : [...args, flag, value];
}

/** A guide kept at epoch N (`--guide DIR/epoch-000N`) is the first epoch's copy: runs shrink to one epoch. */
function guideKept(args: string[]): string[] {
  const i = args.indexOf('--guide');
  return i >= 0 ? setFlag(args, '--guide', args[i + 1].replace(/epoch-\d+$/, 'epoch-0001')) : args;
}

/** A README command line at test size. */
function shrink(args: string[]): string[] {
  // the synopsis lines (`diffuse sample [options]`, `diffuse import FILE`): their help
  if (args.some((a) => a === '[options]' || /^[A-Z]+$/.test(a))) return [args[0], '--help'];
  if (args[0] === 'train') return setFlag(setFlag(args, '--epochs', args.includes('--resume') ? '2' : '1'), '--limit', '64');
  if (args[0] === 'sample') return setFlag(setFlag(guideKept(args), '--n', '4'), '--steps', '2');
  if (args[0] === 'evaluate') return setFlag(setFlag(args, '--n', '20'), '--steps', '2');
  return args;
}

const ICONS = '/usr/share/icons/oxygen/base/64x64';
const hasTorchrun = spawnSync('torchrun', ['--help'], { stdio: 'ignore' }).status === 0;

/** Why a README line cannot run on this machine (.ci/run installs both), or null. */
function missing(line: string): string | null {
  if (/oxygen|runs\/icons/.test(line) && !fs.existsSync(ICONS)) return `no ${ICONS} (apt-get install oxygen-icon-theme)`;
  if (/torchrun|trained\.safetensors/.test(line) && !hasTorchrun) return 'no torchrun (apt-get install python3-torch)';
  return null;
}

test("the README's shell commands run (at test size)", { timeout: 300_000 }, async (t) => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const lines = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1].replace(/\\\n\s*/g, ' ').split('\n'))
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => /^(diffuse |node scripts\/|PYTHONPATH=python torchrun )/.test(l));
  assert.ok(lines.length >= 10, `${lines.length} commands found`);
  const cwd = tempDir();
  for (const line of lines) {
    const why = missing(line);
    if (why) {
      await t.test(line, { skip: why }, () => {}); // listed by the runner, and a failure under CI
      continue;
    }
    const words = line.split(/\s+/);
    let r;
    let command: string[];
    if (words[0] === 'PYTHONPATH=python') {
      // two updates on 256 images, with the project's Python package
      command = [...words.slice(2), '--max-steps', '2', '--limit', '256'];
      r = spawnSync(words[1], command, { cwd, encoding: 'utf8', timeout: 300_000, env: { ...process.env, PYTHONPATH: path.join(ROOT, 'python'), OMP_NUM_THREADS: '1' } });
    } else {
      command = words[0] === 'diffuse' ? [BIN, ...shrink(words.slice(1))] : [path.join(ROOT, words[1]), ...words.slice(2).map((w, i) => (i === 1 ? '40' : w))]; // scripts/shapes.js DIR COUNT SIZE
      r = spawnSync(process.execPath, command, { cwd, encoding: 'utf8', timeout: 120_000 });
    }
    assert.equal(r.status, 0, `${line}\n(run as: ${command.slice(1).join(' ')})\n${r.stdout}\n${r.stderr}`);
    t.diagnostic(`ok: ${line}`);
  }
  assert.ok(fs.existsSync(path.join(cwd, 'shapes.webp')));
});

test("`npx diffuse` in a checkout (the quickstart's next steps) leaves the native addon as npm built it", { timeout: 120_000 }, () => {
  // A copy of the checkout's package (node_modules linked, build/ copied), so a failure cannot break
  // the other tests' addon. npm would run `node-gyp rebuild` on a package with a binding.gyp and no
  // install script: build/ rebuilt without the sources stamp, and every later run refused the addon
  // and fell back to wasm (package.json's "gypfile": false turns that off).
  const dir = tempDir('diffuse-npx-');
  const pkg = path.join(dir, 'diffuse');
  fs.mkdirSync(pkg);
  // (npx links the package and runs its prepare script: the TypeScript and web builds, the addon where stale.)
  const skip = new Set(['node_modules', '.git', 'checkpoints', 'data', 'runs']);
  for (const entry of fs.readdirSync(ROOT).filter((e) => !skip.has(e))) fs.cpSync(path.join(ROOT, entry), path.join(pkg, entry), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'), 'dir');
  const { builtHash, sourcesHash } = require(path.join(pkg, 'native', 'sources.js')) as { sourcesHash(): string | null; builtHash(): string | null };
  assert.equal(builtHash(), sourcesHash(), 'the copied addon carries its stamp');
  const addon = fs.statSync(path.join(pkg, 'build', 'Release', 'diffuse_native.node')).mtimeMs;
  const r = spawnSync('npx', ['--offline', '--yes', 'diffuse', '--version'], { cwd: pkg, encoding: 'utf8', env: { ...process.env, npm_config_cache: path.join(dir, 'npm-cache') } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  assert.equal(builtHash(), sourcesHash(), 'the stamp still matches the sources');
  assert.equal(fs.statSync(path.join(pkg, 'build', 'Release', 'diffuse_native.node')).mtimeMs, addon, 'the addon was not rebuilt (it was up to date)');
});
