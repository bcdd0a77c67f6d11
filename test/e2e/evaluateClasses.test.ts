/**
 * `diffuse evaluate` on class-conditional checkpoints: --n divided equally among the classes, drawn with
 * classifier-free guidance, and their class accuracy by the digit classifier (MNIST) or the folder classifier; an unconditional
 * checkpoint's output has none of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { assertCleanFailure, runCli, tempDir } from '../helpers';

const TINY = ['--model', 'fc', '--width', '64', '--limit', '256', '--epochs', '1'];

function train(args: string[]): string {
  const out = path.join(tempDir(), 'ckpt');
  const r = runCli(['train', ...TINY, ...args, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

function evaluate(args: string[]) {
  const r = runCli(['evaluate', '--steps', '2', ...args]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const inUnit = (x: number) => Number.isFinite(x) && x >= 0 && x <= 1;

test('a conditional MNIST checkpoint: the same number of each digit, and their class accuracy overall and for the worst digit', () => {
  const ckpt = train(['--conditional']);
  const out = evaluate(['--checkpoint', ckpt, '--n', '20']);
  assert.match(out, /^n 20 \(2 per class of 10 classes\)$/m);
  assert.match(out, /^sampler ddim 2 steps, classes 0,1,2,3,4,5,6,7,8,9 \(cfg 2\), /m);
  assert.match(out, /^fd \d/m); // today's figures beside it
  const line = out.match(/^class_accuracy (\d\.\d{4}) \(worst class (\d): (\d\.\d{4}); /m);
  assert.ok(line, `no class_accuracy line in:\n${out}`);
  const [overall, worstName, worst] = [Number(line[1]), line[2], Number(line[3])];
  assert.ok(inUnit(overall) && inUnit(worst), line[0]);
  const byClass = out.match(/^class_accuracy_by_class (.*)$/m)![1].split(',').map((p) => p.split(':'));
  assert.deepEqual(byClass.map(([name]) => name), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  const accuracies = byClass.map(([, a]) => Number(a));
  assert.ok(accuracies.every(inUnit), out);
  // 2 of each digit: every share is 0, 0.5 or 1, their mean is the overall share, the worst is the lowest (the first such).
  assert.ok(accuracies.every((a) => [0, 0.5, 1].includes(a)), out);
  assert.ok(Math.abs(accuracies.reduce((s, a) => s + a, 0) / 10 - overall) < 1e-4);
  assert.equal(worst, Math.min(...accuracies));
  assert.equal(worstName, String(accuracies.indexOf(worst)));

  // --n rounded down to a multiple of the class count, and said so; the JSON output has the same.
  const json = JSON.parse(evaluate(['--checkpoint', ckpt, '--n', '25', '--json']));
  assert.equal(json.samples.n, 20);
  assert.deepEqual(json.classDraw, { classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], perClass: 2, n: 20, requestedN: 25 });
  assert.equal(json.sampling.cfg, 2);
  assert.ok(inUnit(json.classAccuracy.overall));
  assert.equal(json.classAccuracy.byClass.length, 10);
  assert.ok(json.classAccuracy.byClass.every((c: { n: number; accuracy: number }) => c.n === 2 && inUnit(c.accuracy)));
  assert.equal(json.classAccuracy.worst.accuracy, Math.min(...json.classAccuracy.byClass.map((c: { accuracy: number }) => c.accuracy)));
  assert.match(evaluate(['--checkpoint', ckpt, '--n', '25']), /^n 20 \(2 per class of 10 classes; --n 25 rounded down to a multiple of 10\)$/m);

  // --class restricts the classes, --cfg weighs them, --per-class replaces --n.
  const some = evaluate(['--checkpoint', ckpt, '--n', '9', '--class', '3,7', '--cfg', '1']);
  assert.match(some, /^n 8 \(4 per class of 2 classes; --n 9 rounded down to a multiple of 2\)$/m);
  assert.match(some, /classes 3,7 \(cfg 1\)/);
  assert.match(some, /^class_accuracy_by_class 3:[01]\.\d{4},7:[01]\.\d{4}$/m);
  assert.match(evaluate(['--checkpoint', ckpt, '--class', '5', '--per-class', '4']), /^n 4 \(4 per class of 1 class\)$/m);

  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--n', '5']), /--n 5 is too few to divide equally among 10 classes with at least 4 in all: give --n 10 or more/);
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--class', 'x']), /--class x: the checkpoint's classes are 0, 1/);
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--class', '3,7,3']), /--class 3,7,3: names class 3 twice/);
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--class', '1,2', '--per-class', '1']), /--per-class 1 of 2 classes draws 2 images; at least 4/);
});

test('an unconditional checkpoint: no class accuracy, n as asked, and --class refused', () => {
  const ckpt = train([]);
  const out = evaluate(['--checkpoint', ckpt, '--n', '20']);
  assert.match(out, /^n 20$/m);
  assert.match(out, /^fd \d/m);
  assert.doesNotMatch(out, /class_accuracy|class accuracy|per class|classes|cfg/);
  const json = JSON.parse(evaluate(['--checkpoint', ckpt, '--n', '20', '--json']));
  assert.equal(json.samples.n, 20);
  for (const key of ['classAccuracy', 'classDraw']) assert.ok(!(key in json), key);
  assert.ok(!('classes' in json.sampling) && !('cfg' in json.sampling));
  assertCleanFailure(runCli(['evaluate', '--checkpoint', ckpt, '--class', '3']), /--class 3: the checkpoint's model is unconditional/);
  assertCleanFailure(runCli(['evaluate', '--samples', path.join(ckpt, 'none.png'), '--cfg', '2']), /--samples scores images already drawn/);
});

test('a conditional folder checkpoint: drawn per class, judged by the folder classifier (class accuracy, FD against the folder and its floor), trained once and cached', async () => {
  const dir = tempDir();
  const images = path.join(dir, 'images');
  for (const [c, shade] of [['cat', 30], ['dog', 200]] as const) {
    fs.mkdirSync(path.join(images, c), { recursive: true });
    for (let i = 0; i < 5; i++) await sharp(Buffer.alloc(8 * 8 * 3, shade + 10 * i), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(path.join(images, c, `${i}.png`));
  }
  const cache = path.join(dir, 'cache');
  const env = { DIFFUSE_CACHE_DIR: cache };
  const ckpt = train(['--data', images, '--image-size', '8', '--conditional']);
  const run = (args: string[]) => {
    const r = runCli(['evaluate', '--steps', '2', ...args], { env });
    assert.equal(r.status, 0, r.stderr);
    return r;
  };
  const first = run(['--checkpoint', ckpt, '--n', '9']);
  const out = first.stdout;
  assert.match(first.stderr, /trained the folder classifier \(2 classes\)/);
  assert.match(out, /^n 8 \(4 per class of 2 classes; --n 9 rounded down to a multiple of 2; against 10 training images in /m);
  assert.match(out, /classes cat,dog \(cfg 2\)/);
  assert.match(out, /^diversity \d/m);
  assert.match(out, /^copies [01]\.\d{4} \(samples whose nearest training image is within 1\/3 of their mean distance to their 10 nearest, after Carlini et al\. 2023; training images among themselves: /m);
  assert.match(out, /^classifier folder classifier of 2 classes, 8 px, trained on 8 images in \d+ s$/m);
  assert.match(out, /^features against 5 training images; floor: 5 other real images \(2 held out of the classifier's training\)$/m);
  for (const key of ['fd', 'floor_fd']) assert.match(out, new RegExp(`^${key} \\d+\\.\\d{3}$`, 'm'), key);
  for (const key of ['precision', 'recall', 'floor_precision', 'floor_recall']) assert.match(out, new RegExp(`^${key} [01]\\.\\d{4}$`, 'm'), key);
  assert.match(out, /^class_accuracy [01]\.\d{4} \(worst class (cat|dog): [01]\.\d{4}; samples the folder classifier labels as the class they were drawn as\)$/m);
  assert.match(out, /^class_accuracy_by_class cat:[01]\.\d{4},dog:[01]\.\d{4}$/m);
  assert.match(out, /^classifier_heldout_accuracy [01]\.\d{4} \(balanced over classes [01]\.\d{4}; on 2 real images it did not train on\)$/m);
  const cached = fs.readdirSync(path.join(cache, 'classifiers'));
  assert.equal(cached.length, 1);
  // Again, as JSON: the classifier from the cache (not trained again), the same figures' fields.
  const again = run(['--checkpoint', ckpt, '--n', '8', '--class', 'dog', '--json']);
  assert.doesNotMatch(again.stderr, /trained the folder classifier/);
  assert.deepEqual(fs.readdirSync(path.join(cache, 'classifiers')), cached);
  const json = JSON.parse(again.stdout);
  assert.equal(json.n, 8);
  assert.deepEqual(json.classDraw, { classes: ['dog'], perClass: 8, n: 8, requestedN: 8 });
  assert.equal(json.classAccuracy.byClass.length, 1);
  assert.ok(inUnit(json.classAccuracy.overall));
  assert.ok(!('classAccuracyMissing' in json));
  assert.equal(json.classifier.trained, false);
  assert.equal(json.classifier.task, 'classes');
  assert.deepEqual(json.classifier.outputs, ['cat', 'dog']);
  assert.equal(json.classifier.heldOut.count, 2);
  assert.deepEqual(json.copyRule, { alpha: 1 / 3, neighbours: 10, rule: json.copyRule.rule });
  assert.ok(inUnit(json.trainCopies));
  for (const part of [json.features.samples, json.features.floor]) {
    assert.ok(Number.isFinite(part.fd) && part.fd >= 0 && Number.isFinite(part.kid) && inUnit(part.precision) && inUnit(part.recall), JSON.stringify(part));
  }
  assert.equal(json.features.referenceN, 5);
});
