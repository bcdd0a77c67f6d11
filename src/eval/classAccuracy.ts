/**
 * Class accuracy of a conditional model's samples: of the samples drawn as class k, the share that a
 * classifier labels k, for each class asked for, over all of them, and the worst class. The samples are
 * drawn in equal numbers per class (splitPerClass), so the overall figure weighs every class alike.
 */
import { UserError } from '../errors';
import { argmax } from './classifier';

export interface ClassResult {
  /** The class's index in the run's classes. */
  class: number;
  /** Its name (MNIST: the digit; a folder: its subfolder). */
  name: string;
  /** Samples drawn as this class. */
  n: number;
  /** The share of them labelled this class. */
  accuracy: number;
}

export interface ClassAccuracy {
  /** The share of all samples labelled the class they were drawn as. */
  overall: number;
  /** The class with the lowest accuracy; of classes tied, the first drawn. */
  worst: ClassResult;
  /** Every class drawn, in the order first drawn. */
  byClass: ClassResult[];
}

/**
 * The class accuracy of samples drawn as `asked[i]` and labelled `predicted[i]` (class indices into
 * `classNames`). Classes appear in the order first asked for; of classes equally bad, the worst is
 * the first of them.
 */
export function classAccuracy(predicted: ArrayLike<number>, asked: ArrayLike<number>, classNames: readonly string[]): ClassAccuracy {
  if (predicted.length !== asked.length) throw new Error(`${predicted.length} predicted labels for ${asked.length} samples`);
  if (asked.length === 0) throw new Error('class accuracy of no samples');
  const counts = new Map<number, { n: number; right: number }>();
  let right = 0;
  for (let i = 0; i < asked.length; i++) {
    const k = asked[i];
    if (!Number.isInteger(k) || k < 0 || k >= classNames.length) throw new Error(`sample ${i} was drawn as class ${k}; there are ${classNames.length} classes`);
    const c = counts.get(k) ?? { n: 0, right: 0 };
    c.n++;
    if (predicted[i] === k) {
      c.right++;
      right++;
    }
    counts.set(k, c);
  }
  const byClass = [...counts].map(([k, c]) => ({ class: k, name: classNames[k], n: c.n, accuracy: c.right / c.n }));
  const worst = byClass.reduce((w, c) => (c.accuracy < w.accuracy ? c : w));
  return { overall: right / asked.length, worst, byClass };
}

/** The most probable of `classes` classes for each of n samples (probabilities [n, classes]). */
export function predictedLabels(probabilities: ArrayLike<number>, n: number, classes = 10): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => argmax(probabilities, i * classes, classes));
}

/** How `requested` samples are divided among `classes` classes: equally, the total rounded down to a multiple of the class count. */
export interface PerClassSplit {
  perClass: number;
  /** perClass × classes: the samples drawn. */
  n: number;
  /** The count asked for (n where it divides evenly). */
  requested: number;
  classes: number;
}

/** `requested` samples split equally over `classes` classes; fewer than `minimum` in all (or none per class) is refused. */
export function splitPerClass(requested: number, classes: number, minimum = 1): PerClassSplit {
  const perClass = Math.floor(requested / classes);
  const n = perClass * classes;
  if (perClass < 1 || n < minimum) {
    const least = Math.max(classes, Math.ceil(minimum / classes) * classes);
    throw new UserError(`--n ${requested} is too few to divide equally among ${classes} class${classes === 1 ? '' : 'es'}${minimum > 1 ? ` with at least ${minimum} in all` : ''}: give --n ${least} or more`);
  }
  return { perClass, n, requested, classes };
}

/** "2 per class of 10 classes; --n 25 rounded down to a multiple of 10": how a conditional evaluation's n was drawn. */
export function splitDescription(s: PerClassSplit): string {
  const rounded = s.n !== s.requested ? `; --n ${s.requested} rounded down to a multiple of ${s.classes}` : '';
  return `${s.perClass} per class of ${s.classes} class${s.classes === 1 ? '' : 'es'}${rounded}`;
}

/** The text lines of a class accuracy: overall with the worst class, then every class; `judge` names the classifier. */
export function classAccuracyLines(a: ClassAccuracy, judge = 'the digit classifier'): string[] {
  return [
    `class_accuracy ${a.overall.toFixed(4)} (worst class ${a.worst.name}: ${a.worst.accuracy.toFixed(4)}; samples ${judge} labels as the class they were drawn as)`,
    `class_accuracy_by_class ${a.byClass.map((c) => `${c.name}:${c.accuracy.toFixed(4)}`).join(',')}`,
  ];
}
