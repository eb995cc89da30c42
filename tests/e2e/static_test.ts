/**
 * End-to-end tests of static file serving: the real server on port 0 over raw TCP, with our own response
 * reader. Confinement (traversal in many encodings, symlinks, dotfiles), directories, methods, MIME types,
 * validators, ranges, precompressed sidecars, error pages, cache revalidation, large downloads, aborted
 * downloads, and memory while streaming.
 *
 * Every site lives in `<tmp>/www` with a secret file beside it (`<tmp>/secret.txt`, `<tmp>/etc/passwd`):
 * no answer may ever contain the secret marker.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Config } from "../../src/config/config.ts";
import { latin1, RawClient, type RawResponse, request } from "../_helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";
const SECRET = "TOP-SECRET-7f3a9c";
const decoder = new TextDecoder();

/** A deterministic pseudo-random byte pattern (xorshift32), so ranges check real content. */
function pattern(size: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Bigger than the cache's per-file limit (64 KiB by default): served by the streaming path. */
const BIG = pattern(300 * 1024, 7);
/** Small enough for the in-memory cache. */
const SMALL = pattern(5000, 11);

const SITE: Record<string, string | Uint8Array> = {
  "index.html": "<!doctype html><title>Vento test</title><h1>hello</h1>\n",
  "404.html": "<!doctype html><title>missing</title><h1>custom not here</h1>\n",
  "a/b.txt": "inside b\n",
  "dir/index.html": "<h1>dir index</h1>\n",
  "sp ace/index.html": "<h1>space</h1>\n",
  "evil.com/dir/index.html": "<h1>evil dir</h1>\n",
  "nolist/file.txt": "listed file\n",
  "list/<script>alert(1)<%2fscript>.txt": "x",
  "list/a&b.txt": "y",
  "list/sub/.keep": "",
  "list/.secret": "hidden",
  ".hidden": "dot file\n",
  ".git/config": "[core]\n",
  "a/.env": "KEY=1\n",
  ".well-known/x": "well known\n",
  "style.css": "body{color:red}\n",
  "app.js": "console.log('identity');\n",
  "app.js.br": "BR-SIDECAR-BYTES",
  "app.js.gz": "GZ-SIDECAR-BYTES",
  "data.json": '{"a":1}\n',
  "img.png": new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  "unknown.zzqq": "???",
  "noext": "no extension",
  "notes.txt": "plain notes\n",
  "small.bin": SMALL,
  "big.bin": BIG,
};

interface Site {
  server: TestServer;
  port: number;
  /** The document root (`<outer>/www`). */
  root: string;
  /** The directory holding the root and the secrets. */
  outer: string;
}

/** Starts a server on a fresh site with secrets beside its root and symlinks in and out of it. */
async function withSite(
  fn: (site: Site) => Promise<void>,
  overrides: Partial<Config> = {},
  extra: Record<string, string | Uint8Array> = {},
): Promise<void> {
  const outer = await Deno.makeTempDir({ prefix: "vento-static-e2e-" });
  const root = `${outer}/www`;
  for (const [rel, contents] of Object.entries({ ...SITE, ...extra })) {
    const path = `${root}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof contents === "string") await Deno.writeTextFile(path, contents);
    else await Deno.writeFile(path, contents);
  }
  await Deno.writeTextFile(`${outer}/secret.txt`, SECRET);
  await Deno.mkdir(`${outer}/etc`);
  await Deno.writeTextFile(`${outer}/etc/passwd`, SECRET);
  await Deno.symlink(`${outer}/secret.txt`, `${root}/leak.txt`);
  await Deno.symlink("../secret.txt", `${root}/leak-relative.txt`);
  await Deno.symlink(outer, `${root}/leakdir`);
  await Deno.symlink(`${root}/a/b.txt`, `${root}/inside.txt`);
  await Deno.symlink("a", `${root}/inside-dir`);
  let server: TestServer | null = null;
  try {
    server = await startTestServer({ documentRoot: root, ...overrides }, {});
    await fn({ server, port: server.port, root, outer });
    assert.deepEqual(server.errors, [], "the server logged no errors");
  } finally {
    await server?.stop();
    await Deno.remove(outer, { recursive: true });
  }
}

function get(port: number, target: string, headers = ""): Promise<RawResponse> {
  return request(port, `GET ${target} HTTP/1.1\r\n${H}${headers}\r\n`);
}

function assertNoSecret(r: RawResponse, what: string): void {
  assert.ok(!latin1Text(r.body).includes(SECRET), `${what}: the secret leaked`);
  for (const v of r.headers.values()) {
    assert.ok(!v.includes(SECRET), `${what}: the secret leaked in a header`);
  }
}

function latin1Text(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

// ------------------------------------------------------------------------------------------------
// Confinement

Deno.test("traversal attempts in many encodings get 400 or 404 and never a file outside the root", () =>
  withSite(async ({ port }) => {
    const cases: Array<[string, 400 | 404]> = [
      ["/../secret.txt", 404],
      ["/../etc/passwd", 404],
      ["/a/../../secret.txt", 404],
      ["/../../../../../../etc/passwd", 404],
      ["/%2e%2e/secret.txt", 404],
      ["/%2E%2E/etc/passwd", 404],
      ["/a/%2e%2e/%2e%2e/secret.txt", 404],
      ["/.%2e/secret.txt", 404],
      ["/%2e./etc/passwd", 404],
      ["/..%2fsecret.txt", 400],
      ["/a/..%2f..%2fsecret.txt", 400],
      ["/%2e%2e%2fetc%2fpasswd", 400],
      ["/%252e%252e/secret.txt", 404],
      ["/%252e%252e%252fsecret.txt", 404],
      ["/..%5csecret.txt", 400],
      ["/a%5c..%5c..%5csecret.txt", 400],
      ["/index.html%00", 400],
      ["/%00/../secret.txt", 400],
      ["/secret.txt%00.html", 400],
      ["//etc/passwd", 404],
      ["///../secret.txt", 404],
      ["/%c0%ae%c0%ae/secret.txt", 400],
      ["/%c0%ae%c0%ae%c0%afsecret.txt", 400],
      ["/%e0%80%ae%e0%80%ae/secret.txt", 400],
      ["/%2", 400],
      ["/%zz/secret.txt", 400],
      ["/leak.txt", 404],
      ["/leak-relative.txt", 404],
      ["/leakdir/secret.txt", 404],
      ["/leakdir/etc/passwd", 404],
      ["/leakdir/", 404],
      ["/leakdir", 404],
    ];
    for (const [target, status] of cases) {
      const r = await get(port, target);
      assert.equal(r.status, status, `GET ${target}`);
      assertNoSecret(r, target);
    }
  }));

Deno.test("absolute-form targets and raw backslashes cannot climb out of the root", () =>
  withSite(async ({ port }) => {
    const raw = [
      `GET http://x/a/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET http://x/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET http://x/%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /a\\..\\..\\secret.txt HTTP/1.1\r\n${H}\r\n`,
      `GET /..\\secret.txt HTTP/1.1\r\n${H}\r\n`,
    ];
    for (const req of raw) {
      const r = await request(port, req);
      assert.ok(r.status === 400 || r.status === 404, `${JSON.stringify(req)} → ${r.status}`);
      assertNoSecret(r, req);
    }
    // Absolute-form with dot segments that stay inside is normalised and served.
    const inside = await request(port, `GET http://x/a/../a/b.txt HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(inside.status, 200);
    assert.equal(inside.text, "inside b\n");
  }));

Deno.test("dot segments that stay inside the root are normalised and served", () =>
  withSite(async ({ port }) => {
    for (const target of ["/a/../a/b.txt", "/a/./b.txt", "/a/%2e/b.txt", "//a//b.txt", "/x/%2e%2e/a/b.txt"]) {
      const r = await get(port, target);
      assert.equal(r.status, 200, target);
      assert.equal(r.text, "inside b\n", target);
    }
  }));

Deno.test("percent-encoded UTF-8 names are served and listed with encoded links", () =>
  withSite(
    async ({ port }) => {
      const r = await get(port, "/list/caf%C3%A9%20au%20lait.txt");
      assert.equal(r.status, 200);
      assert.equal(r.text, "coffee");
      const listing = await get(port, "/list/");
      assert.match(listing.text, /href="caf%C3%A9%20au%20lait\.txt"/);
      assert.match(listing.text, />café au lait\.txt</);
      assert.equal((await get(port, "/list/caf%E9.txt")).status, 400, "Latin-1 escapes are not UTF-8");
    },
    { directoryListing: true },
    { "list/café au lait.txt": "coffee" },
  ));

Deno.test("a symlink that stays inside the root is served; one that leaves is a 404", () =>
  withSite(async ({ port }) => {
    const inside = await get(port, "/inside.txt");
    assert.equal(inside.status, 200);
    assert.equal(inside.text, "inside b\n");
    const viaDir = await get(port, "/inside-dir/b.txt");
    assert.equal(viaDir.status, 200);
    assert.equal(viaDir.text, "inside b\n");
    for (const target of ["/leak.txt", "/leak-relative.txt", "/leakdir/secret.txt"]) {
      const r = await get(port, target);
      assert.equal(r.status, 404, target);
      assertNoSecret(r, target);
    }
  }));

Deno.test("symlink loops, over-long names and file/. spellings are 404, never 500", () =>
  withSite(async ({ port, root }) => {
    await Deno.symlink("loop", `${root}/loop`);
    await Deno.symlink("cycle-b", `${root}/cycle-a`);
    await Deno.symlink("cycle-a", `${root}/cycle-b`);
    const long = "/" + Array.from({ length: 4 }, () => "d".repeat(250)).join("/");
    for (const target of ["/loop", "/loop/x", "/cycle-a", "/cycle-b/", `/${"n".repeat(300)}`, long]) {
      const r = await get(port, target);
      assert.equal(r.status, 404, target.slice(0, 40));
    }
    for (const target of ["/notes.txt/.", "/notes.txt/%2e", "/notes.txt/%2E?x", "/a/b.txt/"]) {
      assert.equal((await get(port, target)).status, 404, target);
    }
  }));

Deno.test("a symlink swapped to point outside after being served is refused on the next revalidation", () =>
  withSite(async ({ port, root, outer }) => {
    await Deno.symlink(`${root}/a/b.txt`, `${root}/swap.txt`);
    const before = await get(port, "/swap.txt");
    assert.equal(before.status, 200);
    await Deno.remove(`${root}/swap.txt`);
    await Deno.symlink(`${outer}/secret.txt`, `${root}/swap.txt`);
    await new Promise((r) => setTimeout(r, 80));
    const after = await get(port, "/swap.txt");
    assert.equal(after.status, 404);
    assertNoSecret(after, "/swap.txt");
  }, { fileCacheRevalidateMs: 50 }));

Deno.test("dotfiles and dot-directories are 404 while /.well-known/ is served", () =>
  withSite(async ({ port }) => {
    for (const target of ["/.hidden", "/%2ehidden", "/.git/config", "/.git/", "/a/.env", "/list/.secret"]) {
      const r = await get(port, target);
      assert.equal(r.status, 404, target);
      assert.match(r.text, /custom not here/, `${target} gets the 404.html page`);
    }
    const wk = await get(port, "/.well-known/x");
    assert.equal(wk.status, 200);
    assert.equal(wk.text, "well known\n");
  }));

Deno.test("dotfiles are served when DOTFILES=allow", () =>
  withSite(async ({ port }) => {
    const r = await get(port, "/.hidden");
    assert.equal(r.status, 200);
    assert.equal(r.text, "dot file\n");
  }, { dotfiles: "allow" }));

// ------------------------------------------------------------------------------------------------
// Directories

Deno.test("a directory with a trailing slash serves its index.html", () =>
  withSite(async ({ port }) => {
    const r = await get(port, "/dir/");
    assert.equal(r.status, 200);
    assert.equal(r.text, "<h1>dir index</h1>\n");
    assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(r.headers.get("cache-control"), "no-cache");
  }));

Deno.test("a directory without its slash is a 301 to a path-only Location that keeps the query", () =>
  withSite(async ({ port }) => {
    const cases: Array<[string, string]> = [
      ["/dir", "/dir/"],
      ["/dir?x=1&y=%20", "/dir/?x=1&y=%20"],
      ["//dir", "/dir/"],
      ["//evil.com/dir", "/evil.com/dir/"],
      ["///evil.com/dir?a", "/evil.com/dir/?a"],
      ["/sp%20ace", "/sp%20ace/"],
      ["/a/../dir", "/dir/"],
    ];
    for (const [target, location] of cases) {
      const r = await get(port, target);
      assert.equal(r.status, 301, target);
      assert.equal(r.headers.get("location"), location, target);
      assert.ok(!r.headers.get("location")!.startsWith("//"), `${target}: never a scheme-relative URL`);
      assert.equal(r.headers.get("content-length"), "0");
    }
    // Absolute-form and a hostile Host header do not leak into the Location either.
    const abs = await request(port, `GET http://evil.example/dir HTTP/1.1\r\nHost: evil.example\r\n\r\n`);
    assert.equal(abs.status, 301);
    assert.equal(abs.headers.get("location"), "/dir/");
  }));

Deno.test("a directory without index.html is a 404 when listing is off", () =>
  withSite(async ({ port }) => {
    const r = await get(port, "/nolist/");
    assert.equal(r.status, 404);
    assert.ok(!r.text.includes("file.txt"));
  }));

Deno.test("directory listing, when on, escapes names in HTML and answers JSON by Accept", () =>
  withSite(async ({ port }) => {
    const html = await get(port, "/list/");
    assert.equal(html.status, 200);
    assert.equal(html.headers.get("content-type"), "text/html; charset=utf-8");
    assert.ok(!html.text.includes("<script>"), "no raw markup from a file name");
    assert.match(html.text, /&lt;script&gt;alert\(1\)&lt;%2fscript&gt;\.txt/);
    assert.match(html.text, /a&amp;b\.txt/);
    assert.match(html.text, /href="sub\/"/);
    assert.ok(!html.text.includes(".secret") && !html.text.includes(".keep"), "dotfiles are not listed");

    const json = await get(port, "/list/", "Accept: application/json\r\n");
    assert.equal(json.status, 200);
    assert.equal(json.headers.get("content-type"), "application/json; charset=utf-8");
    assert.match(json.headers.get("vary") ?? "", /Accept/);
    const parsed = JSON.parse(json.text) as { path: string; entries: Array<{ name: string; type: string }> };
    assert.equal(parsed.path, "/list/");
    assert.deepEqual(
      parsed.entries.map((e) => `${e.type}:${e.name}`).sort(),
      ["directory:sub", "file:<script>alert(1)<%2fscript>.txt", "file:a&b.txt"],
    );
    const head = await request(port, `HEAD /list/ HTTP/1.1\r\n${H}\r\n`, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), html.headers.get("content-length"));
    // A directory with an index.html still serves the index.
    const dir = await get(port, "/dir/");
    assert.equal(dir.text, "<h1>dir index</h1>\n");
  }, { directoryListing: true }));

// ------------------------------------------------------------------------------------------------
// Methods

Deno.test("HEAD sends the same headers as GET and no body", () =>
  withSite(async ({ port }) => {
    for (const target of ["/notes.txt", "/big.bin", "/app.js"]) {
      const g = await get(port, target);
      const h = await request(port, `HEAD ${target} HTTP/1.1\r\n${H}\r\n`, "HEAD");
      assert.equal(h.status, 200, target);
      const strip = (m: Map<string, string>) => [...m].filter(([k]) => k !== "date");
      assert.deepEqual(strip(h.headers), strip(g.headers), target);
      assert.equal(h.body.length, 0);
    }
  }));

Deno.test("HEAD then GET on one keep-alive connection both parse (no body bytes after HEAD)", () =>
  withSite(async ({ port }) => {
    const c = await RawClient.connect(port);
    try {
      for (const target of ["/notes.txt", "/big.bin", "/missing", "/dir"]) {
        await c.send(`HEAD ${target} HTTP/1.1\r\n${H}\r\n`);
        const h = await c.read("HEAD");
        await c.send(`GET /a/b.txt HTTP/1.1\r\n${H}\r\n`);
        const g = await c.read();
        assert.equal(g.status, 200, `GET after HEAD ${target} (HEAD was ${h.status})`);
        assert.equal(g.text, "inside b\n");
      }
      // Pipelined: HEAD of a streamed file and a GET in one write.
      await c.send(`HEAD /big.bin HTTP/1.1\r\n${H}\r\nGET /notes.txt HTTP/1.1\r\n${H}\r\n`);
      const h = await c.read("HEAD");
      assert.equal(h.headers.get("content-length"), String(BIG.length));
      const g = await c.read();
      assert.equal(g.text, "plain notes\n");
    } finally {
      c.close();
    }
  }));

Deno.test("OPTIONS is 204 with Allow; POST, PUT, DELETE and others are 405 with Allow", () =>
  withSite(async ({ port }) => {
    const o = await request(port, `OPTIONS /notes.txt HTTP/1.1\r\n${H}\r\n`);
    assert.equal(o.status, 204);
    assert.equal(o.headers.get("allow"), "GET, HEAD, OPTIONS");
    const c = await RawClient.connect(port);
    try {
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        await c.send(`${method} /notes.txt HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`);
        const r = await c.read();
        assert.equal(r.status, 405, method);
        assert.equal(r.headers.get("allow"), "GET, HEAD, OPTIONS", method);
        assert.ok(!r.headers.has("connection"), `${method}: the connection stays open`);
      }
      await c.send(`GET /notes.txt HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
    } finally {
      c.close();
    }
  }));

// ------------------------------------------------------------------------------------------------
// Content types, error pages, cache revalidation

Deno.test("Content-Type comes from the extension, with charset for text types", () =>
  withSite(async ({ port }) => {
    const cases: Array<[string, string]> = [
      ["/index.html", "text/html; charset=utf-8"],
      ["/style.css", "text/css; charset=utf-8"],
      ["/app.js", "text/javascript; charset=utf-8"],
      ["/data.json", "application/json; charset=utf-8"],
      ["/notes.txt", "text/plain; charset=utf-8"],
      ["/img.png", "image/png"],
      ["/unknown.zzqq", "application/octet-stream"],
      ["/noext", "application/octet-stream"],
      ["/app.js.gz", "application/gzip"],
    ];
    for (const [target, type] of cases) {
      const r = await get(port, target);
      assert.equal(r.status, 200, target);
      assert.equal(r.headers.get("content-type"), type, target);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    }
    const css = await get(port, "/style.css");
    assert.equal(css.headers.get("cache-control"), "public, max-age=3600");
    const gz = await get(port, "/app.js.gz");
    assert.equal(gz.headers.get("content-encoding"), undefined, "a .gz asked for by name is not re-encoded");
    assert.equal(gz.text, "GZ-SIDECAR-BYTES");
  }));

Deno.test("404.html is served with status 404 for GET and without body for HEAD", () =>
  withSite(async ({ port }) => {
    const r = await get(port, "/nope/nothing.txt");
    assert.equal(r.status, 404);
    assert.match(r.text, /custom not here/);
    assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
    const h = await request(port, `HEAD /nope HTTP/1.1\r\n${H}\r\n`, "HEAD");
    assert.equal(h.status, 404);
    assert.equal(h.headers.get("content-length"), r.headers.get("content-length"));
    assert.equal(h.body.length, 0);
    const fileAsDir = await get(port, "/notes.txt/");
    assert.equal(fileAsDir.status, 404, "a file named with a trailing slash is not found");
    const underFile = await get(port, "/notes.txt/child");
    assert.equal(underFile.status, 404);
  }));

Deno.test("edits show up after FILE_CACHE_REVALIDATE_MS (small and big files, 404 → 200, 200 → 404)", () =>
  withSite(async ({ port, root }) => {
    const first = await get(port, "/notes.txt");
    assert.equal(first.text, "plain notes\n");
    const etag1 = first.headers.get("etag");
    await Deno.writeTextFile(`${root}/notes.txt`, "edited notes, longer than before\n");
    // A same-size edit changes only the mtime: it must still be seen.
    const bigFirst = await get(port, "/big.bin");
    assert.equal(bigFirst.body.length, BIG.length);
    const changed = BIG.slice();
    changed[0] ^= 0xff;
    const missing = await get(port, "/new.txt");
    assert.equal(missing.status, 404);
    await new Promise((r) => setTimeout(r, 20));
    await Deno.writeFile(`${root}/big.bin`, changed);
    await Deno.writeTextFile(`${root}/new.txt`, "new file\n");
    await Deno.remove(`${root}/style.css`);
    await new Promise((r) => setTimeout(r, 80));
    const second = await get(port, "/notes.txt");
    assert.equal(second.text, "edited notes, longer than before\n");
    assert.notEqual(second.headers.get("etag"), etag1);
    const bigSecond = await get(port, "/big.bin");
    assert.equal(bigSecond.body[0], changed[0]);
    assert.equal(sha256(bigSecond.body), sha256(changed));
    assert.equal((await get(port, "/new.txt")).text, "new file\n");
    assert.equal((await get(port, "/style.css")).status, 404);
  }, { fileCacheRevalidateMs: 50 }));

Deno.test("a same-size edit of a cached small file is seen after revalidation", () =>
  withSite(async ({ port, root }) => {
    assert.equal((await get(port, "/a/b.txt")).text, "inside b\n");
    await new Promise((r) => setTimeout(r, 20));
    await Deno.writeTextFile(`${root}/a/b.txt`, "INSIDE B\n");
    await new Promise((r) => setTimeout(r, 80));
    assert.equal((await get(port, "/a/b.txt")).text, "INSIDE B\n");
  }, { fileCacheRevalidateMs: 50 }));

// ------------------------------------------------------------------------------------------------
// Validators

for (const [label, target] of [["cached", "/notes.txt"], ["streamed", "/big.bin"]] as const) {
  Deno.test(`validators on a ${label} file: 304 for If-None-Match and If-Modified-Since, 412 for failed preconditions`, () =>
    withSite(async ({ port }) => {
      const c = await RawClient.connect(port);
      try {
        const send = async (headers: string) => {
          await c.send(`GET ${target} HTTP/1.1\r\n${H}${headers}\r\n`);
          return await c.read();
        };
        const full = await send("");
        assert.equal(full.status, 200);
        const etag = full.headers.get("etag")!;
        const lastModified = full.headers.get("last-modified")!;
        assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/, "a strong ETag");
        assert.match(lastModified, /GMT$/);

        const cases: Array<[string, number]> = [
          [`If-None-Match: ${etag}\r\n`, 304],
          [`If-None-Match: W/${etag}\r\n`, 304],
          [`If-None-Match: "x", ${etag}\r\n`, 304],
          [`If-None-Match: *\r\n`, 304],
          [`If-None-Match: "nope"\r\n`, 200],
          [`If-Modified-Since: ${lastModified}\r\n`, 304],
          [`If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n`, 200],
          [`If-Modified-Since: not a date\r\n`, 200],
          // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
          [`If-None-Match: "nope"\r\nIf-Modified-Since: ${lastModified}\r\n`, 200],
          [`If-Match: ${etag}\r\n`, 200],
          [`If-Match: *\r\n`, 200],
          [`If-Match: "nope"\r\n`, 412],
          [`If-Match: W/${etag}\r\n`, 412],
          [`If-Unmodified-Since: ${lastModified}\r\n`, 200],
          [`If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n`, 412],
        ];
        for (const [headers, status] of cases) {
          const r = await send(headers);
          assert.equal(r.status, status, JSON.stringify(headers));
          if (status === 304) {
            assert.equal(r.headers.get("etag"), etag);
            assert.equal(r.headers.get("content-length"), undefined, "304 declares no body length");
          }
          if (status === 200) assert.equal(r.body.length, Number(r.headers.get("content-length")));
        }
        // The connection is still in sync after all those 304s and 412s.
        const last = await send("");
        assert.equal(last.status, 200);
        assert.equal(sha256(last.body), sha256(full.body));
      } finally {
        c.close();
      }
    }));
}

// ------------------------------------------------------------------------------------------------
// Ranges

interface Part {
  contentType: string;
  contentRange: string;
  data: Uint8Array;
}

/** Parses a multipart/byteranges body strictly: every byte must be accounted for. */
function parseMultipart(r: RawResponse): Part[] {
  const m = /^multipart\/byteranges; boundary=([^;\s]+)$/.exec(r.headers.get("content-type") ?? "");
  assert.ok(m !== null, `multipart content type: ${r.headers.get("content-type")}`);
  const delimiter = `--${m[1]}`;
  const text = latin1Text(r.body);
  const parts: Part[] = [];
  let at = 0;
  for (;;) {
    if (parts.length > 0) {
      assert.equal(text.slice(at, at + 2), "\r\n", "CRLF before each delimiter");
      at += 2;
    }
    assert.equal(text.slice(at, at + delimiter.length), delimiter);
    at += delimiter.length;
    if (text.slice(at, at + 2) === "--") {
      assert.equal(text.slice(at), "--\r\n", "the close delimiter ends the body");
      return parts;
    }
    assert.equal(text.slice(at, at + 2), "\r\n");
    at += 2;
    const headEnd = text.indexOf("\r\n\r\n", at);
    const fields = new Map<string, string>();
    for (const line of text.slice(at, headEnd).split("\r\n")) {
      const colon = line.indexOf(":");
      fields.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    at = headEnd + 4;
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(fields.get("content-range") ?? "");
    assert.ok(cr !== null, `part Content-Range: ${fields.get("content-range")}`);
    const length = Number(cr[2]) - Number(cr[1]) + 1;
    parts.push({
      contentType: fields.get("content-type") ?? "",
      contentRange: fields.get("content-range")!,
      data: r.body.slice(at, at + length),
    });
    at += length;
  }
}

for (
  const [label, target, bytes] of [["cached", "/small.bin", SMALL], ["streamed", "/big.bin", BIG]] as const
) {
  const size = bytes.length;

  Deno.test(`ranges on a ${label} file: single, suffix, open-ended → 206 with exact bytes`, () =>
    withSite(async ({ port }) => {
      const c = await RawClient.connect(port);
      try {
        const cases: Array<[string, number, number]> = [
          ["bytes=0-9", 0, 9],
          ["bytes=100-199", 100, 199],
          ["bytes=-10", size - 10, size - 1],
          [`bytes=-${size + 100}`, 0, size - 1],
          [`bytes=${size - 5}-`, size - 5, size - 1],
          [`bytes=${size - 3}-${size + 1000}`, size - 3, size - 1],
          ["bytes=0-0", 0, 0],
          [" bytes = 1-2 ", 1, 2],
        ];
        for (const [range, start, end] of cases) {
          await c.send(`GET ${target} HTTP/1.1\r\n${H}Range: ${range}\r\n\r\n`);
          const r = await c.read();
          assert.equal(r.status, 206, range);
          assert.equal(r.headers.get("content-range"), `bytes ${start}-${end}/${size}`, range);
          assert.equal(r.headers.get("content-length"), String(end - start + 1), range);
          assert.equal(r.headers.get("content-type"), "application/octet-stream");
          assert.deepEqual(r.body, bytes.subarray(start, end + 1), range);
        }
      } finally {
        c.close();
      }
    }));

  Deno.test(`ranges on a ${label} file: unsatisfiable → 416, invalid or abusive → 200 whole`, () =>
    withSite(async ({ port }) => {
      const c = await RawClient.connect(port);
      try {
        for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, "bytes=-0"]) {
          await c.send(`GET ${target} HTTP/1.1\r\n${H}Range: ${range}\r\n\r\n`);
          const r = await c.read();
          assert.equal(r.status, 416, range);
          assert.equal(r.headers.get("content-range"), `bytes */${size}`, range);
        }
        const many = Array.from({ length: 17 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(",");
        const ignored = [
          "bytes=abc",
          "bytes=5-2",
          "bytes=1-2-3",
          "items=0-5",
          "bytes=0x10-20",
          "bytes=0-10,5-15", // overlapping
          "bytes=0-99,0-99", // duplicated
          `bytes=${many}`, // more than MAX_RANGES
        ];
        for (const range of ignored) {
          await c.send(`GET ${target} HTTP/1.1\r\n${H}Range: ${range}\r\n\r\n`);
          const r = await c.read();
          assert.equal(r.status, 200, range);
          assert.equal(r.headers.get("content-range"), undefined);
          assert.equal(r.body.length, size, range);
        }
        await c.send(`HEAD ${target} HTTP/1.1\r\n${H}Range: bytes=0-9\r\n\r\n`);
        const h = await c.read("HEAD");
        assert.equal(h.status, 200, "HEAD ignores Range");
        assert.equal(h.headers.get("accept-ranges"), "bytes");
        await c.send(`GET /notes.txt HTTP/1.1\r\n${H}\r\n`);
        assert.equal((await c.read()).text, "plain notes\n");
      } finally {
        c.close();
      }
    }));

  Deno.test(`ranges on a ${label} file: multipart/byteranges parses and matches the file`, () =>
    withSite(async ({ port }) => {
      const c = await RawClient.connect(port);
      try {
        await c.send(`GET ${target} HTTP/1.1\r\n${H}Range: bytes=0-9, 100-149, -5\r\n\r\n`);
        const r = await c.read();
        assert.equal(r.status, 206);
        assert.equal(r.headers.get("content-range"), undefined);
        assert.equal(Number(r.headers.get("content-length")), r.body.length);
        const parts = parseMultipart(r);
        assert.deepEqual(parts.map((p) => p.contentRange), [
          `bytes 0-9/${size}`,
          `bytes 100-149/${size}`,
          `bytes ${size - 5}-${size - 1}/${size}`,
        ]);
        assert.deepEqual(parts[0].data, bytes.subarray(0, 10));
        assert.deepEqual(parts[1].data, bytes.subarray(100, 150));
        assert.deepEqual(parts[2].data, bytes.subarray(size - 5));
        for (const p of parts) assert.equal(p.contentType, "application/octet-stream");
        // One satisfiable and one unsatisfiable range: the satisfiable one alone is served.
        await c.send(`GET ${target} HTTP/1.1\r\n${H}Range: bytes=${size + 5}-, 3-4\r\n\r\n`);
        const one = await c.read();
        assert.equal(one.status, 206);
        assert.deepEqual(one.body, bytes.subarray(3, 5));
      } finally {
        c.close();
      }
    }));

  Deno.test(`If-Range on a ${label} file: a matching validator gives 206, a stale one the whole file`, () =>
    withSite(async ({ port }) => {
      const full = await get(port, target);
      const etag = full.headers.get("etag")!;
      const lastModified = full.headers.get("last-modified")!;
      const ranged = (ifRange: string) => get(port, target, `Range: bytes=0-3\r\nIf-Range: ${ifRange}\r\n`);
      assert.equal((await ranged(etag)).status, 206);
      assert.equal((await ranged(lastModified)).status, 206);
      const stale = await ranged(`"0-0"`);
      assert.equal(stale.status, 200);
      assert.equal(stale.body.length, size);
      assert.equal((await ranged(`W/${etag}`)).status, 200, "If-Range needs a strong validator");
      assert.equal((await ranged("Sat, 01 Jan 2000 00:00:00 GMT")).status, 200);
    }));
}

// ------------------------------------------------------------------------------------------------
// Precompressed sidecars

Deno.test("precompressed sidecars are chosen by Accept-Encoding with q-values, with Vary on every answer", () =>
  withSite(async ({ port }) => {
    const cases: Array<[string | null, string | null, string]> = [
      [null, null, "console.log('identity');\n"],
      ["br, gzip", "br", "BR-SIDECAR-BYTES"],
      ["gzip, deflate, br", "br", "BR-SIDECAR-BYTES"],
      ["gzip", "gzip", "GZ-SIDECAR-BYTES"],
      ["x-gzip", "gzip", "GZ-SIDECAR-BYTES"],
      ["br;q=0.5, gzip;q=0.8", "gzip", "GZ-SIDECAR-BYTES"],
      ["br;q=0, gzip", "gzip", "GZ-SIDECAR-BYTES"],
      ["br;q=0, gzip;q=0", null, "console.log('identity');\n"],
      ["*", "br", "BR-SIDECAR-BYTES"],
      ["*;q=0.1, gzip;q=0.5", "gzip", "GZ-SIDECAR-BYTES"],
      ["identity", null, "console.log('identity');\n"],
      ["deflate", null, "console.log('identity');\n"],
      ["gzip;q=0.2, identity;q=1", null, "console.log('identity');\n"],
    ];
    const etags = new Map<string | null, string>();
    for (const [ae, coding, body] of cases) {
      const r = await get(port, "/app.js", ae === null ? "" : `Accept-Encoding: ${ae}\r\n`);
      assert.equal(r.status, 200, String(ae));
      assert.equal(r.headers.get("content-encoding"), coding ?? undefined, String(ae));
      assert.equal(r.text, body, String(ae));
      assert.equal(r.headers.get("vary"), "Accept-Encoding", `${ae}: Vary on every variant`);
      assert.equal(r.headers.get("content-type"), "text/javascript; charset=utf-8", String(ae));
      const known = etags.get(coding);
      if (known !== undefined) assert.equal(r.headers.get("etag"), known);
      etags.set(coding, r.headers.get("etag")!);
    }
    assert.equal(new Set(etags.values()).size, 3, "each representation has its own ETag");

    // 304 for the identity variant carries Vary; so does one for a sidecar.
    const nm = await get(port, "/app.js", `If-None-Match: ${etags.get(null)}\r\n`);
    assert.equal(nm.status, 304);
    assert.equal(nm.headers.get("vary"), "Accept-Encoding");
    const nmGz = await get(
      port,
      "/app.js",
      `Accept-Encoding: gzip\r\nIf-None-Match: ${etags.get("gzip")}\r\n`,
    );
    assert.equal(nmGz.status, 304);
    assert.equal(nmGz.headers.get("vary"), "Accept-Encoding");
    // The identity tag does not validate the gzip representation.
    const mismatch = await get(
      port,
      "/app.js",
      `Accept-Encoding: gzip\r\nIf-None-Match: ${etags.get(null)}\r\n`,
    );
    assert.equal(mismatch.status, 200);
    assert.equal(mismatch.text, "GZ-SIDECAR-BYTES");

    // Ranges apply to the encoded representation.
    const range = await get(port, "/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-1\r\n");
    assert.equal(range.status, 206);
    assert.equal(range.text, "GZ");
    assert.equal(range.headers.get("content-encoding"), "gzip");
    assert.equal(range.headers.get("content-range"), "bytes 0-1/16");
    assert.equal(range.headers.get("vary"), "Accept-Encoding");

    // 412 and 416 depend on the selected representation too.
    const unsatisfiable = await get(port, "/app.js", "Accept-Encoding: br\r\nRange: bytes=100-\r\n");
    assert.equal(unsatisfiable.status, 416);
    assert.equal(unsatisfiable.headers.get("content-range"), "bytes */16");
    assert.equal(unsatisfiable.headers.get("vary"), "Accept-Encoding");
    const failed = await get(port, "/app.js", `If-Match: "nope"\r\n`);
    assert.equal(failed.status, 412);
    assert.equal(failed.headers.get("vary"), "Accept-Encoding");

    const head = await request(port, `HEAD /app.js HTTP/1.1\r\n${H}Accept-Encoding: br\r\n\r\n`, "HEAD");
    assert.equal(head.headers.get("content-encoding"), "br");
    assert.equal(head.headers.get("content-length"), "16");

    // Files without sidecars do not vary.
    const plain = await get(port, "/style.css", "Accept-Encoding: br, gzip\r\n");
    assert.equal(plain.headers.get("vary"), undefined);
    assert.equal(plain.headers.get("content-encoding"), undefined);
  }));

Deno.test("a directory index with a sidecar is negotiated too, and PRECOMPRESSED=false ignores sidecars", async (t) => {
  await t.step("index.html.gz is served for /dir/ to gzip clients", () =>
    withSite(
      async ({ port }) => {
        const r = await get(port, "/dir/", "Accept-Encoding: gzip\r\n");
        assert.equal(r.headers.get("content-encoding"), "gzip");
        assert.equal(r.text, "GZ-INDEX");
        assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
      },
      {},
      { "dir/index.html.gz": "GZ-INDEX" },
    ));
  await t.step("sidecars are ignored when precompressed is off", () =>
    withSite(async ({ port }) => {
      const r = await get(port, "/app.js", "Accept-Encoding: br, gzip\r\n");
      assert.equal(r.headers.get("content-encoding"), undefined);
      assert.equal(r.headers.get("vary"), undefined);
      assert.equal(r.text, "console.log('identity');\n");
    }, { precompressed: false }));
});

// ------------------------------------------------------------------------------------------------
// Large downloads

/** Reads responses off a connection without buffering whole bodies (the big-download tests). */
class StreamingReader {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(256 * 1024);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  async #fill(): Promise<void> {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) throw new Error("head too large for the test reader");
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) throw new Error("connection closed");
    this.#end += n;
  }

  /** Reads a status line and headers. */
  async head(): Promise<{ status: number; headers: Map<string, string> }> {
    for (;;) {
      const text = latin1Text(this.#buf.subarray(this.#start, this.#end));
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const lines = text.slice(0, end).split("\r\n");
        this.#start += end + 4;
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        return { status: Number(lines[0].split(" ")[1]), headers };
      }
      await this.#fill();
    }
  }

  /** Passes the next `length` body bytes to `onChunk` (views valid only during the call). */
  async body(length: number, onChunk: (bytes: Uint8Array) => void): Promise<void> {
    let left = length;
    while (left > 0) {
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
        await this.#fill();
      }
      const take = Math.min(left, this.#end - this.#start);
      onChunk(this.#buf.subarray(this.#start, this.#start + take));
      this.#start += take;
      left -= take;
    }
  }
}

/** A 64 MiB file made of a random 1 MiB block, each copy stamped with its index. */
function bigFile(mib: number): Uint8Array {
  const block = pattern(1024 * 1024, 12345);
  const out = new Uint8Array(mib * 1024 * 1024);
  for (let i = 0; i < mib; i++) {
    out.set(block, i * block.length);
    new DataView(out.buffer).setUint32(i * block.length, i);
  }
  return out;
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("a 64 MiB download matches its sha256 and the connection serves another request after it", async () => {
  const data = bigFile(64);
  const expected = sha256(data);
  await withSite(
    async ({ port }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const reader = new StreamingReader(conn);
        await conn.write(latin1(`GET /huge.bin HTTP/1.1\r\n${H}\r\n`));
        const h = await reader.head();
        assert.equal(h.status, 200);
        assert.equal(h.headers.get("content-length"), String(data.length));
        const hash = createHash("sha256");
        await reader.body(data.length, (b) => hash.update(b));
        assert.equal(hash.digest("hex"), expected);
        // A range from the middle of the huge file, then a small file, on the same connection.
        const mid = 40 * 1024 * 1024 + 17;
        await conn.write(latin1(`GET /huge.bin HTTP/1.1\r\n${H}Range: bytes=${mid}-${mid + 99999}\r\n\r\n`));
        const r = await reader.head();
        assert.equal(r.status, 206);
        const got = new Uint8Array(100000);
        let at = 0;
        await reader.body(100000, (b) => {
          got.set(b, at);
          at += b.length;
        });
        assert.deepEqual(got, data.subarray(mid, mid + 100000));
        await conn.write(latin1(`GET /a/b.txt HTTP/1.1\r\n${H}\r\n`));
        const next = await reader.head();
        assert.equal(next.status, 200);
        let text = "";
        await reader.body(Number(next.headers.get("content-length")), (b) => text += decoder.decode(b));
        assert.equal(text, "inside b\n");
      } finally {
        conn.close();
      }
    },
    {},
    { "huge.bin": data },
  );
});

Deno.test("a client aborting mid-download does not disturb others, and its connection is released", async () => {
  const data = bigFile(32);
  await withSite(
    async ({ port, server }) => {
      const aborter = await Deno.connect({ hostname: "127.0.0.1", port });
      const reader = new StreamingReader(aborter);
      await aborter.write(latin1(`GET /huge.bin HTTP/1.1\r\n${H}\r\n`));
      const h = await reader.head();
      assert.equal(h.status, 200);
      await reader.body(1024 * 1024, () => {});
      assert.equal(server.vento.server.size, 1);
      aborter.close(); // with unread data: the kernel resets the connection
      // Others are served meanwhile and afterwards.
      for (let i = 0; i < 3; i++) {
        const r = await get(port, "/notes.txt");
        assert.equal(r.status, 200);
      }
      await waitFor(() => server.vento.server.size === 0, 3000, "the aborted connection to be released");
      const big = await get(port, "/big.bin");
      assert.equal(sha256(big.body), sha256(BIG));
      await waitFor(() => server.vento.server.size === 0, 3000, "all connections to close");
    },
    {},
    { "huge.bin": data },
  );
});

Deno.test("a file truncated mid-download ends the connection instead of leaving the client waiting", async () => {
  const data = bigFile(32);
  await withSite(
    async ({ port, root, server }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const reader = new StreamingReader(conn);
        await conn.write(latin1(`GET /huge.bin HTTP/1.1\r\n${H}\r\n`));
        const h = await reader.head();
        assert.equal(h.status, 200);
        await reader.body(1024 * 1024, () => {});
        await Deno.truncate(`${root}/huge.bin`, 2 * 1024 * 1024);
        let got = 1024 * 1024;
        await assert.rejects(
          reader.body(data.length - got, (b) => got += b.length),
          /connection closed/,
        );
        assert.ok(got < data.length, "fewer bytes than promised, then the close");
        await waitFor(() => server.vento.server.size === 0, 3000, "the connection to close");
        assert.ok(server.errors.some((e) => /shrank/.test(e)), `logged: ${server.errors.join("; ")}`);
        server.errors.length = 0;
        assert.equal((await get(port, "/notes.txt")).status, 200);
      } finally {
        conn.close();
      }
    },
    {},
    { "huge.bin": data },
  );
});

/**
 * The server for the memory test runs in a child process, so its RSS is the server's alone (test files
 * run in parallel in this process, and the clients' buffers are not the server's). It prints its port,
 * samples RSS until its stdin closes, then prints the baseline and the peak.
 */
const MEMORY_CHILD = `
import { startTestServer } from ${JSON.stringify(new URL("../_helpers/server.ts", import.meta.url).href)};
const s = await startTestServer({}, { "notes.txt": "n" });
const f = await Deno.open(s.root + "/sparse.bin", { write: true, create: true });
await f.truncate(${256 * 1024 * 1024}); // sparse: reads return zeros without touching the disk
f.close();
const baseline = Deno.memoryUsage().rss;
let peak = baseline;
const sampler = setInterval(() => { peak = Math.max(peak, Deno.memoryUsage().rss); }, 5);
console.log(JSON.stringify({ port: s.port }));
for await (const _ of Deno.stdin.readable) break;
clearInterval(sampler);
peak = Math.max(peak, Deno.memoryUsage().rss);
await s.stop();
console.log(JSON.stringify({ baseline, peak }));
`;

Deno.test("streaming a 256 MiB file to 4 clients at once keeps the server's RSS growth under 64 MiB", async () => {
  const size = 256 * 1024 * 1024;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", MEMORY_CHILD],
    cwd: new URL("../..", import.meta.url).pathname,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const nl = pending.indexOf("\n");
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`memory child ended early (had ${JSON.stringify(pending)})`);
      pending += value;
    }
  };
  const stdin = child.stdin.getWriter();
  try {
    const { port } = JSON.parse(await nextLine()) as { port: number };
    const download = async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const reader = new StreamingReader(conn);
        await conn.write(latin1(`GET /sparse.bin HTTP/1.1\r\n${H}\r\n`));
        const h = await reader.head();
        assert.equal(h.status, 200);
        let n = 0;
        let nonZero = 0;
        await reader.body(size, (b) => {
          n += b.length;
          if (b[0] !== 0) nonZero++;
        });
        assert.equal(n, size);
        assert.equal(nonZero, 0);
      } finally {
        conn.close();
      }
    };
    await Promise.all([download(), download(), download(), download()]);
    await stdin.close();
    const { baseline, peak } = JSON.parse(await nextLine()) as { baseline: number; peak: number };
    const growthMiB = (peak - baseline) / (1024 * 1024);
    assert.ok(growthMiB < 64, `server RSS grew by ${growthMiB.toFixed(1)} MiB`);
  } finally {
    await stdin.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await child.status;
    clearTimeout(killer);
  }
});
