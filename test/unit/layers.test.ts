/**
 * Every import in src/ points down the layers docs/design.md lists (its "Layers" table is read here,
 * so the picture and the test cannot drift apart): a room imports its own files and the rooms of lower
 * layers, never a room above or beside it, and no files import each other in a circle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers';

const SRC = path.join(ROOT, 'src');

/** The layers, top first: each a list of rooms (a folder under src/ with a slash, or a file). */
export function layersFrom(design: string): string[][] {
  const table = design.split('## Layers')[1]?.split('\n## ')[0] ?? '';
  return table
    .split('\n')
    .filter((l) => /^\|[^|]+\|.*`/.test(l))
    .map((l) => [...l.split('|')[2].matchAll(/`([^`]+)`/g)].map((m) => m[1]));
}

/** Each src file's relative imports (import/export from, require, import()), as src-relative paths without extension. */
export function importGraph(srcDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const files = (fs.readdirSync(srcDir, { recursive: true }) as string[]).filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'));
  for (const file of files) {
    const text = fs.readFileSync(path.join(srcDir, file), 'utf8');
    const targets = [...text.matchAll(/(?:from\s+|import\s+|import\(\s*|require\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) =>
      path.relative(srcDir, path.resolve(path.dirname(path.join(srcDir, file)), m[1])).replace(/\.(ts|js)$/, ''),
    );
    graph.set(file.replace(/\.ts$/, ''), targets);
  }
  return graph;
}

/** The room of a src-relative module: its top folder (`models/`) or, at the top, its file (`rng.ts`). */
function roomOf(module: string): string {
  const parts = module.split(path.sep);
  return parts.length > 1 ? `${parts[0]}/` : `${parts[0]}.ts`;
}

/** Imports that point up or sideways, as "from -> to (room layer -> room layer)". */
export function upwardImports(graph: Map<string, string[]>, layers: string[][]): string[] {
  const layerOf = new Map(layers.flatMap((rooms, i) => rooms.map((r) => [r, i] as const)));
  const bad: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const [a, b] = [roomOf(from), roomOf(to)];
      if (a === b) continue;
      const [la, lb] = [layerOf.get(a), layerOf.get(b)];
      // layers are listed top first: a lower layer has a larger index
      if (la === undefined || lb === undefined || lb <= la) bad.push(`${from} -> ${to} (${a} ${la ?? 'not in the table'} -> ${b} ${lb ?? 'not in the table'})`);
    }
  }
  return bad;
}

/** One circle of imports among the modules, or null. */
export function findCircle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (m: string): string[] | null => {
    if (state.get(m) === 'done') return null;
    if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
    state.set(m, 'open');
    stack.push(m);
    for (const t of graph.get(m) ?? []) {
      const circle = visit(t);
      if (circle) return circle;
    }
    stack.pop();
    state.set(m, 'done');
    return null;
  };
  for (const m of graph.keys()) {
    const circle = visit(m);
    if (circle) return circle;
  }
  return null;
}

const layers = layersFrom(fs.readFileSync(path.join(ROOT, 'docs', 'design.md'), 'utf8'));
const graph = importGraph(SRC);

test("docs/design.md's layers name every room of src/ once", () => {
  assert.ok(layers.length >= 8, `${layers.length} layers read from docs/design.md`);
  const listed = layers.flat();
  assert.equal(new Set(listed).size, listed.length, `a room listed twice: ${listed.join(', ')}`);
  const rooms = [...new Set([...graph.keys()].map(roomOf))].sort();
  assert.deepEqual(rooms.filter((r) => !listed.includes(r)), [], 'rooms of src/ missing from the table');
  assert.deepEqual(listed.filter((r) => !rooms.includes(r)), [], 'rooms in the table that src/ does not have');
});

test('every import in src/ points down the layers', () => {
  assert.ok(graph.size > 50 && [...graph.values()].flat().length > 200, 'the import graph was read');
  assert.deepEqual(upwardImports(graph, layers), []);
});

test('no files of src/ import each other in a circle', () => {
  assert.equal(findCircle(graph)?.join(' -> ') ?? null, null);
});

test('the checks see an import that points up, one sideways, and a circle', () => {
  const toy = [['cli/'], ['config/'], ['models/', 'data/'], ['rng.ts']];
  const g = new Map([
    ['cli/program', ['config/resolve', 'rng']],
    ['config/resolve', ['models/unet', 'cli/options']],
    ['models/unet', ['data/mnist', 'models/layers']],
    ['models/layers', ['models/unet']],
    ['data/mnist', ['rng']],
  ]);
  assert.deepEqual(upwardImports(g, toy).map((s) => s.split(' (')[0]), ['config/resolve -> cli/options', 'models/unet -> data/mnist']);
  assert.deepEqual(findCircle(g), ['models/unet', 'models/layers', 'models/unet']);
});
