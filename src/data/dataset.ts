/** What a run trains on, from its record: MNIST, MNIST padded to 32 px, or a folder of images. */
import { OptionError, UserError } from '../errors';
import { loadImageFolder } from './folder';
import { ImageSet, MNIST_CLASSES, loadMnist, loadMnistLabels, padImages } from './mnist';

/** What a run trains on, as its run record keeps it. */
export interface DataRecord {
  dataset: 'mnist' | 'mnist32' | 'folder';
  /** The folder, for 'folder'. */
  path?: string;
  /** Side and channels a folder's images are loaded at. */
  imageSize?: number;
  channels?: number;
  /** The colour a folder's transparent pixels are composited onto (#rrggbb). */
  background?: string;
  /** Training images mirrored left-right with probability 1/2. */
  flip: boolean;
  /** First n images only (0 = all). */
  limit: number;
  /** Images the run trained on. */
  count: number;
  /**
   * The class names, in label order; empty = unconditional (no labels loaded). MNIST's are the digits
   * '0'..'9'; a conditional folder's are its first-level subfolders, known once it has loaded.
   */
  classes: string[];
  /**
   * A folder's images are labelled by class (the ImageFolder layout: DIR/<class>/..., classes sorted by
   * name). False is an unconditional folder, as before; a record with classes loads labels either way.
   */
  conditional: boolean;
}

/** Whether a record's images load with labels: it names classes, or is marked conditional. */
export function isConditional(data: DataRecord): boolean {
  return data.conditional || data.classes.length > 0;
}

/** Height, width and channels of the images a record names. */
export function dataShape(data: DataRecord): { height: number; width: number; channels: number } {
  if (data.dataset === 'mnist') return { height: 28, width: 28, channels: 1 };
  if (data.dataset === 'mnist32') return { height: 32, width: 32, channels: 1 };
  return { height: data.imageSize!, width: data.imageSize!, channels: data.channels! };
}

export function describeData(d: DataRecord): string {
  return d.dataset === 'folder' ? `${d.imageSize}-px ${d.channels === 1 ? 'grayscale' : 'RGB'} ${d.path}` : d.dataset === 'mnist' ? 'MNIST' : 'MNIST-32';
}

/**
 * The training images a record names; `log` hears how many of a folder's files could not be read.
 * A conditional record's (isConditional) come with `labels` (one class index per image, in the images'
 * order) and `classNames` (in label order); where the record already names its classes (a resumed
 * run), the data must still have exactly those, or it is refused.
 */
export async function loadTrainingData(data: DataRecord, log: (m: string) => void = () => {}): Promise<ImageSet> {
  const conditional = isConditional(data);
  if (data.dataset === 'mnist' || data.dataset === 'mnist32') {
    let set = loadMnist('train', data.limit);
    if (conditional) {
      if (data.classes.length > 0 && !sameNames(data.classes, MNIST_CLASSES)) throw new UserError(`the run's classes (${list(data.classes)}) are not MNIST's digits 0..9`);
      const labels = Int32Array.from(loadMnistLabels('train', data.limit));
      if (labels.length !== set.count) throw new UserError(`MNIST's training labels (${labels.length}) do not match its images (${set.count})`);
      set = { ...set, labels, classNames: [...MNIST_CLASSES] };
    }
    return data.dataset === 'mnist32' ? padImages(set, 2) : set;
  }
  const set = await loadImageFolder(data.path!, { size: data.imageSize!, channels: data.channels === 1 ? 1 : 3, background: data.background!, limit: data.limit, conditional }, log);
  if (set.skipped > 0) log(`skipped ${set.skipped} of ${set.files} image files in ${data.path} that could not be read`);
  if (conditional && data.classes.length > 0 && !sameNames(data.classes, set.classNames!)) {
    throw new OptionError('data', `${data.path}: its classes are now ${list(set.classNames!)}; the run's are ${list(data.classes)}`);
  }
  return set;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i]);
}

/** Names for a message: the first few, and how many more. */
function list(names: readonly string[]): string {
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}
