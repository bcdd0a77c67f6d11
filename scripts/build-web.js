#!/usr/bin/env node
// Bundles the browser API (src/api/browser.ts with the model, scheduler and sampler code it imports,
// and tfjs) into dist/web/diffuse.mjs, an ES module a page of one's own can import, and the exported
// page's own script (src/web/page.ts) into dist/web/page.js, which imports that module as any page would;
// beside them the page's static files. `diffuse export --web` copies them from there.
'use strict';
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'dist', 'web');
fs.mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2020', logLevel: 'warning' };
// The page reaches the API through the module beside it, not a second copy of it.
const apiBeside = {
  name: 'api-beside',
  setup(build) {
    build.onResolve({ filter: /\/api\/browser$/ }, () => ({ path: './diffuse.mjs', external: true }));
  },
};

async function main() {
  await esbuild.build({ ...common, entryPoints: [path.join(root, 'src', 'api', 'browser.ts')], outfile: path.join(out, 'diffuse.mjs') });
  await esbuild.build({ ...common, entryPoints: [path.join(root, 'src', 'web', 'page.ts')], outfile: path.join(out, 'page.js'), plugins: [apiBeside] });
  fs.rmSync(path.join(out, 'diffuse-web.js'), { force: true }); // the page's script before it used the module
  for (const file of ['index.html', 'sw.js']) fs.copyFileSync(path.join(root, 'src', 'web', file), path.join(out, file));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
