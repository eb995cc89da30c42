/**
 * End-to-end tests of on-the-fly compression against the real server over raw TCP (and curl): bodies
 * decompress to the file, q-values pick the coding, every answer varies on Accept-Encoding, each coding
 * has its own strong ETag, ranges come from the identity file, large files stream chunked, HTTP/1.0 and
 * small or incompressible files are sent as they are, and edits produce a new compressed version.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { type Config, loadConfig } from "../../src/config/config.ts";
import { startVento } from "../../src/app/vento.ts";
import { RawClient, type RawResponse, request } from "../_helpers/raw_client.ts";
import { startTestServer, type TestServer, withTestServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";
const decoder = new TextDecoder();

/** ~100 KiB of HTML: above the file cache's per-file limit, below COMPRESS_CACHE_MAX_FILE_BYTES. */
const PAGE = "<!doctype html><title>big page</title>\n" +
  Array.from({ length: 2000 }, (_, i) => `<p class="row">row ${i}: the quick brown fox ${i * 7919}</p>\n`)
    .join("");
/** A small compressible file, served from the memory cache. */
const STYLE = "body { color: #333; margin: 0 auto; }\n".repeat(100);
/** Bigger than the COMPRESS_CACHE_MAX_FILE_BYTES the stream tests set: compressed while it streams. */
const LOG_TEXT = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"abcdefghij".repeat(i % 7)}\n`).join(
  "",
);

const FILES: Record<string, string | Uint8Array> = {
  "index.html": "<h1>home</h1>\n",
  "page.html": PAGE,
  "style.css": STYLE,
  "tiny.css": "a{}\n",
  "data.json": JSON.stringify({ items: Array.from({ length: 300 }, (_, i) => ({ i, name: `n${i}` })) }),
  "photo.png": new Uint8Array(4096).fill(7),
  "drawing.svgz": new Uint8Array(4096).fill(9),
  "big.log.txt": LOG_TEXT,
  "side.js": "console.log('side');\n".repeat(200),
  "side.js.br": "BR-SIDECAR",
};

/** `withTestServer` on this file's documents, also asserting that the server logged no errors. */
function withServer(fn: (s: TestServer) => Promise<void>, overrides: Partial<Config> = {}): Promise<void> {
  return withTestServer(
    async (s) => {
      await fn(s);
      assert.deepEqual(s.errors, [], "the server logged no errors");
    },
    overrides,
    FILES,
  );
}

function get(port: number, target: string, headers = "", version = "1.1"): Promise<RawResponse> {
  return request(port, `GET ${target} HTTP/${version}\r\n${H}${headers}\r\n`);
}

function decode(r: RawResponse): string {
  const coding = r.headers.get("content-encoding");
  const body = coding === "br"
    ? zlib.brotliDecompressSync(r.body)
    : coding === "gzip"
    ? zlib.gunzipSync(r.body)
    : r.body;
  return decoder.decode(body);
}

Deno.test("compressible files are compressed on the fly by Accept-Encoding and decompress to the file", () =>
  withServer(async ({ port }) => {
    const cases: Array<[string | null, string | null]> = [
      [null, null],
      ["br, gzip", "br"],
      ["gzip, deflate, br", "br"],
      ["gzip", "gzip"],
      ["br;q=0.5, gzip;q=0.8", "gzip"],
      ["br;q=0, gzip;q=0", null],
      ["*", "br"],
      ["identity", null],
      ["deflate", null],
      ["gzip;q=0.2, identity;q=1", null],
    ];
    for (const path of ["/page.html", "/style.css", "/data.json"]) {
      const etags = new Map<string | null, string>();
      const want = String(FILES[path.slice(1)]);
      for (const [ae, coding] of cases) {
        const what = `${path} ${ae}`;
        // Twice: the first compresses, the second is the cached copy; both must be the same bytes.
        for (let round = 0; round < 2; round++) {
          const r = await get(port, path, ae === null ? "" : `Accept-Encoding: ${ae}\r\n`);
          assert.equal(r.status, 200, what);
          assert.equal(r.headers.get("content-encoding"), coding ?? undefined, what);
          assert.equal(r.headers.get("vary"), "Accept-Encoding", `${what}: Vary on every answer`);
          assert.equal(decode(r), want, what);
          if (coding !== null) assert.ok(r.body.length < want.length / 2, `${what}: actually smaller`);
          assert.equal(r.headers.get("content-length"), String(r.body.length), what);
          const etag = r.headers.get("etag")!;
          assert.match(etag, /^"[^"]+"$/, `${what}: a strong ETag`);
          const known = etags.get(coding);
          if (known !== undefined) assert.equal(etag, known, `${what}: the same ETag every time`);
          etags.set(coding, etag);
        }
      }
      assert.equal(new Set(etags.values()).size, 3, `${path}: identity, br and gzip have their own ETags`);
    }
  }));

Deno.test("compressed answers: 304 per coding, identity's ETag does not validate br, HEAD matches GET", () =>
  withServer(async ({ port }) => {
    const br = await get(port, "/page.html", "Accept-Encoding: br\r\n");
    const plain = await get(port, "/page.html");
    const brTag = br.headers.get("etag")!;
    const nm = await get(port, "/page.html", `Accept-Encoding: br\r\nIf-None-Match: ${brTag}\r\n`);
    assert.equal(nm.status, 304);
    assert.equal(nm.headers.get("vary"), "Accept-Encoding");
    assert.equal(nm.headers.get("etag"), brTag);
    const other = await get(
      port,
      "/page.html",
      `Accept-Encoding: br\r\nIf-None-Match: ${plain.headers.get("etag")}\r\n`,
    );
    assert.equal(other.status, 200);
    assert.equal(other.headers.get("content-encoding"), "br");
    const failed = await get(
      port,
      "/page.html",
      `Accept-Encoding: br\r\nIf-Match: ${plain.headers.get("etag")}\r\n`,
    );
    assert.equal(failed.status, 412);
    assert.equal(failed.headers.get("vary"), "Accept-Encoding");
    const head = await request(port, `HEAD /page.html HTTP/1.1\r\n${H}Accept-Encoding: br\r\n\r\n`, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-encoding"), "br");
    assert.equal(head.headers.get("content-length"), String(br.body.length));
    assert.equal(head.headers.get("etag"), brTag);
    assert.equal(head.body.length, 0);
    // A compressed copy does not advertise ranges (they are answered from the identity file).
    assert.equal(br.headers.get("accept-ranges"), undefined);
    assert.equal(plain.headers.get("accept-ranges"), "bytes");
  }));

Deno.test("a Range request with Accept-Encoding is answered from the identity file, with Vary", () =>
  withServer(async ({ port }) => {
    for (const path of ["/page.html", "/style.css"]) {
      const want = String(FILES[path.slice(1)]);
      const r = await get(port, path, "Accept-Encoding: br, gzip\r\nRange: bytes=10-29\r\n");
      assert.equal(r.status, 206, path);
      assert.equal(r.headers.get("content-encoding"), undefined, path);
      assert.equal(r.text, want.slice(10, 30), path);
      assert.equal(r.headers.get("content-range"), `bytes 10-29/${want.length}`, path);
      assert.equal(r.headers.get("vary"), "Accept-Encoding", path);
      // If-Range with the br ETag does not match the identity file: the whole (identity) file.
      const br = await get(port, path, "Accept-Encoding: br\r\n");
      const ifRange = await get(
        port,
        path,
        `Accept-Encoding: br\r\nRange: bytes=0-3\r\nIf-Range: ${br.headers.get("etag")}\r\n`,
      );
      assert.equal(ifRange.status, 200, path);
      assert.equal(ifRange.text, want, path);
    }
  }));

Deno.test("small, incompressible and sidecar-backed files: only what should be compressed is", () =>
  withServer(async ({ port }) => {
    const tiny = await get(port, "/tiny.css", "Accept-Encoding: br, gzip\r\n");
    assert.equal(tiny.headers.get("content-encoding"), undefined, "below COMPRESS_MIN_BYTES");
    assert.equal(tiny.headers.get("vary"), undefined);
    const png = await get(port, "/photo.png", "Accept-Encoding: br, gzip\r\n");
    assert.equal(png.headers.get("content-encoding"), undefined, "image/png is not in COMPRESS_TYPES");
    assert.equal(png.body.length, 4096);
    const svgz = await get(port, "/drawing.svgz", "Accept-Encoding: br, gzip\r\n");
    assert.equal(svgz.headers.get("content-type"), "image/svg+xml");
    assert.equal(svgz.headers.get("content-encoding"), undefined, ".svgz is gzip data already");
    // The br sidecar wins for br; gzip has no sidecar, so it is made on the fly.
    const side = await get(port, "/side.js", "Accept-Encoding: br\r\n");
    assert.equal(side.text, "BR-SIDECAR");
    const gz = await get(port, "/side.js", "Accept-Encoding: gzip\r\n");
    assert.equal(gz.headers.get("content-encoding"), "gzip");
    assert.equal(decode(gz), String(FILES["side.js"]));
    assert.equal(gz.headers.get("vary"), "Accept-Encoding");
  }));

Deno.test("COMPRESS=off sends files as they are; COMPRESS_TYPES and COMPRESS_MIN_BYTES are obeyed", async (t) => {
  await t.step("off", () =>
    withServer(async ({ port }) => {
      const r = await get(port, "/page.html", "Accept-Encoding: br, gzip\r\n");
      assert.equal(r.headers.get("content-encoding"), undefined);
      assert.equal(r.headers.get("vary"), undefined);
      assert.equal(r.text, PAGE);
    }, { compress: false }));
  await t.step("types and minimum", () =>
    withServer(async ({ port }) => {
      const css = await get(port, "/style.css", "Accept-Encoding: gzip\r\n");
      assert.equal(css.headers.get("content-encoding"), undefined, "text/css is not listed");
      const json = await get(port, "/data.json", "Accept-Encoding: gzip\r\n");
      assert.equal(json.headers.get("content-encoding"), "gzip");
      const tiny = await get(port, "/tiny.css", "Accept-Encoding: gzip\r\n");
      assert.equal(tiny.headers.get("content-encoding"), undefined);
    }, { compressTypes: ["application/json"], compressMinBytes: 1 }));
});

Deno.test("files above COMPRESS_CACHE_MAX_FILE_BYTES stream compressed with chunked framing on a kept-alive connection", () =>
  withServer(async ({ port }) => {
    const c = await RawClient.connect(port);
    try {
      for (const coding of ["br", "gzip"]) {
        await c.send(`GET /big.log.txt HTTP/1.1\r\n${H}Accept-Encoding: ${coding}\r\n\r\n`);
        const r = await c.read();
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("transfer-encoding"), "chunked");
        assert.equal(r.headers.get("content-length"), undefined);
        assert.equal(r.headers.get("content-encoding"), coding);
        assert.equal(r.headers.get("vary"), "Accept-Encoding");
        assert.equal(decode(r), LOG_TEXT);
        assert.ok(r.body.length < LOG_TEXT.length / 3);
        // A 304 for the streamed coding's ETag, on the same connection.
        await c.send(
          `GET /big.log.txt HTTP/1.1\r\n${H}Accept-Encoding: ${coding}\r\nIf-None-Match: ${
            r.headers.get("etag")
          }\r\n\r\n`,
        );
        assert.equal((await c.read()).status, 304);
      }
      await c.send(`HEAD /big.log.txt HTTP/1.1\r\n${H}Accept-Encoding: br\r\n\r\n`);
      const head = await c.read("HEAD");
      assert.equal(head.headers.get("transfer-encoding"), "chunked");
      assert.equal(head.body.length, 0);
      await c.send(`GET /index.html HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).text, "<h1>home</h1>\n");
    } finally {
      c.close();
    }
    // HTTP/1.0 has no chunked coding: the identity file, with its length.
    const old = await get(port, "/big.log.txt", "Accept-Encoding: br\r\n", "1.0");
    assert.equal(old.headers.get("content-encoding"), undefined);
    assert.equal(old.headers.get("content-length"), String(LOG_TEXT.length));
    assert.equal(old.text, LOG_TEXT);
  }, { compressCacheMaxFileBytes: 64 * 1024 }));

Deno.test("an edited file is compressed again: new ETag, new content", () =>
  withServer(async (s) => {
    const before = await get(s.port, "/style.css", "Accept-Encoding: br\r\n");
    const edited = STYLE.replaceAll("#333", "#444") + "/* edited */\n";
    await Deno.writeTextFile(`${s.root}/style.css`, edited);
    // FILE_CACHE_REVALIDATE_MS is 0 here: the next request sees the edit.
    const after = await get(s.port, "/style.css", "Accept-Encoding: br\r\n");
    assert.notEqual(after.headers.get("etag"), before.headers.get("etag"));
    assert.equal(decode(after), edited);
  }, { fileCacheRevalidateMs: 0 }));

Deno.test("curl --compressed gets the file back byte for byte, brotli and gzip", () =>
  withServer(async ({ port }) => {
    for (const coding of ["br", "gzip"]) {
      const out = await new Deno.Command("curl", {
        args: [
          "-sS",
          "--compressed",
          "-H",
          `Accept-Encoding: ${coding}`,
          "-D",
          "-",
          `http://127.0.0.1:${port}/page.html`,
        ],
        stdout: "piped",
      }).output();
      assert.ok(out.success, `curl exited ${out.code}`);
      const text = decoder.decode(out.stdout);
      const split = text.indexOf("\r\n\r\n");
      assert.match(text.slice(0, split), new RegExp(`content-encoding: ${coding}`, "i"));
      assert.equal(text.slice(split + 4), PAGE);
    }
  }));

Deno.test("a reload applies COMPRESS_* and ACCESS_LOG_FORMAT live, dropping copies made under the old settings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-compress-reload-" });
  const conf = `${dir}/vento.conf`;
  const base = "PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nADMIN_SOCKET=off\nACCESS_LOG=access.log\n";
  try {
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/www/page.html`, PAGE);
    await Deno.writeTextFile(conf, base + "ACCESS_LOG_FORMAT=json\n");
    const loaded = await loadConfig(conf);
    if (!loaded.ok) throw new Error(loaded.messages.join("\n"));
    const vento = await startVento(loaded.config, { configPath: conf, logError: () => {} });
    try {
      const port = vento.addr.port;
      const q5 = await get(port, "/page.html", "Accept-Encoding: br\r\n");
      assert.equal(q5.headers.get("content-encoding"), "br");

      await Deno.writeTextFile(conf, base + "ACCESS_LOG_FORMAT=combined\nCOMPRESS_BROTLI_LEVEL=0\n");
      const r1 = await vento.reload();
      assert.ok("applied" in r1);
      assert.deepEqual(r1.applied.sort(), ["ACCESS_LOG_FORMAT", "COMPRESS_BROTLI_LEVEL"]);
      assert.deepEqual(r1.needsRestart, []);
      const q0 = await get(port, "/page.html", "Accept-Encoding: br\r\n");
      assert.equal(decode(q0), PAGE);
      assert.ok(q0.body.length > q5.body.length, "compressed again at the new level, not the cached copy");

      await Deno.writeTextFile(conf, base + "ACCESS_LOG_FORMAT=combined\nCOMPRESS=off\n");
      const r2 = await vento.reload();
      assert.ok("applied" in r2);
      assert.deepEqual(r2.applied.sort(), ["COMPRESS", "COMPRESS_BROTLI_LEVEL"]);
      const off = await get(port, "/page.html", "Accept-Encoding: br\r\n");
      assert.equal(off.headers.get("content-encoding"), undefined);
      assert.equal(off.headers.get("vary"), undefined);
    } finally {
      await vento.shutdown();
    }
    const lines = (await Deno.readTextFile(`${dir}/access.log`)).trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.ok(lines[0].startsWith("{"), "json before the reload");
    assert.match(lines[1], /^127\.0\.0\.1 - - \[/, "combined after it");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a file compressed while it streams carries the site's _headers, on its 200 and its 304 alike", async () => {
  const s = await startTestServer({ compressCacheMaxFileBytes: 64 * 1024 }, {
    ...FILES,
    "_headers": "/*\n  X-Frame-Options: DENY\n  Cache-Control: private, max-age=60\n",
  });
  try {
    const streamed = await get(s.port, "/big.log.txt", "Accept-Encoding: br\r\n");
    assert.equal(streamed.headers.get("transfer-encoding"), "chunked");
    assert.equal(streamed.headers.get("x-frame-options"), "DENY");
    assert.equal(streamed.headers.get("cache-control"), "private, max-age=60");
    const etag = streamed.headers.get("etag")!;
    const again = await get(s.port, "/big.log.txt", `Accept-Encoding: br\r\nIf-None-Match: ${etag}\r\n`);
    assert.equal(again.status, 304);
    assert.equal(again.headers.get("x-frame-options"), "DENY");
    assert.equal(again.headers.get("cache-control"), "private, max-age=60");
    // The identity answer for the same file says the same.
    const plain = await get(s.port, "/big.log.txt");
    assert.equal(plain.headers.get("cache-control"), "private, max-age=60");
    assert.deepEqual(s.errors, []);
  } finally {
    await s.stop();
  }
});
