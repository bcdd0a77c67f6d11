/**
 * The test runner itself (scripts/test.js): every test under a time limit of its own, so a test that
 * hangs fails by itself while the file's other tests still run; under CI, a skipped test or fewer
 * passing tests than the floor fails the run, with one line saying why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir } from '../helpers';

/** Runs scripts/test.js on one test file written from `source`. */
function runner(source: string, env: NodeJS.ProcessEnv = {}) {
  const dir = tempDir('diffuse-runner-');
  const file = path.join(dir, 'sample.test.js');
  fs.writeFileSync(file, source);
  // (NODE_TEST_CONTEXT tells a test file's process that a runner reads its output: not the runner started here)
  const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'test.js'), file], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...outer, CI: '', DIFFUSE_TEST_FLOOR_FILE: '', ...env },
    timeout: 120_000,
  });
  assert.equal(r.signal, null, `the runner finished by itself:\n${r.stdout}\n${r.stderr}`);
  return { ...r, dir };
}

test('a test that hangs fails by itself after its limit; the tests after it, its own limits and hooks still run', () => {
  const source = `const { test, before } = require('node:test');
     const forever = () => new Promise(() => setInterval(() => {}, 1000)); // a timer keeps the process alive too
     setTimeout(() => process.exit(9), 100000).unref(); // (ends this process should the limits not)
     before(() => console.log('hook ran'));
     test('hangs', forever);
     test('runs after the hang', () => {});
     test('a subtest that hangs', async (t) => { await t.test('inner', forever); });
     test('keeps a longer limit of its own', { timeout: 60000 }, () => new Promise((resolve) => setTimeout(resolve, 2500)));
     test('runs last', () => {});`;
  const r = runner(source, { DIFFUSE_TEST_TIMEOUT_MS: '1000' });
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stdout, /✖ hangs \([\d.]+ms\)\n\s+'test timed out after 1000ms'/);
  // the subtest inherits its parent's limit: the parent times out, and the subtest is cancelled with it
  assert.match(r.stdout, /✖ inner \(/);
  assert.match(r.stdout, /✖ a subtest that hangs \([\d.]+ms\)\n\s+'test timed out after 1000ms'/);
  // a failure is reported where the test is declared, not where the limit is added
  const line = source.split('\n').findIndex((l) => l.includes("test('hangs'")) + 1;
  assert.match(r.stdout, new RegExp(`test at .*sample\\.test\\.js:${line}:\\d+\\n✖ hangs`));
  assert.match(r.stdout, /^hook ran$/m);
  for (const name of ['runs after the hang', 'keeps a longer limit of its own', 'runs last']) assert.match(r.stdout, new RegExp(`✔ ${name} \\(`));
  assert.match(r.stdout, /^3 test\(s\) passed, 3 failed, 0 skipped$/m); // 'hangs', 'inner' and its parent
});

test('under CI, a skipped test fails the run, and so do fewer passing tests than the floor', () => {
  const source = `const { test } = require('node:test');
    test('one', () => {});
    test('two', () => {});
    test('later', { skip: process.env.SKIP_ONE ? 'not today' : false }, () => {});`;
  const floor = (passing: number, dir = tempDir('diffuse-floor-')) => {
    const file = path.join(dir, 'floor.json');
    fs.writeFileSync(file, JSON.stringify({ passing }));
    return file;
  };
  // Without CI: reported, not failed.
  const local = runner(source, { SKIP_ONE: '1' });
  assert.equal(local.status, 0, local.stdout);
  assert.match(local.stdout, /1 test\(s\) skipped:\n\s+.*sample\.test\.js: later \(not today\)/);
  const skipped = runner(source, { SKIP_ONE: '1', CI: 'true' });
  assert.equal(skipped.status, 1, skipped.stdout);
  assert.match(skipped.stdout, /1 test\(s\) skipped, which fails the run under CI/);
  const enough = runner(source, { CI: 'true', DIFFUSE_TEST_FLOOR_FILE: floor(3) });
  assert.equal(enough.status, 0, enough.stdout);
  assert.match(enough.stdout, /^3 test\(s\) passed, 0 failed, 0 skipped$/m);
  assert.doesNotMatch(enough.stdout, /test floor/);
  const below = runner(source, { CI: 'true', DIFFUSE_TEST_FLOOR_FILE: floor(4) });
  assert.equal(below.status, 1, below.stdout);
  assert.match(below.stdout, /^test floor: 3 tests passed, fewer than the floor of 4 in .*floor\.json; /m);
  // The floor in the repository is a positive integer, and what .ci/run's full `npm test` is held to.
  const kept = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'floor.json'), 'utf8')).passing;
  assert.ok(Number.isInteger(kept) && kept > 100, `test/floor.json: ${kept}`);
});
