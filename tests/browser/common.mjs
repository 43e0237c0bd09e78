// What the browser tests share: their command line, their checks, and a
// headless Debian Chromium driven by playwright-core that records every
// console error, page error and failed request (a CSP violation included)
// in `problems`, for the script to fail on.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const WAIT_MS = 90_000;

/** `--name value` from the command line, else `fallback`; missing and no fallback exits 2. */
export function option(name, fallback, usage) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  console.error(`missing --${name}; usage: ${usage}`);
  process.exit(2);
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/**
 * Polls `probe` (async, returns `{ ok, seen }`) every 250 ms until `ok`, for
 * up to WAIT_MS: the page draws after its fetches settle, which on a busy
 * machine can be seconds after the action that caused it. Fails with what
 * was last seen, so a timeout says how far the page got.
 */
export async function eventually(what, probe) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last.seen;
    if (Date.now() >= deadline) throw new Error(`${what} (waited ${WAIT_MS} ms; last seen: ${JSON.stringify(last.seen)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function step(name, fn) {
  const started = Date.now();
  await fn();
  console.log(`ok - ${name} (${Date.now() - started} ms)`);
}

/** Chromium with one page (1400×1000) whose problems are collected; `out` is created. */
export async function launch(out) {
  mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  return { browser, page, problems };
}

/**
 * Ends a browser test: with no `error`, fails on any recorded problem and
 * prints the screenshots; with one, saves `<name>-failure.png` in `out`,
 * prints why (and the problems) and exits 1. The browser is closed either way.
 */
export async function finish({ browser, page, problems, screenshots, out, name }, error) {
  if (!error) {
    try {
      check(problems.length === 0, `the browser reported problems:\n${problems.join('\n')}`);
      for (const file of screenshots) console.log(`screenshot: ${file}`);
      await browser.close();
      return;
    } catch (err) {
      error = err;
    }
  }
  const file = join(out, `${name}-failure.png`);
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
  console.error(`not ok - ${error.message}`);
  if (problems.length) console.error(`browser problems:\n${problems.join('\n')}`);
  console.error(`screenshot of the failure: ${file}`);
  await browser.close();
  process.exit(1);
}
