/** What a run trains on, from its record: MNIST, MNIST padded to 32 px, or a folder of images. */
import { loadImageFolder } from './folder';
import { ImageSet, loadMnist, padImages } from './mnist';

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

/** The training images a record names; `log` hears how many of a folder's files could not be read. */
export async function loadTrainingData(data: DataRecord, log: (m: string) => void = () => {}): Promise<ImageSet> {
  if (data.dataset === 'mnist') return loadMnist('train', data.limit);
  if (data.dataset === 'mnist32') return padImages(loadMnist('train', data.limit), 2);
  const set = await loadImageFolder(data.path!, { size: data.imageSize!, channels: data.channels === 1 ? 1 : 3, background: data.background!, limit: data.limit }, log);
  if (set.skipped > 0) log(`skipped ${set.skipped} of ${set.files} image files in ${data.path} that could not be read`);
  return set;
}
