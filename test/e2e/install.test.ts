/**
 * diffuse as a user installs it from npm: the packed tarball (what `npm publish` would upload) installed
 * into an empty folder and globally, from npm's cache (no registry needed once `npm ci` has run). The
 * install builds the native kernels, so `npx diffuse train` runs on the `blas` backend; the tarball
 * holds what a user needs and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir } from '../helpers';
import { loadNativeAddon } from '../../src/backend/addon';

const skip = loadNativeAddon() ? false : 'native kernels not built here, so an install cannot build them either';
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** npm as a user runs it: none of the outer `npm test`'s npm_* settings (its prefix, its package). */
function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  const options: SpawnSyncOptions = { cwd, encoding: 'utf8', env: { ...clean, NODE_OPTIONS: process.env.DIFFUSE_TEST_NODE_OPTIONS ?? '', ...env }, timeout: 5 * 60 * 1000 };
  const r = spawnSync(NPM, args, options);
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const TINY_TRAIN = ['train', '--epochs', '1', '--limit', '128', '--width', '32', '--batch-size', '64', '--out', 'run'];

test('the packed tarball installs into an empty folder and globally, builds the native kernels, and `diffuse train` runs on blas', { skip, timeout: 12 * 60 * 1000 }, () => {
  const work = tempDir('diffuse-install-');
  // dist/ is built by `npm test` already; --ignore-scripts keeps pack from building it again
  const pack = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT);
  assert.equal(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
  const files = info.files.map((f) => f.path);
  for (const needed of ['bin/diffuse.js', 'dist/src/cli/program.js', 'dist/web/diffuse.mjs', 'dist/web/page.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'binding.gyp', 'native/addon.c', 'native/isa.h', 'native/cblas.js', 'scripts/build-native.js', 'LICENSE']) {
    assert.ok(files.includes(needed), `the tarball lacks ${needed}`);
  }
  const stray = files.filter((f) => /^(test|dist\/test|dist\/scripts|src|build|data|checkpoints|python|docs)\//.test(f) || f.endsWith('.map') || f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.deepEqual(stray, [], 'the tarball holds files a user does not need');
  assert.ok(info.size < 1.5e6, `the tarball is ${info.size} bytes`);
  const tarball = path.join(work, info.filename);

  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "app", "private": true }\n');
  const install = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], app);
  assert.equal(install.status, 0, install.stderr.slice(-3000));
  assert.ok(fs.existsSync(path.join(app, 'node_modules', 'diffuse', 'build', 'Release', 'diffuse_native.node')), 'the install built no native kernels');
  assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'typescript')), 'the install pulled in a dev dependency');
  const train = npm(['exec', '--offline', '--', 'diffuse', ...TINY_TRAIN], app);
  assert.equal(train.status, 0, train.stderr.slice(-3000));
  assert.match(train.stderr, /diffuse: backend blas \((avx512|avx2|generic) kernels\)/);
  assert.ok(fs.existsSync(path.join(app, 'run', 'checkpoint.json')) || fs.readdirSync(path.join(app, 'run')).length > 0);

  const prefix = path.join(work, 'global');
  const global = npm(['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], work);
  assert.equal(global.status, 0, global.stderr.slice(-3000));
  const bin = path.join(prefix, process.platform === 'win32' ? 'diffuse.cmd' : path.join('bin', 'diffuse'));
  const r = spawnSync(bin, TINY_TRAIN, { cwd: work, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: process.env.DIFFUSE_TEST_NODE_OPTIONS ?? '' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /diffuse: backend blas \(/);
});
