#!/usr/bin/env node
// `npm test` after tsc and the addon's staleness check: runs the compiled test files (or those named on
// the command line) one at a time with node's test runner, each test under a time limit, with a data
// folder of their own (the digit classifier trained there, never the repository's data/). A skipped
// test is reported by name, and under CI it fails the run: a skip would otherwise pass as green.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { run } = require('node:test');
const { spec } = require('node:test/reporters');

const ROOT = path.resolve(__dirname, '..');
const TEST_DIR = path.join(ROOT, 'dist', 'test');
const TIMEOUT_MS = 5 * 60 * 1000; // for any one test; the slowest take about a minute here

/** The compiled tests under `dir` whose source still exists (dist/ keeps files whose source was moved). */
function testsUnder(dir) {
  return fs
    .readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, f))
    .filter((f) => /\.test\.js$/.test(f) && fs.existsSync(path.join(ROOT, 'test', path.relative(TEST_DIR, f).replace(/\.js$/, '.ts'))))
    .sort();
}

// Arguments: test files or folders (e.g. dist/test/unit); none = everything.
const named = process.argv.slice(2).map((f) => path.resolve(f));
const files = (named.length > 0 ? named : [TEST_DIR]).flatMap((f) => (fs.statSync(f).isDirectory() ? testsUnder(f) : [f]));

// Kept between local runs (dist/ is not committed; CI starts without it), so the classifier trains once.
process.env.DIFFUSE_DATA_DIR = path.join(ROOT, 'dist', 'test-data');
fs.mkdirSync(process.env.DIFFUSE_DATA_DIR, { recursive: true });
// Decoded image folders too (src/data/folderCache.ts), not the user's ~/.cache.
process.env.DIFFUSE_CACHE_DIR = path.join(process.env.DIFFUSE_DATA_DIR, 'cache');

const skipped = [];
let failed = 0;
const stream = run({ files, concurrency: 1, timeout: TIMEOUT_MS });
stream.on('test:pass', (t) => {
  if (t.skip !== undefined || t.todo !== undefined) skipped.push(`${path.relative(ROOT, t.file ?? '')}: ${t.name} (${t.skip ?? t.todo})`);
});
stream.on('test:fail', () => failed++);
const report = stream.compose(new spec());
report.pipe(process.stdout);
report.on('end', () => {
  if (skipped.length > 0) {
    console.log(`\n${skipped.length} test(s) skipped${process.env.CI ? ', which fails the run under CI' : ''}:\n  ${skipped.join('\n  ')}`);
  }
  if (failed > 0 || (process.env.CI && skipped.length > 0)) process.exitCode = 1;
});
