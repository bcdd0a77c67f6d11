/** Reading sample sets back: PNG grids written by `diffuse sample`, and NumPy uint8 [n, 28, 28] files. */
import { UserError } from '../errors';
import { GRID_GAP, GRID_GAP_VALUE } from '../io/grid';
import { readNpyFile } from '../io/npy';
import { sharp } from '../files';

export interface SampleSet {
  n: number;
  /** n · 784 values in [-1, 1]. */
  images: Float32Array;
}

const TILE = 28;

function toUnit(byte: number): number {
  return byte / 127.5 - 1;
}

/** A grid of 28-px tiles with GRID_GAP-px gaps; trailing tiles that are all gap colour are empty slots. */
export async function readGrid(file: string): Promise<SampleSet> {
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(file).grayscale().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`cannot read image ${file}: ${(e as Error).message}`);
  }
  const { width, height } = raw.info;
  const pixelStride = raw.info.channels;
  const cols = (width + GRID_GAP) / (TILE + GRID_GAP);
  const rows = (height + GRID_GAP) / (TILE + GRID_GAP);
  if (!Number.isInteger(cols) || !Number.isInteger(rows)) {
    throw new UserError(`${file} (${width}x${height}) is not a grid of ${TILE}-px tiles with ${GRID_GAP}-px gaps as diffuse sample writes`);
  }
  const tiles: Float32Array[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const tile = new Float32Array(TILE * TILE);
      let allGap = true;
      for (let y = 0; y < TILE; y++) {
        for (let x = 0; x < TILE; x++) {
          const byte = raw.data[((r * (TILE + GRID_GAP) + y) * width + c * (TILE + GRID_GAP) + x) * pixelStride];
          if (byte !== GRID_GAP_VALUE) allGap = false;
          tile[y * TILE + x] = toUnit(byte);
        }
      }
      tiles.push(allGap ? new Float32Array(0) : tile);
    }
  }
  while (tiles.length > 0 && tiles[tiles.length - 1].length === 0) tiles.pop();
  const images = new Float32Array(tiles.length * TILE * TILE);
  tiles.forEach((t, i) => images.set(t.length ? t : new Float32Array(TILE * TILE).fill(toUnit(GRID_GAP_VALUE)), i * TILE * TILE));
  return { n: tiles.length, images };
}

/** A .npy file holding uint8 [n, 28, 28] (what the PyTorch reference's `sample` writes). */
export function readNpy(file: string): SampleSet {
  const { descr, fortranOrder: fortran, shape, data } = readNpyFile(file);
  if (descr !== '|u1' || fortran !== 'False' || !shape || shape.length !== 3 || shape[1] !== TILE || shape[2] !== TILE) {
    throw new UserError(`${file} must hold uint8 [n, ${TILE}, ${TILE}] in C order (found ${descr} ${shape ? `[${shape}]` : 'no shape'})`);
  }
  const n = shape[0];
  if (data.length !== n * TILE * TILE) throw new UserError(`${file} is truncated: ${data.length} bytes of data for [${shape}]`);
  return { n, images: Float32Array.from(data, toUnit) };
}

export async function readSamples(file: string): Promise<SampleSet> {
  if (file.toLowerCase().endsWith('.npy')) return readNpy(file);
  return readGrid(file);
}
