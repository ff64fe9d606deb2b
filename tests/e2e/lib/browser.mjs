// Headless Chromium for the page tests, driven by puppeteer-core (which
// brings no browser of its own): Debian's `chromium`, or $CHROMIUM.
// Without a browser the caller is told to skip, loudly, unless
// IMCORE_REQUIRE_SERVERS=1 (CI), which makes that a failure.
//
// Screenshots go to tests/e2e/output/ (not committed; README's copies are).
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const e2eDir = dirname(dirname(fileURLToPath(import.meta.url)));

/** Where the page tests write their screenshots. */
export const outputDir = join(e2eDir, 'output');

function chromiumPath() {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((p) => p && existsSync(p));
}

/**
 * Launches headless Chromium with a fresh profile, or returns null (after
 * saying so) where none is installed and skipping is allowed.
 * `close()` on the result also removes the profile.
 */
export async function launchBrowser() {
  const executablePath = chromiumPath();
  if (!executablePath) {
    const msg = 'chromium not found (install Debian\'s `chromium`, or set CHROMIUM)';
    if (process.env.IMCORE_REQUIRE_SERVERS === '1') {
      throw new Error(`${msg} (IMCORE_REQUIRE_SERVERS=1 makes this a failure)`);
    }
    console.error(`\n*** SKIPPED: ${msg} ***\n`);
    return null;
  }
  const profile = await mkdtemp(join(tmpdir(), 'imcore-chromium-'));
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    userDataDir: profile,
    // This machine's network is closed: without the background-networking
    // flags Chromium keeps trying to reach Google's hosts.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    await rm(profile, { recursive: true, force: true });
  };
  return browser;
}

/** Writes a full-page screenshot of `page` to output/NAME.png; returns the path. */
export async function screenshot(page, name) {
  mkdirSync(outputDir, { recursive: true });
  const path = join(outputDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
