/**
 * Preloaded by scripts/test.js into the process of every test file it runs (NODE_OPTIONS=--require):
 * each test and hook that sets no `timeout` of its own gets DIFFUSE_TEST_TIMEOUT_MS, so a test that
 * hangs fails by itself and the file's next tests still run (subtests inherit their parent's limit).
 * node:test's run({ timeout }) limits a whole file, not a test, and Node 20's --test-timeout does not
 * reach the processes run() starts; hence this. A test that blocks the event loop (a busy loop) cannot
 * be interrupted from inside: scripts/test.js's limit on the whole file ends it.
 */
import * as vm from 'node:vm';
import { isMainThread } from 'node:worker_threads';

type AnyFunction = (...args: unknown[]) => unknown;

const limit = Number(process.env.DIFFUSE_TEST_TIMEOUT_MS);

// Processes the tests start (the CLI, worker threads) do not preload this file again.
if (process.env.DIFFUSE_TEST_NODE_OPTIONS !== undefined) {
  if (process.env.DIFFUSE_TEST_NODE_OPTIONS) process.env.NODE_OPTIONS = process.env.DIFFUSE_TEST_NODE_OPTIONS;
  else delete process.env.NODE_OPTIONS;
  delete process.env.DIFFUSE_TEST_NODE_OPTIONS;
}

const isOptions = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object';
const withLimit = (options: unknown) => ({ timeout: limit, ...(isOptions(options) ? options : {}) });

/** node:test's arguments sorted as it sorts them: test(name?, options?, fn?). */
function sorted(args: unknown[]): [unknown, unknown, unknown] {
  const [name, options, fn] = args;
  if (typeof name === 'function') return [undefined, undefined, name];
  if (isOptions(name)) return [undefined, name, options];
  if (typeof options === 'function') return [name, undefined, options];
  return [name, options, fn];
}

/** Where `fn` was called from (a test file's line). */
function callerOf(fn: AnyFunction): { file: string; line: number; column: number } | undefined {
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = (_, sites) => sites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder, fn);
  const site = holder.stack?.[0];
  Error.prepareStackTrace = saved;
  const file = site?.getFileName();
  return file && site ? { file, line: site.getLineNumber() ?? 1, column: site.getColumnNumber() ?? 1 } : undefined;
}

/**
 * node:test records where a test was declared as the place its `test` was called from, which would be
 * the wrapper below: the call is made from a one-line script placed at the test file's own line.
 */
function callAt(site: ReturnType<typeof callerOf>, original: AnyFunction, args: unknown[]): unknown {
  if (!site) return original(...args);
  const global = globalThis as unknown as Record<string, unknown>;
  global.__diffuseTestCall = original;
  global.__diffuseTestArgs = args;
  try {
    const script = new vm.Script('__diffuseTestCall(__diffuseTestArgs[0], __diffuseTestArgs[1], __diffuseTestArgs[2])', { filename: site.file, lineOffset: site.line - 1, columnOffset: site.column - 1 });
    return script.runInThisContext();
  } finally {
    delete global.__diffuseTestCall;
    delete global.__diffuseTestArgs;
  }
}

/** A test function with the limit added to its options (and its .skip, .todo and .only alike). */
function limited(original: AnyFunction): AnyFunction {
  const wrapped = (...args: unknown[]) => {
    const [name, options, fn] = sorted(args);
    return callAt(callerOf(wrapped), original, [name, withLimit(options), fn]);
  };
  for (const variant of ['skip', 'todo', 'only']) {
    const withVariant = (...args: unknown[]) => {
      const [name, options, fn] = sorted(args);
      return callAt(callerOf(withVariant), original, [name, { ...withLimit(options), [variant]: true }, fn]);
    };
    (wrapped as unknown as Record<string, AnyFunction>)[variant] = withVariant;
  }
  return wrapped;
}

/** before(fn, options?) and the other hooks. */
function limitedHook(original: AnyFunction): AnyFunction {
  const wrapped = (fn: unknown, options?: unknown) => callAt(callerOf(wrapped), original, [fn, withLimit(options)]);
  return wrapped;
}

if (isMainThread && Number.isFinite(limit) && limit > 0) {
  // node:test's own exports object (a namespace import would be a copy): what the test files call into.
  const nodeTest = require('node:test') as Record<string, AnyFunction & Record<string, AnyFunction>>;
  nodeTest.test = limited(nodeTest.test) as typeof nodeTest.test;
  nodeTest.it = limited(nodeTest.it) as typeof nodeTest.it;
  for (const hook of ['before', 'after', 'beforeEach', 'afterEach']) nodeTest[hook] = limitedHook(nodeTest[hook]) as typeof nodeTest.test;
}
