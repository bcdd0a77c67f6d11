// What the native addon is built from (this folder's C sources and binding.gyp), as one hash: the build writes it beside the addon, and the
// loader and `npm test` compare it with the checkout's sources, so an addon built from other sources
// is rebuilt or refused instead of silently tested or used.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
/** The sources: binding.gyp and every C file and header in native/. */
function sources() {
  let native = [];
  try {
    native = fs.readdirSync(path.join(ROOT, 'native')).filter((f) => /\.(c|h)$/.test(f)).sort().map((f) => `native/${f}`);
  } catch {
    /* no native/ folder: nothing to compare */
  }
  return native.length > 0 ? ['binding.gyp', ...native] : [];
}
const ADDON = path.join(ROOT, 'build', 'Release', 'diffuse_native.node');
const STAMP_NAME = 'diffuse_native.sources';

/** The hash of the checkout's native sources, or null where they are absent. */
function sourcesHash() {
  const files = sources();
  if (files.length === 0) return null;
  const hash = crypto.createHash('sha256');
  for (const file of files) {
    try {
      hash.update(file).update(fs.readFileSync(path.join(ROOT, file)));
    } catch {
      return null;
    }
  }
  return hash.digest('hex');
}

/** The hash recorded when the addon at `addon` was built, or null. */
function builtHash(addon = ADDON) {
  try {
    return fs.readFileSync(path.join(path.dirname(addon), STAMP_NAME), 'utf8').trim();
  } catch {
    return null;
  }
}

function writeStamp(addon = ADDON) {
  fs.writeFileSync(path.join(path.dirname(addon), STAMP_NAME), `${sourcesHash()}\n`);
}

module.exports = { ADDON, sourcesHash, builtHash, writeStamp };
