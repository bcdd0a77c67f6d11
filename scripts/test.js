#!/usr/bin/env node
// `npm test` after tsc and the addon's staleness check: runs the compiled test files (or those named on
// the command line) one at a time with node's test runner, with a data folder of their own (the digit
// classifier trained there, never the repository's data/), and each test under a time limit of its own:
// dist/test/timeLimit.js, preloaded into every test file's process, gives each test and hook that sets
// no `timeout` TEST_TIMEOUT_MS, so a test that hangs fails by itself and the file's next tests still run.
// (run()'s `timeout` would limit a whole file: here it is only the backstop for a file whose event loop
// is blocked.) A skipped test is reported by name, and under CI it fails the run: a skip would otherwise
// pass as green. The passing tests are counted; under CI a whole-suite run with fewer than the floor in
// test/floor.json fails (tests that silently stopped running, a file that no longer loads, would
// otherwise pass as green too).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { run } = require('node:test');
const { spec } = require('node:test/reporters');

const ROOT = path.resolve(__dirname, '..');
const TEST_DIR = path.join(ROOT, 'dist', 'test');
// For any one test that sets no limit of its own; the slowest take about a minute here. (Overridable,
// for the runner's own test: test/unit/testRunner.test.ts.)
const TEST_TIMEOUT_MS = Number(process.env.DIFFUSE_TEST_TIMEOUT_MS) || 5 * 60 * 1000;
// For a whole file (above the sum of its tests' limits): only a blocked event loop should reach it.
const FILE_TIMEOUT_MS = Number(process.env.DIFFUSE_TEST_FILE_TIMEOUT_MS) || 30 * 60 * 1000;
// The fewest passing tests a CI run of the whole suite may have; DIFFUSE_TEST_FLOOR_FILE names another
// floor file, which then applies to the files named too (for the runner's own test).
const FLOOR_FILE = process.env.DIFFUSE_TEST_FLOOR_FILE || path.join(ROOT, 'test', 'floor.json');

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

// Every test's own time limit (test/timeLimit.ts), preloaded into the test files' processes, which put
// NODE_OPTIONS back as it was for the processes they start.
const timeLimit = path.join(TEST_DIR, 'timeLimit.js');
if (!fs.existsSync(timeLimit)) throw new Error(`${path.relative(ROOT, timeLimit)} is missing: run tsc -p . first`);
process.env.DIFFUSE_TEST_TIMEOUT_MS = String(TEST_TIMEOUT_MS);
process.env.DIFFUSE_TEST_NODE_OPTIONS = process.env.NODE_OPTIONS ?? '';
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(timeLimit)}`.trim();

const skipped = [];
let passed = 0;
let failed = 0;
// forceExit: a file ends when its tests have, though a timed-out test left timers or sockets behind.
const stream = run({ files, concurrency: 1, timeout: FILE_TIMEOUT_MS, forceExit: true });
stream.on('test:pass', (t) => {
  if (t.skip !== undefined || t.todo !== undefined) skipped.push(`${path.relative(ROOT, t.file ?? '')}: ${t.name} (${t.skip ?? t.todo})`);
  else if (t.details?.type !== 'suite') passed++;
});
stream.on('test:fail', () => failed++);
const report = stream.compose(new spec());
report.pipe(process.stdout);
report.on('end', () => {
  console.log(`\n${passed} test(s) passed, ${failed} failed, ${skipped.length} skipped`);
  if (skipped.length > 0) {
    console.log(`\n${skipped.length} test(s) skipped${process.env.CI ? ', which fails the run under CI' : ''}:\n  ${skipped.join('\n  ')}`);
  }
  let belowFloor = false;
  if (process.env.CI && (named.length === 0 || process.env.DIFFUSE_TEST_FLOOR_FILE)) {
    const floor = JSON.parse(fs.readFileSync(FLOOR_FILE, 'utf8')).passing;
    if (!Number.isInteger(floor) || floor < 1) throw new Error(`${FLOOR_FILE}: "passing" must be a positive integer`);
    if (passed < floor) {
      belowFloor = true;
      console.log(`test floor: ${passed} tests passed, fewer than the floor of ${floor} in ${path.relative(ROOT, FLOOR_FILE)}; a test file stopped loading or tests were removed (lower the floor there only on purpose)`);
    }
  }
  if (failed > 0 || (process.env.CI && skipped.length > 0) || belowFloor) process.exitCode = 1;
});
