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

const named = process.argv.slice(2);
const files = named.length > 0
  ? named.map((f) => path.resolve(f))
  : fs.readdirSync(TEST_DIR, { recursive: true }).filter((f) => /\.test\.js$/.test(f)).sort().map((f) => path.join(TEST_DIR, f));

// Kept between local runs (dist/ is not committed; CI starts without it), so the classifier trains once.
process.env.DIFFUSE_DATA_DIR = path.join(ROOT, 'dist', 'test-data');
fs.mkdirSync(process.env.DIFFUSE_DATA_DIR, { recursive: true });

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
