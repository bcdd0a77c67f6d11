/**
 * The reverse process as pictures: an animation of the grid from noise to images (animated WebP or GIF,
 * by extension), and a still of a few images' x_t at chosen steps across columns.
 */
import * as path from 'node:path';
import sharp from 'sharp';
import { UserError } from '../errors';
import { writeAtomically } from './files';
import { GRID_GAP, GRID_GAP_VALUE, gridPixels } from './grid';

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
  grids.forEach((g, k) => {
    for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) rgb[(k * width * height + i) * 3 + c] = g.pixels[i * channels + (channels === 3 ? c : 0)];
  });
  const delay = frames.map((_, i) => (i === frames.length - 1 ? 2000 : 120));
  const raw = sharp(rgb, { raw: { width, height: height * grids.length, channels: 3, pageHeight: height } });
  const encoded = await (format === 'gif' ? raw.gif({ delay, loop: 0 }) : raw.webp({ delay, loop: 0, lossless: true })).toBuffer();
  try {
    writeAtomically(file, encoded);
  } catch (e) {
    throw new UserError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return { width, height, frames: grids.length };
}

/** A still: `rows` images down, their state at each frame across (pure noise on the left, the image on the right). */
export function trajectoryPixels(frames: Frame[], rows: number, h: number, w: number, channels: number): { width: number; height: number; pixels: Uint8Array } {
  const cols = frames.length;
  const width = cols * w + (cols - 1) * GRID_GAP;
  const height = rows * h + (rows - 1) * GRID_GAP;
  const pixels = new Uint8Array(width * height * channels).fill(GRID_GAP_VALUE);
  frames.forEach((f, col) => {
    for (let r = 0; r < rows; r++) {
      const tile = gridPixels(f.images.subarray(r * h * w * channels, (r + 1) * h * w * channels), 1, h, w, channels).pixels;
      for (let y = 0; y < h; y++) {
        const to = ((r * (h + GRID_GAP) + y) * width + col * (w + GRID_GAP)) * channels;
        pixels.set(tile.subarray(y * w * channels, (y + 1) * w * channels), to);
      }
    }
  });
  return { width, height, pixels };
}
