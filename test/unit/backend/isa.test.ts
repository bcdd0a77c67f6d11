/**
 * One built addon carries the kernels for AVX-512, AVX2 + FMA and SSE2 (native/isa.h) and picks the
 * widest the CPU runs; DIFFUSE_ISA forces a narrower one. Every kernel test (native.test.ts) runs here
 * again on each other set this CPU can run; one it cannot is refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT, widestIsa } from '../../helpers';
import { loadNativeAddon } from '../../../src/backend/addon';

const native = loadNativeAddon();
const skip = native ? false : 'native kernels not built (npm run build:native)';
const SETS = process.arch === 'x64' ? ['avx512', 'avx2', 'generic'] : ['generic'];

function load(isa: string) {
  return spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(path.join(ROOT, 'build', 'Release', 'diffuse_native.node'))}).isa)`], {
    encoding: 'utf8',
    env: { ...process.env, DIFFUSE_ISA: isa },
  });
}

test('without DIFFUSE_ISA the addon takes the widest set this CPU runs; an unknown or unrunnable set is refused by name', { skip }, () => {
  assert.equal(native!.isa, process.env.DIFFUSE_ISA || widestIsa());
  const unknown = load('neon');
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, new RegExp(`DIFFUSE_ISA=neon: not one of this build's sets \\(${SETS.join(', ')}\\)`));
  const runnable = SETS.slice(SETS.indexOf(widestIsa()));
  for (const isa of SETS.filter((s) => !runnable.includes(s))) assert.match(load(isa).stderr, new RegExp(`DIFFUSE_ISA=${isa}: this CPU lacks those instructions`));
});

// The set in use runs native.test.js in this suite already; one this CPU lacks is refused (above).
const inUse = process.env.DIFFUSE_ISA || widestIsa();
for (const isa of SETS.slice(SETS.indexOf(widestIsa())).filter((s) => s !== inUse)) {
  test(`every kernel test passes on the ${isa} kernels (DIFFUSE_ISA=${isa})`, { skip }, () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'test.js'), path.join(ROOT, 'dist', 'test', 'unit', 'backend', 'native.test.js')], {
      encoding: 'utf8',
      // NODE_TEST_CONTEXT would make the inner runner report to this one instead of running the file
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, NODE_OPTIONS: process.env.DIFFUSE_TEST_NODE_OPTIONS ?? '', DIFFUSE_ISA: isa },
    });
    assert.equal(r.status, 0, `${r.stdout.slice(-3000)}${r.stderr.slice(-2000)}`);
    const passed = Number((r.stdout + r.stderr).match(/(\d+) test\(s\) passed, 0 failed, 0 skipped/)?.[1] ?? 0);
    assert.ok(passed >= 20, `${passed} kernel tests passed on ${isa}: ${r.stdout.slice(-2000)}`);
  });
}
