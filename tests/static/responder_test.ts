import assert from "node:assert/strict";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import type { RequestHead } from "../../src/http/head.ts";
import type { BodySink, Reply } from "../../src/http/response.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { type StaticOptions, StaticResponder } from "../../src/static/responder.ts";
import { ConfinedFs } from "../../src/static/confined_fs.ts";

const dec = new TextDecoder();
const MiB = 1024 * 1024;

function req(method: string, path: string, headers: Record<string, string> = {}): RequestHead {
  const flat: string[] = ["host", "example.test"];
  for (const [k, v] of Object.entries(headers)) flat.push(k.toLowerCase(), v);
  return {
    method,
    target: path,
    targetForm: path === "*" ? "asterisk" : "origin",
    path,
    version: 11,
    headers: flat,
    host: "example.test",
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
  };
}

interface Parsed {
  status: number;
  headers: Map<string, string>;
  headText: string;
  body: Uint8Array<ArrayBuffer>;
  reply: Reply;
}

class CollectingSink implements BodySink {
  chunks: Uint8Array[] = [];
  writes = 0;
  write(bytes: Uint8Array): Promise<void> {
    this.writes++;
    this.chunks.push(bytes.slice()); // copy: the stream reuses its buffer after the write resolves
    return Promise.resolve();
  }
  bytes(): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** Reads a reply: parses its head and collects its body (piping a stream when there is one). */
async function read(reply: Reply): Promise<Parsed> {
  const headText = dec.decode(reply.head);
  assert.ok(headText.endsWith("\r\n") && !headText.endsWith("\r\n\r\n"), "head ends with one CRLF");
  const lines = headText.slice(0, -2).split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  assert.equal(status, reply.status);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(": ");
    const name = line.slice(0, i).toLowerCase();
    assert.ok(!headers.has(name), `duplicate header ${name}`);
    headers.set(name, line.slice(i + 2));
  }
  assert.ok(!headers.has("date") && !headers.has("connection"), "Date/Connection are the connection's job");
  assert.ok(reply.body === null || reply.stream === null);
  let body = new Uint8Array(0);
  if (reply.body !== null) body = reply.body.slice();
  if (reply.stream !== null) {
    const sink = new CollectingSink();
    await reply.stream.pipe(sink);
    body = sink.bytes();
  }
  if (reply.body !== null || reply.stream !== null) {
    assert.equal(body.length, reply.length, "length matches body");
  }
  if (headers.has("content-length")) assert.equal(Number(headers.get("content-length")), reply.length);
  return { status, headers, headText, body, reply };
}

async function get(r: StaticResponder, path: string, headers: Record<string, string> = {}, method = "GET") {
  return await read(await r.handle(req(method, path, headers)));
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface Site {
  base: string;
  root: string;
  big: Uint8Array<ArrayBuffer>;
  clock: FakeClock;
  options: StaticOptions;
  responder: StaticResponder;
  [Symbol.asyncDispose](): Promise<void>;
}

async function makeSite(overrides: Partial<StaticOptions> = {}): Promise<Site> {
  const base = await Deno.makeTempDir({ prefix: "vento_static_" });
  const root = `${base}/www`;
  const outside = `${base}/outside`;
  await Deno.mkdir(`${root}/docs`, { recursive: true });
  await Deno.mkdir(`${root}/empty`);
  await Deno.mkdir(`${root}/.well-known`);
  await Deno.mkdir(`${root}/.git`);
  await Deno.mkdir(outside);
  const files: Record<string, string | Uint8Array> = {
    "index.html": "<h1>home</h1>\n",
    "404.html": "<h1>custom not found</h1>\n",
    "hello.txt": "hello world\n",
    "docs/index.html": "<h1>docs</h1>\n",
    'empty/a<b>&"c".txt': "x",
    "empty/.hidden": "h",
    ".env": "SECRET=1\n",
    ".git/config": "[core]\n",
    ".well-known/security.txt": "Contact: mailto:sec@example.test\n",
    "app.js": "console.log('identity');\n",
    "app.js.gz": "GZIP-BYTES",
    "app.js.br": "BR-BYTES",
    "style.css": "body{}\n",
    "style.css.gz": "CSS-GZ",
    "data.tar.gz": "TARGZ",
    "data.tar.gz.gz": "DOUBLE",
  };
  for (const [name, data] of Object.entries(files)) {
    const path = `${root}/${name}`;
    if (typeof data === "string") await Deno.writeTextFile(path, data);
    else await Deno.writeFile(path, data);
  }
  const big = new Uint8Array(3 * MiB);
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await Deno.writeFile(`${root}/big.bin`, big);
  await Deno.writeTextFile(`${outside}/secret.txt`, "TOP SECRET\n");
  await Deno.symlink(`${root}/hello.txt`, `${root}/inside-link.txt`);
  await Deno.symlink(`${outside}/secret.txt`, `${root}/outside-link.txt`);
  await Deno.symlink(outside, `${root}/outside-dir`);
  const clock = new FakeClock(1_000);
  const options: StaticOptions = {
    ...DEFAULT_CONFIG,
    documentRoot: root,
    fileCacheMaxFileBytes: 64 * 1024,
    streamChunkBytes: 64 * 1024,
    ...overrides,
  };
  const responder = await StaticResponder.create(options, clock);
  return {
    base,
    root,
    big,
    clock,
    options,
    responder,
    async [Symbol.asyncDispose]() {
      responder.close();
      await Deno.remove(base, { recursive: true });
    },
  };
}

Deno.test("responder serves a small file with validators and no Date/Connection", async () => {
  await using site = await makeSite();
  const res = await get(site.responder, "/hello.txt");
  assert.equal(res.status, 200);
  assert.equal(dec.decode(res.body), "hello world\n");
  assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(res.headers.get("content-length"), "12");
  assert.equal(res.headers.get("accept-ranges"), "bytes");
  assert.equal(res.headers.get("cache-control"), DEFAULT_CONFIG.cacheControl);
  assert.equal(res.headers.get("server"), "Vento");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.match(res.headers.get("etag")!, /^"c-[0-9a-f]+"$/);
  assert.match(res.headers.get("last-modified")!, /^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/);
  assert.ok(!res.headers.has("vary"));
});

Deno.test("a fresh cache hit returns synchronously, without a Promise", async () => {
  await using site = await makeSite();
  const first = site.responder.handle(req("GET", "/hello.txt"));
  assert.ok(first instanceof Promise, "first request reads the disk");
  await first;
  const hit = site.responder.handle(req("GET", "/hello.txt"));
  assert.ok(!(hit instanceof Promise), "hit is synchronous");
  assert.equal(dec.decode(hit.body!), "hello world\n");
  const headHit = site.responder.handle(req("HEAD", "/hello.txt"));
  assert.ok(!(headHit instanceof Promise));
  assert.equal(headHit.body, null);
  assert.equal(headHit.length, 12);
  assert.deepEqual(headHit.head, hit.head, "HEAD carries the GET head");
  const cond = site.responder.handle(
    req("GET", "/hello.txt", { "if-none-match": dec.decode(hit.head).match(/ETag: (.*)\r/)![1] }),
  );
  assert.ok(!(cond instanceof Promise), "a 304 from the cache is synchronous too");
  assert.equal(cond.status, 304);
});

Deno.test("HEAD returns the GET head with no body and never a stream", async () => {
  await using site = await makeSite();
  const small = await get(site.responder, "/hello.txt", {}, "HEAD");
  assert.equal(small.status, 200);
  assert.equal(small.reply.body, null);
  assert.equal(small.headers.get("content-length"), "12");
  const big = await get(site.responder, "/big.bin", {}, "HEAD");
  assert.equal(big.status, 200);
  assert.equal(big.reply.stream, null);
  assert.equal(big.headers.get("content-length"), String(3 * MiB));
  const missing = await get(site.responder, "/nope", {}, "HEAD");
  assert.equal(missing.status, 404);
  assert.equal(missing.reply.body, null);
});

Deno.test("directories serve their index; without a trailing slash they redirect to a path", async () => {
  await using site = await makeSite();
  const home = await get(site.responder, "/");
  assert.equal(home.status, 200);
  assert.equal(dec.decode(home.body), "<h1>home</h1>\n");
  assert.equal(home.headers.get("cache-control"), "no-cache");
  assert.equal(home.headers.get("content-type"), "text/html; charset=utf-8");
  const docs = await get(site.responder, "/docs/");
  assert.equal(dec.decode(docs.body), "<h1>docs</h1>\n");
  const redirect = await get(site.responder, "/docs?x=1&y=2");
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get("location"), "/docs/?x=1&y=2");
  assert.equal(redirect.headers.get("content-length"), "0");
  const slashes = await get(site.responder, "//docs");
  assert.equal(slashes.status, 301);
  assert.equal(slashes.headers.get("location"), "/docs/");
  const fileWithSlash = await get(site.responder, "/hello.txt/");
  assert.equal(fileWithSlash.status, 404);
});

Deno.test("missing files get the custom 404 page; other errors the built-in page", async () => {
  await using site = await makeSite();
  const res = await get(site.responder, "/no/such/file.txt");
  assert.equal(res.status, 404);
  assert.equal(dec.decode(res.body), "<h1>custom not found</h1>\n");
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  const bad = await get(site.responder, "/a%2fb");
  assert.equal(bad.status, 400);
  assert.match(dec.decode(bad.body), /400 Bad Request/);
  const err = await read(await site.responder.errorReply(500, true));
  assert.equal(err.status, 500);
  assert.equal(err.reply.close, true);
  assert.match(dec.decode(err.body), /500 Internal Server Error/);
  const under = await get(site.responder, "/hello.txt/child");
  assert.equal(under.status, 404, "ENOTDIR maps to 404");
});

Deno.test("traversal in any encoding never escapes the root", async () => {
  await using site = await makeSite();
  for (
    const [path, want] of [
      ["/../outside/secret.txt", 404],
      ["/%2e%2e/outside/secret.txt", 404],
      ["/..%2foutside%2fsecret.txt", 400],
      ["/%252e%252e/outside/secret.txt", 404],
      ["/..%5coutside%5csecret.txt", 400],
      ["/hello.txt%00.html", 400],
      ["/%zz", 400],
    ] as const
  ) {
    const res = await get(site.responder, path);
    assert.equal(res.status, want, path);
    assert.ok(!dec.decode(res.body).includes("SECRET"), path);
  }
});

Deno.test("symlinks inside the root work; symlinks leaving it are 404", async () => {
  await using site = await makeSite();
  const inside = await get(site.responder, "/inside-link.txt");
  assert.equal(inside.status, 200);
  assert.equal(dec.decode(inside.body), "hello world\n");
  for (const path of ["/outside-link.txt", "/outside-dir/secret.txt", "/outside-dir/"]) {
    const res = await get(site.responder, path);
    assert.equal(res.status, 404, path);
    assert.ok(!dec.decode(res.body).includes("SECRET"), path);
  }
});

Deno.test("dotfiles are hidden except /.well-known/, and served when allowed", async () => {
  await using site = await makeSite();
  assert.equal((await get(site.responder, "/.env")).status, 404);
  assert.equal((await get(site.responder, "/.git/config")).status, 404);
  const wk = await get(site.responder, "/.well-known/security.txt");
  assert.equal(wk.status, 200);
  await using open = await makeSite({ dotfiles: "allow" });
  const env = await get(open.responder, "/.env");
  assert.equal(env.status, 200);
  assert.equal(dec.decode(env.body), "SECRET=1\n");
});

Deno.test("OPTIONS answers 204 with Allow; other methods 405 with Allow", async () => {
  await using site = await makeSite();
  const opt = await get(site.responder, "/hello.txt", {}, "OPTIONS");
  assert.equal(opt.status, 204);
  assert.equal(opt.headers.get("allow"), "GET, HEAD, OPTIONS");
  assert.ok(!opt.headers.has("content-length"));
  for (const m of ["POST", "PUT", "DELETE", "get", "TRACE"]) {
    const res = await get(site.responder, "/hello.txt", {}, m);
    assert.equal(res.status, 405, m);
    assert.equal(res.headers.get("allow"), "GET, HEAD, OPTIONS");
  }
});

Deno.test("conditional requests: 304 carries validators, 412 on failed preconditions", async () => {
  await using site = await makeSite();
  const full = await get(site.responder, "/hello.txt");
  const etag = full.headers.get("etag")!;
  const lm = full.headers.get("last-modified")!;
  const nm = await get(site.responder, "/hello.txt", { "if-none-match": `"x", W/${etag}` });
  assert.equal(nm.status, 304);
  assert.equal(nm.body.length, 0);
  assert.ok(!nm.headers.has("content-length"));
  assert.equal(nm.headers.get("etag"), etag);
  assert.equal(nm.headers.get("last-modified"), lm);
  assert.equal(nm.headers.get("cache-control"), DEFAULT_CONFIG.cacheControl);
  assert.equal((await get(site.responder, "/hello.txt", { "if-modified-since": lm })).status, 304);
  assert.equal((await get(site.responder, "/hello.txt", { "if-modified-since": "garbage" })).status, 200);
  assert.equal((await get(site.responder, "/hello.txt", { "if-match": '"nope"' })).status, 412);
  assert.equal((await get(site.responder, "/hello.txt", { "if-match": etag })).status, 200);
  assert.equal(
    (await get(site.responder, "/hello.txt", { "if-unmodified-since": "Thu, 01 Jan 1970 00:00:00 GMT" }))
      .status,
    412,
  );
  // the same on a streamed (uncached) file
  const big = await get(site.responder, "/big.bin", {}, "HEAD");
  const bigNm = await get(site.responder, "/big.bin", { "if-none-match": big.headers.get("etag")! });
  assert.equal(bigNm.status, 304);
  assert.equal(bigNm.reply.stream, null);
  assert.equal((await get(site.responder, "/big.bin", { "if-match": '"nope"' })).status, 412);
});

Deno.test("ranges on a cached file: single, multiple, unsatisfiable, invalid, If-Range", async () => {
  await using site = await makeSite();
  const full = await get(site.responder, "/hello.txt");
  const one = await get(site.responder, "/hello.txt", { range: "bytes=0-4" });
  assert.equal(one.status, 206);
  assert.equal(dec.decode(one.body), "hello");
  assert.equal(one.headers.get("content-range"), "bytes 0-4/12");
  assert.equal(one.headers.get("etag"), full.headers.get("etag"));
  const suffix = await get(site.responder, "/hello.txt", { range: "bytes=-6" });
  assert.equal(dec.decode(suffix.body), "world\n");
  const multi = await get(site.responder, "/hello.txt", { range: "bytes=0-0, 6-10" });
  assert.equal(multi.status, 206);
  const boundary = multi.headers.get("content-type")!.match(/^multipart\/byteranges; boundary=(\S+)$/)![1];
  assert.equal(
    dec.decode(multi.body),
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-0/12\r\n\r\nh` +
      `\r\n--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 6-10/12\r\n\r\nworld` +
      `\r\n--${boundary}--\r\n`,
  );
  const unsat = await get(site.responder, "/hello.txt", { range: "bytes=100-" });
  assert.equal(unsat.status, 416);
  assert.equal(unsat.headers.get("content-range"), "bytes */12");
  assert.equal((await get(site.responder, "/hello.txt", { range: "bytes=zz" })).status, 200);
  assert.equal((await get(site.responder, "/hello.txt", { range: "bytes=0-5,3-8" })).status, 200, "overlap");
  const okIfRange = await get(site.responder, "/hello.txt", {
    range: "bytes=0-4",
    "if-range": full.headers.get("etag")!,
  });
  assert.equal(okIfRange.status, 206);
  const staleIfRange = await get(site.responder, "/hello.txt", { range: "bytes=0-4", "if-range": '"old"' });
  assert.equal(staleIfRange.status, 200);
  assert.equal(staleIfRange.body.length, 12);
  const dateIfRange = await get(site.responder, "/hello.txt", {
    range: "bytes=0-4",
    "if-range": full.headers.get("last-modified")!,
  });
  assert.equal(dateIfRange.status, 206);
  const headRange = await get(site.responder, "/hello.txt", { range: "bytes=0-4" }, "HEAD");
  assert.equal(headRange.status, 200, "ranges are for GET only");
});

Deno.test("a 3 MiB file streams exactly, in pooled chunks, and ranges of it stream too", async () => {
  await using site = await makeSite();
  const reply = await site.responder.handle(req("GET", "/big.bin"));
  assert.equal(reply.body, null);
  assert.ok(reply.stream !== null);
  const sink = new CollectingSink();
  await reply.stream.pipe(sink);
  const body = sink.bytes();
  assert.equal(body.length, 3 * MiB);
  assert.equal(await sha256(body), await sha256(site.big));
  assert.ok(
    sink.chunks.every((c) => c.length <= site.options.streamChunkBytes),
    "never more than one buffer",
  );
  assert.equal(site.responder.cacheStats().buffersInUse, 0, "buffer returned to the pool");
  const res = await get(site.responder, "/big.bin", { range: "bytes=1000000-1999999" });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get("content-range"), `bytes 1000000-1999999/${3 * MiB}`);
  assert.deepEqual(res.body, site.big.subarray(1_000_000, 2_000_000));
  const multi = await get(site.responder, "/big.bin", { range: "bytes=-10, 0-9" });
  assert.equal(multi.status, 206);
  const text = dec.decode(multi.body.subarray(0, 200));
  assert.match(
    text,
    /^--vento-[0-9a-f]+\r\nContent-Type: application\/octet-stream\r\nContent-Range: bytes 3145718-3145727\/3145728\r\n\r\n/,
  );
  assert.equal(site.responder.cacheStats().buffersInUse, 0);
});

Deno.test("a cancelled stream releases the file without writing", async () => {
  await using site = await makeSite();
  const reply = await site.responder.handle(req("GET", "/big.bin"));
  assert.ok(reply.stream !== null);
  reply.stream.cancel(); // the file sanitizer fails this test if the handle leaks
  assert.equal(site.responder.cacheStats().buffersInUse, 0);
});

Deno.test("a file that shrinks mid-stream makes the stream reject instead of sending less", async () => {
  await using site = await makeSite();
  const reply = await site.responder.handle(req("GET", "/big.bin"));
  assert.ok(reply.stream !== null);
  await Deno.truncate(`${site.root}/big.bin`, 100_000);
  const sink = new CollectingSink();
  await assert.rejects(() => reply.stream!.pipe(sink), /shrank/);
  assert.equal(site.responder.cacheStats().buffersInUse, 0);
});

Deno.test("a sink that fails stops the stream and closes the file", async () => {
  await using site = await makeSite();
  const reply = await site.responder.handle(req("GET", "/big.bin"));
  let writes = 0;
  const broken: BodySink = {
    write() {
      writes++;
      return writes > 2 ? Promise.reject(new Deno.errors.BrokenPipe("gone")) : Promise.resolve();
    },
  };
  await assert.rejects(() => reply.stream!.pipe(broken), Deno.errors.BrokenPipe);
  assert.equal(writes, 3);
});

Deno.test("precompressed sidecars are negotiated, typed as the original, and always Vary", async () => {
  await using site = await makeSite();
  const br = await get(site.responder, "/app.js", { "accept-encoding": "gzip, deflate, br" });
  assert.equal(dec.decode(br.body), "BR-BYTES");
  assert.equal(br.headers.get("content-encoding"), "br");
  assert.equal(br.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(br.headers.get("vary"), "Accept-Encoding");
  const gz = await get(site.responder, "/app.js", { "accept-encoding": "gzip" });
  assert.equal(dec.decode(gz.body), "GZIP-BYTES");
  assert.equal(gz.headers.get("content-encoding"), "gzip");
  const plain = await get(site.responder, "/app.js");
  assert.equal(dec.decode(plain.body), "console.log('identity');\n");
  assert.ok(!plain.headers.has("content-encoding"));
  assert.equal(plain.headers.get("vary"), "Accept-Encoding");
  const forbidden = await get(site.responder, "/app.js", { "accept-encoding": "br;q=0, gzip;q=0" });
  assert.ok(!forbidden.headers.has("content-encoding"));
  const etags = new Set([br, gz, plain].map((r) => r.headers.get("etag")));
  assert.equal(etags.size, 3, "each representation has its own ETag");
  const nm = await get(site.responder, "/app.js", {
    "accept-encoding": "br",
    "if-none-match": br.headers.get("etag")!,
  });
  assert.equal(nm.status, 304);
  assert.equal(nm.headers.get("vary"), "Accept-Encoding");
  const range = await get(site.responder, "/app.js", { "accept-encoding": "br", range: "bytes=0-1" });
  assert.equal(dec.decode(range.body), "BR", "ranges apply to the encoded bytes");
  assert.equal(range.headers.get("content-range"), "bytes 0-1/8");
  const cssPlain = await get(site.responder, "/style.css", { "accept-encoding": "br" });
  assert.equal(dec.decode(cssPlain.body), "body{}\n", "no .br sidecar, br only accepted");
  assert.equal(cssPlain.headers.get("vary"), "Accept-Encoding");
  const direct = await get(site.responder, "/data.tar.gz", { "accept-encoding": "gzip" });
  assert.equal(dec.decode(direct.body), "TARGZ", "a .gz request never gets sidecar logic");
  assert.equal(direct.headers.get("content-type"), "application/gzip");
  assert.ok(!direct.headers.has("vary") && !direct.headers.has("content-encoding"));
  // a hit on the negotiated path stays synchronous
  const hit = site.responder.handle(req("GET", "/app.js", { "accept-encoding": "gzip, deflate, br" }));
  assert.ok(!(hit instanceof Promise));
  assert.equal(dec.decode(hit.body!), "BR-BYTES");
  await using off = await makeSite({ precompressed: false });
  const none = await get(off.responder, "/app.js", { "accept-encoding": "br" });
  assert.equal(dec.decode(none.body), "console.log('identity');\n");
  assert.ok(!none.headers.has("vary"));
});

Deno.test("an edited file shows up after the revalidation interval", async () => {
  await using site = await makeSite({ fileCacheRevalidateMs: 1_000 });
  assert.equal(dec.decode((await get(site.responder, "/hello.txt")).body), "hello world\n");
  await Deno.writeTextFile(`${site.root}/hello.txt`, "changed content!\n");
  const stale = site.responder.handle(req("GET", "/hello.txt"));
  assert.ok(!(stale instanceof Promise), "within the interval the cache answers without a syscall");
  assert.equal(dec.decode(stale.body!), "hello world\n");
  site.clock.advance(1_000);
  const fresh = await get(site.responder, "/hello.txt");
  assert.equal(dec.decode(fresh.body), "changed content!\n");
  assert.equal(fresh.headers.get("content-length"), "17");
  assert.equal(site.responder.cacheStats().entries, 1);
  await Deno.remove(`${site.root}/hello.txt`);
  site.clock.advance(1_000);
  assert.equal((await get(site.responder, "/hello.txt")).status, 404);
  assert.equal(site.responder.cacheStats().entries, 0, "a deleted file is dropped from the cache");
  await Deno.writeTextFile(`${site.root}/new.txt`, "new");
  assert.equal((await get(site.responder, "/new.txt")).status, 200);
});

Deno.test("the cache evicts least recently used files to stay within fileCacheMaxBytes", async () => {
  await using site = await makeSite({ fileCacheMaxBytes: 100 });
  for (const n of ["a", "b", "c"]) await Deno.writeTextFile(`${site.root}/${n}.txt`, n.repeat(40));
  await get(site.responder, "/a.txt");
  await get(site.responder, "/b.txt");
  assert.ok(
    !(site.responder.handle(req("GET", "/a.txt")) instanceof Promise),
    "a is cached and now most recent",
  );
  await get(site.responder, "/c.txt");
  const stats = site.responder.cacheStats();
  assert.ok(stats.bytes <= 100, `cache holds ${stats.bytes} bytes`);
  assert.equal(stats.entries, 2);
  assert.ok(!(site.responder.handle(req("GET", "/a.txt")) instanceof Promise), "a survived");
  assert.ok(!(site.responder.handle(req("GET", "/c.txt")) instanceof Promise), "c is cached");
  const b = site.responder.handle(req("GET", "/b.txt"));
  assert.ok(b instanceof Promise, "b, least recently used, was evicted");
  assert.equal(dec.decode((await read(await b)).body), "b".repeat(40));
});

Deno.test("directory listing is off by default and escapes names when on", async () => {
  await using site = await makeSite();
  assert.equal((await get(site.responder, "/empty/")).status, 404);
  await using listing = await makeSite({ directoryListing: true });
  const html = await get(listing.responder, "/empty/");
  assert.equal(html.status, 200);
  assert.equal(html.headers.get("content-type"), "text/html; charset=utf-8");
  const text = dec.decode(html.body);
  assert.ok(text.includes(`<a href="a%3Cb%3E%26%22c%22.txt">a&lt;b&gt;&amp;&quot;c&quot;.txt</a>`), text);
  assert.ok(!text.includes(".hidden"));
  const json = await get(listing.responder, "/empty/", { accept: "application/json" });
  assert.equal(json.headers.get("content-type"), "application/json; charset=utf-8");
  const parsed = JSON.parse(dec.decode(json.body));
  assert.match(parsed.entries[0]?.modified ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual({ ...parsed, entries: parsed.entries.map((e: object) => ({ ...e, modified: "" })) }, {
    path: "/empty/",
    entries: [{ name: 'a<b>&"c".txt', type: "file", size: 1, modified: "" }],
    truncated: false,
  });
});

Deno.test("create fails clearly when the document root is missing or a file", async () => {
  await assert.rejects(
    () =>
      StaticResponder.create({ ...DEFAULT_CONFIG, documentRoot: "/nonexistent/vento/root" }, new FakeClock()),
    /document root "\/nonexistent\/vento\/root" does not exist/,
  );
  const file = await Deno.makeTempFile();
  try {
    await assert.rejects(
      () => StaticResponder.create({ ...DEFAULT_CONFIG, documentRoot: file }, new FakeClock()),
      /is not a directory/,
    );
  } finally {
    await Deno.remove(file);
  }
});

// Root reads everything, so there is nothing to observe when the tests run as root.
Deno.test({ name: "permission errors map to 403", ignore: Deno.uid() === 0 }, async () => {
  await using site = await makeSite();
  await Deno.chmod(`${site.root}/hello.txt`, 0o000);
  const res = await get(site.responder, "/hello.txt");
  assert.equal(res.status, 403);
});

/**
 * A site whose confined file system renames a new version over `name` right after looking it up, the
 * first `times` times: the race an atomic deploy (write a temp file, rename it over) runs with a request.
 */
async function makeSwappingSite(name: string, versions: Uint8Array[], times: number) {
  const site = await makeSite();
  const fs = await ConfinedFs.open(site.root);
  const find = fs.find.bind(fs);
  let swaps = 0;
  fs.find = async (requested: string) => {
    const found = await find(requested);
    if (found !== null && requested.endsWith(`/${name}`) && swaps < times) {
      const tmp = `${site.root}/.${name}.tmp`;
      await Deno.writeFile(tmp, versions[swaps % versions.length]);
      await Deno.rename(tmp, `${site.root}/${name}`);
      swaps++;
    }
    return found;
  };
  const responder = await StaticResponder.create(site.options, site.clock, fs);
  return { site, responder, swaps: () => swaps };
}

Deno.test("a file renamed over between lookup and open is served (the new version), never 404", async () => {
  const small = [new TextEncoder().encode("version two\n")];
  const { site, responder, swaps } = await makeSwappingSite("hello.txt", small, 1);
  await using _ = site;
  const r = await get(responder, "/hello.txt");
  assert.equal(swaps(), 1);
  assert.equal(r.status, 200);
  assert.equal(dec.decode(r.body), "version two\n");
  responder.close();
});

Deno.test("a large streamed file renamed over between lookup and open is streamed whole, never 404", async () => {
  const next = new Uint8Array(2 * MiB).fill(7);
  const { site, responder, swaps } = await makeSwappingSite("big.bin", [next], 1);
  await using _ = site;
  const r = await get(responder, "/big.bin");
  assert.equal(swaps(), 1);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, next.length);
  assert.ok(r.body.every((b) => b === 7));
  responder.close();
});

Deno.test("a file replaced on every lookup is retried once, then answered 404", async () => {
  const versions = [new TextEncoder().encode("a\n"), new TextEncoder().encode("b\n")];
  const { site, responder, swaps } = await makeSwappingSite("hello.txt", versions, 10);
  await using _ = site;
  const r = await get(responder, "/hello.txt");
  assert.equal(r.status, 404);
  assert.equal(swaps(), 2, "one retry, not a loop");
  responder.close();
});

/** A site whose confined file system counts the lookups of each requested path. */
async function makeCountingSite() {
  const site = await makeSite();
  const fs = await ConfinedFs.open(site.root);
  const find = fs.find.bind(fs);
  const lookups = new Map<string, number>();
  fs.find = (requested: string) => {
    const name = requested.slice(requested.lastIndexOf("/") + 1);
    lookups.set(name, (lookups.get(name) ?? 0) + 1);
    return find(requested);
  };
  const responder = await StaticResponder.create(site.options, site.clock, fs);
  return { site, responder, lookups: (name: string) => lookups.get(name) ?? 0 };
}

Deno.test("requests arriving while a path is first resolved wait for that one lookup, each answered for its own head", async () => {
  const { site, responder, lookups } = await makeCountingSite();
  await using _ = site;
  const asks = [
    ...Array.from({ length: 50 }, () => req("GET", "/hello.txt")),
    req("HEAD", "/hello.txt"),
    req("GET", "/hello.txt", { range: "bytes=0-4" }),
  ];
  const replies = await Promise.all(asks.map((h) => responder.handle(h)));
  assert.equal(lookups("hello.txt"), 1);
  for (const r of replies.slice(0, 50)) {
    const p = await read(r);
    assert.equal(p.status, 200);
    assert.equal(dec.decode(p.body), "hello world\n");
  }
  assert.equal(replies[50].status, 200);
  assert.equal(replies[50].body, null);
  const ranged = await read(replies[51]);
  assert.equal(ranged.status, 206);
  assert.equal(dec.decode(ranged.body), "hello");
  // Missing paths are remembered too: one lookup for a burst of them.
  const missing = await Promise.all(
    Array.from({ length: 20 }, () => responder.handle(req("GET", "/nope.txt"))),
  );
  assert.equal(lookups("nope.txt"), 1);
  for (const r of missing) assert.equal(r.status, 404);
  responder.close();
});

Deno.test("requests waiting on a first resolution that remembered nothing (a file too large to cache) each serve it", async () => {
  const { site, responder, lookups } = await makeCountingSite();
  await using _ = site;
  const replies = await Promise.all(
    Array.from({ length: 5 }, () => responder.handle(req("GET", "/big.bin"))),
  );
  for (const r of replies) {
    const p = await read(r);
    assert.equal(p.status, 200);
    assert.equal(p.body.length, site.big.length);
  }
  assert.ok(lookups("big.bin") >= 1);
  responder.close();
});
