/** Sample grids as pixels: tiles in a square-ish layout with a grey gap (no file or codec: the web page uses it too). */

export const GRID_GAP = 2;
export const GRID_GAP_VALUE = 128;

/** Columns and rows of a square-ish grid for n tiles. */
export function gridLayout(n: number, cols = Math.ceil(Math.sqrt(n))): { cols: number; rows: number } {
  return { cols, rows: Math.ceil(n / cols) };
}

/** [-1, 1] → 0..255, clamped and rounded. */
export function toByte(x: number): number {
  return Math.round((Math.min(1, Math.max(-1, x)) + 1) * 127.5);
}

/**
 * Images as they are once saved: clamped to [-1, 1] and rounded to 256 levels. The sampler's raw output
 * can stray outside [-1, 1]; scoring it raw would judge values no PNG or .npy file holds.
 */
export function quantize(images: Float32Array): Float32Array {
  return images.map((x) => toByte(x) / 127.5 - 1);
}

/** Lays n images of h×w×channels (one after another in `images`) out in a grid of bytes (square-ish, or `columns` wide) with a gap between tiles. */
export function gridPixels(images: Float32Array, n: number, h: number, w: number, channels = 1, columns?: number) {
  const gap = GRID_GAP;
  const { cols, rows } = gridLayout(n, columns);
  const width = cols * w + (cols - 1) * gap;
  const height = rows * h + (rows - 1) * gap;
  const pixels = new Uint8Array(width * height * channels).fill(GRID_GAP_VALUE);
  const row = w * channels;
  for (let k = 0; k < n; k++) {
    const top = Math.floor(k / cols) * (h + gap);
    const left = (k % cols) * (w + gap);
    for (let y = 0; y < h; y++) {
      const from = (k * h + y) * row;
      const to = ((top + y) * width + left) * channels;
      for (let i = 0; i < row; i++) pixels[to + i] = toByte(images[from + i]);
    }
  }
  return { width, height, pixels };
}

/** Grid bytes of 1 or 3 channels as RGB (out = 3) or opaque RGBA (out = 4), grey repeated into each colour. */
export function colourBytes(pixels: Uint8Array, channels: number, out: 3 | 4): Uint8Array {
  const count = pixels.length / channels;
  const rgb = new Uint8Array(count * out);
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) rgb[i * out + c] = pixels[i * channels + (channels === 3 ? c : 0)];
    if (out === 4) rgb[i * 4 + 3] = 255;
  }
  return rgb;
}
