/** Headless Chromium for the tests that need a real browser (Debian's chromium, driven by puppeteer-core). */
import * as fs from 'node:fs';
import type { Browser } from 'puppeteer-core';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => fs.existsSync(p));
// .ci/run installs chromium; elsewhere without one these tests are skipped, and the runner lists the skip.
export const skipWithoutChromium: string | false = CHROMIUM ? false : 'no Chromium (apt-get install -y chromium)';

export async function launchBrowser(): Promise<Browser> {
  const puppeteer = await import('puppeteer-core');
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--allow-file-access-from-files'] });
}
