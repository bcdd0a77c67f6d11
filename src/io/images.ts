/** Sample grids as grayscale or RGB images (encoded by sharp in the format the file's extension names). */
import { ImageFormat, imageFormatOf, writeOutputFile, sharp } from '../files';
import { gridPixels } from './grid';

/** Pixels (bytes, HWC, 1 or 3 channels) encoded as PNG, lossless WebP or JPEG (quality 95). */
export async function encodeImage(pixels: Uint8Array, width: number, height: number, channels: number, format: ImageFormat): Promise<Buffer> {
  const raw = sharp(pixels, { raw: { width, height, channels: channels as 1 | 3 } });
  // Grids are small: keep every grey level where the format allows.
  return (format === 'png' ? raw.png() : format === 'webp' ? raw.webp({ lossless: true }) : raw.jpeg({ quality: 95 })).toBuffer();
}

/** Writes pixels (bytes, HWC) in the format the file's extension names. */
export async function writeImage(file: string, pixels: Uint8Array, width: number, height: number, channels: number): Promise<void> {
  writeOutputFile(file, await encodeImage(pixels, width, height, channels, imageFormatOf(file)));
}

export async function writeImageGrid(file: string, images: Float32Array, n: number, h: number, w: number, channels = 1, columns?: number): Promise<{ width: number; height: number }> {
  const { width, height, pixels } = gridPixels(images, n, h, w, channels, columns);
  await writeImage(file, pixels, width, height, channels);
  return { width, height };
}
