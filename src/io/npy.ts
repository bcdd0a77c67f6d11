/** NumPy's .npy format for float32 arrays (little-endian, C order): the noises `diffuse invert` writes and `interpolate` reads. */
import * as fs from 'node:fs';
import { UserError } from '../errors';
import { writeOutputFile } from '../files';

/** The bytes of a .npy file holding `values` as float32 of `shape`. */
export function encodeNpy(values: Float32Array, shape: number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // magic (6) + version (2) + length (2) + header + '\n', padded with spaces to a multiple of 64
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + values.length * 4);
  out.set([0x93, ...Buffer.from('NUMPY', 'latin1'), 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 10 + header.length);
  return out;
}

export function writeNpy(file: string, values: Float32Array, shape: number[]): void {
  writeOutputFile(file, encodeNpy(values, shape));
}

/** A .npy file's header fields and the bytes after it (any dtype); refused where it is not a .npy file. */
export function readNpyFile(file: string): { descr?: string; fortranOrder?: string; shape?: number[]; data: Buffer } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new UserError(`${file} is not a .npy file`);
  const headerLength = buf[6] === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = buf[6] === 1 ? 10 : 12;
  const header = buf.toString('latin1', headerStart, headerStart + headerLength);
  return {
    descr: /'descr':\s*'([^']+)'/.exec(header)?.[1],
    fortranOrder: /'fortran_order':\s*(True|False)/.exec(header)?.[1],
    shape: /'shape':\s*\(([^)]*)\)/.exec(header)?.[1].split(',').map((d) => d.trim()).filter(Boolean).map(Number),
    data: buf.subarray(headerStart + headerLength),
  };
}

/** A float32 .npy file's values and shape. */
export function readNpyFloat32(file: string): { values: Float32Array; shape: number[] } {
  const { descr, fortranOrder, shape = [], data } = readNpyFile(file);
  if (descr !== '<f4' || fortranOrder === 'True') throw new UserError(`${file} does not hold little-endian float32 in C order`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count * 4) throw new UserError(`${file}: ${data.length} bytes of data for shape (${shape.join(', ')})`);
  const values = new Float32Array(count);
  new Uint8Array(values.buffer).set(data);
  return { values, shape };
}
