#!/usr/bin/env node
'use strict';
// A reader that stops early (`diffuse train --help | head`) is not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
require('../dist/src/cli/program.js').main();
