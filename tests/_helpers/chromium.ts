/** The system Chromium the browser tests drive (playwright-core, no download), and how they launch it. */

export const CHROMIUM = "/usr/bin/chromium";

/** Whether the system Chromium is installed (the browser tests report themselves skipped otherwise). */
export const HAVE_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/** Quiet, offline, deterministic Chromium: no GPU, sandbox, sync, updates, QUIC or first-run work. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** Every browser wait is bounded so a broken page fails the test instead of hanging it. */
export const BROWSER_TIMEOUT_MS = 10_000;
