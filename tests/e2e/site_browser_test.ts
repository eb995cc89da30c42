/**
 * The site rules in a real browser: headless Chromium (Debian's `chromium`, driven by
 * `npm:playwright-core`) against the real server on port 0. A deep link into a single-page app is answered
 * by the `_redirects` 200 rewrite (the app's own script runs and sees the deep path); a cross-origin
 * `fetch` that needs a CORS preflight succeeds where `_headers` allows the page's origin and is blocked
 * where it does not; and a `Basic-Auth` path challenges the browser, which gets in with the credentials.
 *
 * Ignored, with the reason in its name, when /usr/bin/chromium is absent.
 */

import assert from "node:assert/strict";
import { BROWSER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM } from "../_helpers/chromium.ts";
import { chromium } from "playwright-core";
import { startTestServer } from "../_helpers/server.ts";
import { hashPassword } from "../../src/static/basic_auth.ts";

Deno.test({
  name: HAVE_CHROMIUM
    ? "headless Chromium: SPA deep link via a 200 rewrite, CORS preflight allowed and refused, Basic-Auth prompt"
    : "headless Chromium site-rules check (ignored: /usr/bin/chromium is not installed; apt-get install chromium)",
  ignore: !HAVE_CHROMIUM,
  fn: async (t) => {
    const hash = await hashPassword("open sesame", 10_000);
    const site = await startTestServer({}, {
      "index.html": "<!doctype html><title>home</title>\n",
      "app/index.html":
        '<!doctype html><title>spa</title><div id="view"></div><script src="/app/main.js"></script>\n',
      "app/main.js": "document.getElementById('view').textContent = 'route:' + location.pathname;\n",
      "admin/index.html": "<!doctype html><title>admin area</title>\n",
      "_redirects": "/app/*  /app/index.html  200\n",
      "_headers": `/admin/*\n  Basic-Auth: ann:${hash}\n`,
    });
    const origin = `http://127.0.0.1:${site.port}`;
    // A second server on another port is another origin: the API the page calls.
    const logDir = await Deno.makeTempDir({ prefix: "vento-cors-" });
    const api = await startTestServer({ accessLog: `${logDir}/access.log` }, {
      "index.html": "api\n",
      "allowed/data.json": '{"from":"api"}\n',
      "closed/data.json": '{"from":"api"}\n',
      "_headers": [
        "/allowed/*",
        `  Access-Control-Allow-Origin: ${origin}`,
        "  Access-Control-Allow-Methods: GET, OPTIONS",
        "  Access-Control-Allow-Headers: X-Requested-With",
        "  Vary: Origin",
        "",
      ].join("\n"),
    });
    const apiOrigin = `http://127.0.0.1:${api.port}`;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: BROWSER_TIMEOUT_MS,
    });
    try {
      const context = await browser.newContext();
      context.setDefaultTimeout(BROWSER_TIMEOUT_MS);
      const page = await context.newPage();

      await t.step(
        "a deep link into the SPA loads the app shell, whose script sees the deep path",
        async () => {
          const r = await page.goto(`${origin}/app/orders/42?tab=items`);
          assert.equal(r?.status(), 200);
          assert.equal(await page.title(), "spa");
          await page.waitForFunction(`document.getElementById("view").textContent !== ""`);
          assert.equal(await page.textContent("#view"), "route:/app/orders/42");
        },
      );

      await t.step("a fetch needing a preflight passes where _headers allows the origin", async () => {
        const result = await page.evaluate(async (url) => {
          const r = await fetch(url, { headers: { "X-Requested-With": "vento-test" } });
          return await r.json();
        }, `${apiOrigin}/allowed/data.json`);
        assert.deepEqual(result, { from: "api" });
      });

      await t.step("and is blocked by the browser where no rule allows it", async () => {
        const outcome = await page.evaluate(async (url) => {
          try {
            await fetch(url, { headers: { "X-Requested-With": "vento-test" } });
            return "fetched";
          } catch (e) {
            return (e as Error).name;
          }
        }, `${apiOrigin}/closed/data.json`);
        assert.equal(outcome, "TypeError");
      });

      await t.step("Basic-Auth: without credentials the browser is challenged (its prompt)", async () => {
        // Headless Chromium has nobody to type into the prompt: it records the 401 and its challenge, then
        // gives the navigation up as ERR_INVALID_AUTH_CREDENTIALS.
        const challenged = page.waitForResponse((r) => r.url() === `${origin}/admin/`);
        const navigation = await page.goto(`${origin}/admin/`).then(() => "loaded", (e: Error) => e.message);
        const r = await challenged;
        assert.equal(r.status(), 401);
        assert.equal(await r.headerValue("www-authenticate"), 'Basic realm="Restricted", charset="UTF-8"');
        assert.match(navigation, /ERR_INVALID_AUTH_CREDENTIALS/);
      });

      await t.step("with the user's credentials the browser answers the challenge and gets in", async () => {
        const authed = await browser.newContext({
          httpCredentials: { username: "ann", password: "open sesame" },
        });
        try {
          const p = await authed.newPage();
          const r = await p.goto(`${origin}/admin/`, { timeout: BROWSER_TIMEOUT_MS });
          assert.equal(r?.status(), 200);
          assert.equal(await p.title(), "admin area");
        } finally {
          await authed.close();
        }
      });
      await context.close();
    } finally {
      await browser.close();
      await site.stop();
      await api.stop();
    }
    // The preflights really happened (and were answered): the API's access log shows them.
    const log = await Deno.readTextFile(`${logDir}/access.log`);
    await Deno.remove(logDir, { recursive: true });
    assert.match(log, /"OPTIONS \/allowed\/data\.json HTTP\/1\.1" 204/);
    assert.match(log, /"GET \/allowed\/data\.json HTTP\/1\.1" 200/);
  },
});
