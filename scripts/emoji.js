#!/usr/bin/env node
// Lays out an emoji-datasource package's 64-px images by category, for `diffuse train --data DIR --conditional`:
// DIR/<category>/<name>.png (links to a cache, or copies with --copy). The package (Google's Noto by default:
// emoji-datasource-google, MIT; any vendor of the family: --vendor apple|twitter|facebook) is fetched with
// `npm pack` into ~/.cache/diffuse/emoji once and only its images and emoji.json are unpacked: a user of diffuse
// does not install 100 MB of other sizes, and the README's command needs nothing but npm. --package-dir reads an
// unpacked package instead (the tests' fake one).
//
//   node scripts/emoji.js DIR [--vendor google] [--size 64] [--no-skin-tones] [--copy] [--package-dir PATH]
//
// Skin-tone variants are separate images (about 60% of the set); --no-skin-tones leaves them out. The
// "Component" category (bare skin-tone swatches, hair parts) is left out: those are not emoji to draw.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function fail(message) {
  console.error(`emoji: ${message}`);
  process.exit(2);
}

function parse(argv) {
  const o = { dir: null, vendor: 'google', size: 64, skinTones: true, copy: false, packageDir: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--vendor') o.vendor = argv[++i];
    else if (a === '--size') o.size = Number(argv[++i]);
    else if (a === '--no-skin-tones') o.skinTones = false;
    else if (a === '--copy') o.copy = true;
    else if (a === '--package-dir') o.packageDir = argv[++i];
    else if (a.startsWith('--')) fail(`unknown option ${a}`);
    else if (o.dir === null) o.dir = a;
    else fail(`one folder expected, got ${o.dir} and ${a}`);
  }
  if (!o.dir) fail('usage: node scripts/emoji.js DIR [--vendor google] [--size 64] [--no-skin-tones] [--copy] [--package-dir PATH]');
  if (!/^[a-z]+$/.test(o.vendor)) fail(`--vendor ${o.vendor}: a vendor name such as google, apple, twitter, facebook`);
  if (![16, 20, 32, 64].includes(o.size)) fail(`--size ${o.size}: the packages hold 16, 20, 32 and 64 px`);
  return o;
}

/** The unpacked package (emoji.json and img/VENDOR/SIZE), fetched once into the cache. */
function packageDir(o) {
  if (o.packageDir) return o.packageDir;
  const name = `emoji-datasource-${o.vendor}`;
  const cache = path.join(process.env.DIFFUSE_CACHE_DIR || path.join(os.homedir(), '.cache', 'diffuse'), 'emoji', name);
  const done = path.join(cache, `.unpacked-${o.size}`);
  if (fs.existsSync(done)) return path.join(cache, 'package');
  fs.mkdirSync(cache, { recursive: true });
  const pack = spawnSync('npm', ['pack', name, '--silent', '--pack-destination', cache], { encoding: 'utf8', shell: process.platform === 'win32' });
  if (pack.status !== 0) fail(`npm pack ${name} failed: ${(pack.stderr || pack.stdout).trim().split('\n').pop()}`);
  const tarball = path.join(cache, pack.stdout.trim().split('\n').pop());
  const tar = spawnSync('tar', ['-xzf', tarball, '-C', cache, 'package/emoji.json', 'package/package.json', `package/img/${o.vendor}/${o.size}`], { encoding: 'utf8' });
  if (tar.status !== 0) fail(`cannot unpack ${tarball}: ${tar.stderr.trim()}`);
  fs.rmSync(tarball);
  fs.writeFileSync(done, '');
  return path.join(cache, 'package');
}

/** "Smileys & Emotion" → "smileys-emotion": a folder name that is also a --class name. */
function slug(text) {
  return text.toLowerCase().replace(/&/g, ' ').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function main() {
  const o = parse(process.argv.slice(2));
  const pkg = packageDir(o);
  let entries;
  try {
    entries = JSON.parse(fs.readFileSync(path.join(pkg, 'emoji.json'), 'utf8'));
  } catch (e) {
    fail(`${path.join(pkg, 'emoji.json')}: ${e.message}`);
  }
  const images = path.join(pkg, 'img', o.vendor, String(o.size));
  if (fs.existsSync(o.dir) && fs.readdirSync(o.dir).length > 0) fail(`${o.dir} is not empty: give a new folder`);
  const counts = new Map();
  const taken = new Set();
  let missing = 0;
  let skinTones = 0;
  const place = (category, name, file) => {
    const from = path.join(images, file);
    if (!fs.existsSync(from)) {
      missing++;
      return;
    }
    const folder = path.join(o.dir, category);
    fs.mkdirSync(folder, { recursive: true });
    // short names can collide once made file names ("+1" and "-1"): then the image's code point names it too
    const unique = taken.has(`${category}/${name}`) ? `${name}-${slug(file.replace(/\.png$/, ''))}` : name;
    taken.add(`${category}/${unique}`);
    const to = path.join(folder, `${unique}.png`);
    if (o.copy) fs.copyFileSync(from, to);
    else fs.symlinkSync(path.resolve(from), to);
    counts.set(category, (counts.get(category) ?? 0) + 1);
  };
  for (const e of entries) {
    if (!e.category || e.category === 'Component' || !e.image) continue;
    const category = slug(e.category);
    const name = slug(e.short_name || '') || slug(e.unified || e.image);
    place(category, name, e.image);
    for (const [tone, variant] of Object.entries(e.skin_variations ?? {})) {
      if (!o.skinTones) {
        skinTones++;
        continue;
      }
      place(category, `${name}-${slug(tone)}`, variant.image);
    }
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (total === 0) fail(`no images found in ${images}`);
  const list = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${c} ${n}`).join(', ');
  console.log(`emoji: ${total} images in ${Object.keys(Object.fromEntries(counts)).length} categories in ${path.resolve(o.dir)} (${list}); ${missing} listed without an image skipped${o.skinTones ? '' : `, ${skinTones} skin-tone variants left out`}`);
}

main();
