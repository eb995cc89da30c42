/**
 * A real browser against a running Vento: headless Chromium (Debian's `chromium`) driven by
 * `npm:playwright-core` loads the default site (the repo's www/) from the real server on port 0: the page
 * and its assets arrive with the right content types, a reload revalidates with 304, a large file is
 * fetched by Range (206) both by the media pipeline of a <video> element and by a mid-file seek, and a
 * missing page shows the 404 page.
 *
 * Ignored, with the reason in its name, when /usr/bin/chromium is absent (`.ci/run` installs it).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { BROWSER_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM } from "../_helpers/chromium.ts";
import { chromium, type Response } from "playwright-core";
import { type Files, startTestServer } from "../_helpers/server.ts";

/** The large file: big enough that Chromium's media loader asks for it by range. */
const BIG_BYTES = 5 * 1024 * 1024;

const WWW = fileURLToPath(new URL("../../www", import.meta.url));

/** The shipped default site plus a generated large binary and a page that plays it. */
async function siteFiles(): Promise<{ files: Files; big: Uint8Array }> {
  const files: Files = {};
  for (const entry of Deno.readDirSync(WWW)) {
    if (entry.isFile) files[entry.name] = await Deno.readFile(`${WWW}/${entry.name}`);
  }
  // A byte pattern whose value depends on the offset, so a wrong range cannot match by accident.
  const big = new Uint8Array(BIG_BYTES);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 11)) & 0xff;
  files["media/big.webm"] = big;
  files["media/player.html"] =
    '<!doctype html><title>player</title><video src="/media/big.webm" preload="auto"></video>\n';
  return { files, big };
}

Deno.test({
  name: HAVE_CHROMIUM
    ? "headless Chromium loads the default site from Vento: types, 304 on reload, Range, 404 page"
    : "headless Chromium site check (ignored: /usr/bin/chromium is not installed; apt-get install chromium)",
  ignore: !HAVE_CHROMIUM,
  fn: async (t) => {
    const { files, big } = await siteFiles();
    const server = await startTestServer({}, files);
    const profile = await Deno.makeTempDir({ prefix: "vento-chromium-" });
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: BROWSER_TIMEOUT_MS,
    });
    context.setDefaultTimeout(BROWSER_TIMEOUT_MS);
    const origin = `http://127.0.0.1:${server.port}`;
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const responses: Response[] = [];
      page.on("response", (r) => responses.push(r));
      // Chromium reports a revalidated page as its cached 200; the raw status lines on the wire come from
      // the DevTools protocol.
      const wire: { url: string; statusLine: string }[] = [];
      const cdp = await context.newCDPSession(page);
      const urls = new Map<string, string>();
      cdp.on("Network.requestWillBeSent", (e) => urls.set(e.requestId, e.request.url));
      cdp.on("Network.responseReceivedExtraInfo", (e) => {
        wire.push({
          url: urls.get(e.requestId) ?? "",
          statusLine: (e.headersText ?? "").split("\r\n", 1)[0],
        });
      });
      await cdp.send("Network.enable");

      await t.step("the index page and its assets load with the right content types", async () => {
        const main = await page.goto(`${origin}/`, { waitUntil: "load" });
        assert.ok(main !== null);
        assert.equal(main.status(), 200);
        assert.match(main.headers()["content-type"] ?? "", /^text\/html; charset=utf-8$/i);
        assert.equal(await page.title(), "Vento is running");
        const byPath = new Map(responses.map((r) => [new URL(r.url()).pathname, r]));
        assert.equal(byPath.get("/style.css")?.status(), 200);
        assert.match(byPath.get("/style.css")?.headers()["content-type"] ?? "", /^text\/css/);
        assert.equal(byPath.get("/favicon.svg")?.status(), 200);
        assert.match(byPath.get("/favicon.svg")?.headers()["content-type"] ?? "", /^image\/svg\+xml/);
        // The stylesheet was not just fetched but applied (nosniff would block a wrong type).
        const rules = await page.evaluate<number>("document.styleSheets[0]?.cssRules.length ?? 0");
        assert.ok(rules > 0, "style.css applied");
      });

      await t.step("a reload revalidates the page with a conditional request answered 304", async () => {
        const before = server.vento.stats.responses[3];
        wire.length = 0;
        const again = await page.reload({ waitUntil: "load" });
        assert.ok(again !== null);
        const req = again.request();
        const sent = await req.allHeaders();
        assert.ok(
          sent["if-none-match"] !== undefined || sent["if-modified-since"] !== undefined,
          `the reload was conditional: ${JSON.stringify(sent)}`,
        );
        const onWire = wire.find((w) => new URL(w.url).pathname === "/");
        assert.equal(onWire?.statusLine, "HTTP/1.1 304 Not Modified", JSON.stringify(wire));
        assert.equal(await page.title(), "Vento is running", "the cached page is shown");
        assert.ok(server.vento.stats.responses[3] > before, "the server answered 304");
      });

      await t.step("a <video> fetches the large file by Range and answers 206", async () => {
        responses.length = 0;
        const media = page.waitForResponse((r) => new URL(r.url()).pathname === "/media/big.webm");
        await page.goto(`${origin}/media/player.html`, { waitUntil: "load" });
        const r = await media;
        const range = (await r.request().allHeaders())["range"];
        assert.match(range ?? "", /^bytes=\d+-\d*$/, "the media loader asked for a range");
        assert.equal(r.status(), 206);
        assert.match(r.headers()["content-range"] ?? "", new RegExp(`^bytes \\d+-\\d+/${BIG_BYTES}$`));
      });

      await t.step("seeking into the large file returns exactly the requested bytes with 206", async () => {
        const start = 4_000_000;
        const end = start + 16_383;
        const got = await page.evaluate(async ([s, e]) => {
          const res = await fetch("/media/big.webm", { headers: { Range: `bytes=${s}-${e}` } });
          const bytes = new Uint8Array(await res.arrayBuffer());
          return { status: res.status, contentRange: res.headers.get("content-range"), bytes: [...bytes] };
        }, [start, end]);
        assert.equal(got.status, 206);
        assert.equal(got.contentRange, `bytes ${start}-${end}/${BIG_BYTES}`);
        assert.deepEqual(new Uint8Array(got.bytes), big.subarray(start, end + 1));
      });

      await t.step("a missing page shows the site's 404 page", async () => {
        const missing = await page.goto(`${origin}/no/such/page`, { waitUntil: "load" });
        assert.ok(missing !== null);
        assert.equal(missing.status(), 404);
        assert.match(missing.headers()["content-type"] ?? "", /^text\/html/);
        assert.equal(await page.title(), "404 Not Found");
      });
    } finally {
      await context.close();
      await server.stop();
      await Deno.remove(profile, { recursive: true });
    }
  },
});

/** Where the listing screenshot goes (dist/ is ignored by git): look at it after a change to the page. */
const SCREENSHOT = fileURLToPath(new URL("../../dist/screenshots/listing.png", import.meta.url));

Deno.test({
  name: HAVE_CHROMIUM
    ? "headless Chromium: the directory listing styled, sorted by a click and screenshotted; files arrive brotli-compressed"
    : "headless Chromium listing check (ignored: /usr/bin/chromium is not installed; apt-get install chromium)",
  ignore: !HAVE_CHROMIUM,
  fn: async () => {
    const files: Files = {
      "index.html": "<h1>home</h1>\n",
      "files/report-2026.pdf": new Uint8Array(2_400_000),
      "files/notes.txt": "short notes\n",
      "files/photo.jpg": new Uint8Array(380_000),
      "files/app.js": "console.log(1);\n".repeat(400),
      'files/<b>bold<i> & "quoted".txt': "hostile name\n",
      "files/docs/readme.md": "# docs\n",
      "files/assets/logo.svg": "<svg/>",
    };
    const server = await startTestServer({ directoryListing: true }, files);
    const day = 86_400_000;
    let age = 0;
    for (const name of Object.keys(files).filter((n) => n.startsWith("files/"))) {
      const t = new Date(Date.UTC(2026, 10, 30, 9, 30) - (age++ * 3 + 1) * day);
      await Deno.utime(`${server.root}/${name}`, t, t);
    }
    const profile = await Deno.makeTempDir({ prefix: "vento-chromium-" });
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: BROWSER_TIMEOUT_MS,
      viewport: { width: 900, height: 640 },
    });
    context.setDefaultTimeout(BROWSER_TIMEOUT_MS);
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const dialogs: string[] = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      const r = await page.goto(`http://127.0.0.1:${server.port}/files/`, { waitUntil: "load" });
      assert.equal(r?.status(), 200);
      assert.equal(await page.title(), "Index of /files/");
      const names = () => page.locator("td.name a").allTextContents();
      assert.deepEqual(await names(), [
        "../",
        "assets/",
        "docs/",
        '<b>bold<i> & "quoted".txt',
        "app.js",
        "notes.txt",
        "photo.jpg",
        "report-2026.pdf",
      ]);
      assert.equal(await page.locator("td.name b").count(), 0, "a hostile name is text");
      // The stylesheet applied: the table sits on a card with the welcome page's radius.
      const radius = await page.evaluate<string>(
        "getComputedStyle(document.querySelector('section')).borderTopLeftRadius",
      );
      assert.equal(radius, "14px");
      await page.click("th.size a");
      await page.waitForURL(/\?sort=size&order=desc$/);
      assert.deepEqual((await names()).slice(3, 6), ["report-2026.pdf", "photo.jpg", "app.js"]);
      assert.equal(await page.locator("th.size").getAttribute("aria-sort"), "descending");
      await Deno.mkdir(fileURLToPath(new URL(".", `file://${SCREENSHOT}`)), { recursive: true });
      const png = await page.screenshot({ path: SCREENSHOT, fullPage: true });
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
      assert.deepEqual(dialogs, [], "no script ran");

      // Chromium asks for br; a compressible file without a sidecar is compressed on the fly and decodes.
      const js = await page.goto(`http://127.0.0.1:${server.port}/files/app.js`, { waitUntil: "load" });
      assert.equal(js?.headers()["content-encoding"], "br");
      assert.equal(js?.headers()["vary"], "Accept-Encoding");
      assert.equal(await js?.text(), files["files/app.js"]);
    } finally {
      await context.close();
      await server.stop();
      await Deno.remove(profile, { recursive: true });
    }
  },
});
