/**
 * The reverse process as pictures: an animation of the grid from noise to images (animated WebP or GIF,
 * by extension), and a still of a few images' x_t at chosen steps across columns.
 */
import * as path from 'node:path';
import { UserError } from '../errors';
import { writeOutputFile, sharp } from '../files';
import { colourBytes, gridPixels } from './grid';

export const ANIMATION_FORMATS = { '.webp': 'webp', '.gif': 'gif' } as const;

/** The animation format `file` names, refused early where it names none. */
export function animationFormatOf(file: string): 'webp' | 'gif' {
  const ext = path.extname(file).toLowerCase();
  const format = ANIMATION_FORMATS[ext as keyof typeof ANIMATION_FORMATS];
  if (!format) throw new UserError(`cannot write ${file}: an animation is written as .webp or .gif, not ${ext || '(no extension)'}`);
  return format;
}

/**
 * Which of the steps 0 (pure noise) .. of to show as `frames` pictures: denser toward the end, where the
 * images take shape (evenly in (step/of)^½), always the first and the last.
 */
export function frameSteps(of: number, frames: number): number[] {
  if (of + 1 <= frames) return Array.from({ length: of + 1 }, (_, i) => i);
  const steps = new Set<number>();
  for (let i = 0; i < frames; i++) steps.add(Math.round(of * (1 - (1 - i / (frames - 1)) ** 2)));
  return [...steps].sort((a, b) => a - b);
}

export interface Frame {
  step: number;
  images: Float32Array;
}

/** Writes the frames (each n images of h×w×channels) as an animated grid; the last frame is held longer. */
export async function writeAnimation(file: string, frames: Frame[], n: number, h: number, w: number, channels: number): Promise<{ width: number; height: number; frames: number }> {
  const format = animationFormatOf(file);
  const grids = frames.map((f) => gridPixels(f.images, n, h, w, channels));
  const { width, height } = grids[0];
  // sharp's GIF and WebP encoders take RGB(A) pages stacked vertically
  const rgb = new Uint8Array(width * height * 3 * grids.length);
  grids.forEach((g, k) => rgb.set(colourBytes(g.pixels, channels, 3), k * width * height * 3));
  const delay = frames.map((_, i) => (i === frames.length - 1 ? 2000 : 120));
  const raw = sharp(rgb, { raw: { width, height: height * grids.length, channels: 3, pageHeight: height } });
  writeOutputFile(file, await (format === 'gif' ? raw.gif({ delay, loop: 0 }) : raw.webp({ delay, loop: 0, lossless: true })).toBuffer());
  return { width, height, frames: grids.length };
}

/** A still: `rows` images down, their state at each frame across (pure noise on the left, the image on the right). */
export function trajectoryPixels(frames: Frame[], rows: number, h: number, w: number, channels: number): { width: number; height: number; pixels: Uint8Array } {
  const size = h * w * channels;
  const tiles = new Float32Array(rows * frames.length * size);
  for (let r = 0; r < rows; r++) frames.forEach((f, col) => tiles.set(f.images.subarray(r * size, (r + 1) * size), (r * frames.length + col) * size));
  return gridPixels(tiles, rows * frames.length, h, w, channels, frames.length);
}
