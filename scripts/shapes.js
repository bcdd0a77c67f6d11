#!/usr/bin/env node
// Writes a folder of small generated RGB images (coloured circles, squares and triangles on white) to
// train the convolutional U-net on: `node scripts/shapes.js DIR [count] [size]`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');

const [dir, count = '512', size = '32'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node scripts/shapes.js DIR [count] [size]');
  process.exit(2);
}
const n = Number(count);
const s = Number(size);
const colours = ['#e03030', '#30a030', '#3050e0', '#e0c020'];
let state = 12345; // a small LCG, so the folder is the same on every machine
const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);

function shape(kind, cx, cy, r, fill) {
  if (kind === 0) return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`;
  if (kind === 1) return `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${fill}"/>`;
  return `<polygon points="${cx},${cy - r} ${cx + r},${cy + r} ${cx - r},${cy + r}" fill="${fill}"/>`;
}

(async () => {
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const r = s * (0.2 + 0.12 * random());
    const cx = r + (s - 2 * r) * random();
    const cy = r + (s - 2 * r) * random();
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${s}" height="${s}"><rect width="${s}" height="${s}" fill="white"/>${shape(Math.floor(3 * random()), cx, cy, r, colours[Math.floor(4 * random())])}</svg>`;
    await sharp(Buffer.from(svg)).png().toFile(path.join(dir, `shape-${String(i).padStart(4, '0')}.png`));
  }
  console.error(`wrote ${n} ${s}x${s} images to ${dir}`);
})();
