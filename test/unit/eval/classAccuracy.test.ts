import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classAccuracy, classAccuracyLines, predictedLabels, splitDescription, splitPerClass } from '../../../src/eval/classAccuracy';
import { UserError } from '../../../src/errors';

const DIGITS = Array.from({ length: 10 }, (_, d) => String(d));

test('class accuracy: the share labelled as drawn, overall and per class, and the worst class', () => {
  // Drawn as 3,3,3,3, 7,7,7,7, 1,1,1,1; labelled 3 three times, 7 once, 1 four times.
  const asked = [3, 3, 3, 3, 7, 7, 7, 7, 1, 1, 1, 1];
  const predicted = [3, 3, 8, 3, 7, 1, 1, 9, 1, 1, 1, 1];
  const a = classAccuracy(predicted, asked, DIGITS);
  assert.equal(a.overall, 8 / 12);
  assert.deepEqual(
    a.byClass.map((c) => [c.class, c.name, c.n, c.accuracy]),
    [
      [3, '3', 4, 0.75],
      [7, '7', 4, 0.25],
      [1, '1', 4, 1],
    ],
  );
  assert.deepEqual(a.worst, { class: 7, name: '7', n: 4, accuracy: 0.25 });
});

test('class accuracy: of classes tied for worst, the first drawn is named; all right and all wrong', () => {
  // 5 and 2 both at 0.5, 5 drawn first; 0 at 1.
  const tied = classAccuracy([5, 0, 0, 0, 2, 9], [5, 5, 0, 0, 2, 2], DIGITS);
  assert.equal(tied.worst.name, '5');
  assert.equal(tied.worst.accuracy, 0.5);
  assert.equal(tied.overall, 4 / 6);
  // The order drawn, not the class index, breaks the tie.
  assert.equal(classAccuracy([2, 9, 5, 0], [2, 2, 5, 5], DIGITS).worst.name, '2');
  const right = classAccuracy([4, 4, 6, 6], [4, 4, 6, 6], DIGITS);
  assert.equal(right.overall, 1);
  assert.equal(right.worst.name, '4');
  const wrong = classAccuracy([0, 0, 0, 0], [4, 4, 6, 6], DIGITS);
  assert.equal(wrong.overall, 0);
  assert.equal(wrong.worst.accuracy, 0);
});

test('class accuracy: names come from the class list; typed arrays; mismatched inputs are refused', () => {
  const a = classAccuracy(Int32Array.from([1, 0, 1]), Float32Array.from([1, 1, 0]), ['cat', 'dog']);
  assert.deepEqual(
    a.byClass.map((c) => [c.name, c.accuracy]),
    [
      ['dog', 0.5],
      ['cat', 0],
    ],
  );
  assert.equal(a.worst.name, 'cat');
  assert.throws(() => classAccuracy([1, 2], [1], DIGITS), /2 predicted labels for 1 samples/);
  assert.throws(() => classAccuracy([], [], DIGITS), /no samples/);
  assert.throws(() => classAccuracy([0], [2], ['cat', 'dog']), /class 2; there are 2 classes/);
});

test('predicted labels are the most probable class of each row', () => {
  const p = Float32Array.from([0.1, 0.7, 0.2, /**/ 0.5, 0.2, 0.3, /**/ 0.2, 0.2, 0.6]);
  assert.deepEqual([...predictedLabels(p, 3, 3)], [1, 0, 2]);
});

test('--n splits equally over the classes, rounded down to a multiple of the class count', () => {
  assert.deepEqual(splitPerClass(20, 10), { perClass: 2, n: 20, requested: 20, classes: 10 });
  assert.deepEqual(splitPerClass(29, 10), { perClass: 2, n: 20, requested: 29, classes: 10 });
  assert.deepEqual(splitPerClass(7, 3), { perClass: 2, n: 6, requested: 7, classes: 3 });
  assert.deepEqual(splitPerClass(5, 1, 4), { perClass: 5, n: 5, requested: 5, classes: 1 });
  assert.throws(() => splitPerClass(9, 10), (e: Error) => e instanceof UserError && /--n 9 is too few to divide equally among 10 classes: give --n 10 or more/.test(e.message));
  assert.throws(() => splitPerClass(3, 2, 4), /--n 3 is too few to divide equally among 2 classes with at least 4 in all: give --n 4 or more/);
  assert.throws(() => splitPerClass(5, 3, 4), /give --n 6 or more/);
  assert.equal(splitDescription(splitPerClass(20, 10)), '2 per class of 10 classes');
  assert.equal(splitDescription(splitPerClass(25, 10)), '2 per class of 10 classes; --n 25 rounded down to a multiple of 10');
  assert.equal(splitDescription(splitPerClass(4, 1)), '4 per class of 1 class');
});

test('the text lines: overall with the worst class named, then every class', () => {
  const lines = classAccuracyLines(classAccuracy([3, 3, 8, 3, 7, 1], [3, 3, 3, 3, 7, 7], DIGITS));
  assert.match(lines[0], /^class_accuracy 0\.6667 \(worst class 7: 0\.5000; /);
  assert.equal(lines[1], 'class_accuracy_by_class 3:0.7500,7:0.5000');
});
