// Debian's Chromium driven by playwright-core (no browser download): headless, a fresh profile per launch.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A browser with a profile of its own; `close()` ends it and removes the profile. Each page's console
 * errors and uncaught exceptions are kept in `problems`, to print when a test fails.
 */
export async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chorus-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 720 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  /** @type {string[]} */
  const problems = [];
  context.on("page", (page) => {
    page.on("console", (m) => m.type() === "error" && problems.push(`[console] ${page.url()}: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`[pageerror] ${page.url()}: ${e.message}`));
  });
  // The persistent context opens with one blank page; tests make their own.
  for (const page of context.pages()) await page.close();
  return {
    context,
    problems,
    newPage: () => context.newPage(),
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
