import assert from "node:assert/strict";
import zlib from "node:zlib";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import type { RequestHead } from "../../src/http/head.ts";
import type { BodySink, Reply } from "../../src/http/response.ts";
import { FakeClock } from "../../src/core/clock.ts";
import {
  CompressedFileStream,
  CompressibleTypes,
  Compressor,
  type CompressSource,
} from "../../src/static/compress.ts";
import { StaticResponder } from "../../src/static/responder.ts";
import { concat } from "../_helpers/response_reader.ts";

const dec = new TextDecoder();
const LEVEL = { br: 5, gzip: 6 } as const;

/** Runs `fn` with a compressor thread, stopped afterwards (a running thread would fail the op sanitizer). */
async function withCompressor(fn: (c: Compressor) => Promise<void> | void): Promise<void> {
  const c = new Compressor();
  try {
    await fn(c);
  } finally {
    c.close();
  }
}

Deno.test("CompressibleTypes matches exact types, type/* and +suffix, ignoring parameters and case", () => {
  const t = new CompressibleTypes(DEFAULT_CONFIG.compressTypes);
  for (
    const yes of [
      "text/html; charset=utf-8",
      "TEXT/CSS",
      "text/javascript; charset=utf-8",
      "application/json",
      "application/manifest+json",
      "application/ld+json",
      "application/rss+xml",
      "image/svg+xml",
      "application/wasm",
      "application/xml",
    ]
  ) assert.ok(t.matches(yes), yes);
  for (const no of ["image/png", "application/octet-stream", "font/woff2", "application/gzip", "json", ""]) {
    assert.ok(!t.matches(no), no);
  }
  assert.ok(!new CompressibleTypes([]).matches("text/html"));
});

/** A file made of `data`, read in pieces no larger than `step`, that records whether it was closed. */
class FakeFile implements CompressSource {
  #data: Uint8Array;
  #at = 0;
  closed = 0;
  constructor(data: Uint8Array) {
    this.#data = data;
  }
  read(p: Uint8Array): Promise<number | null> {
    if (this.#at >= this.#data.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.#data.length - this.#at, 10_000);
    p.set(this.#data.subarray(this.#at, this.#at + n));
    this.#at += n;
    return Promise.resolve(n);
  }
  close(): void {
    this.closed++;
  }
}

/** Undoes the chunked framing, checking it is well formed and ends with the last chunk. */
function dechunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const eol = bytes.indexOf(0x0a, at);
    const size = parseInt(dec.decode(bytes.subarray(at, eol - 1)), 16);
    at = eol + 1;
    if (size === 0) {
      assert.equal(dec.decode(bytes.subarray(at)), "\r\n", "ends with the last chunk");
      break;
    }
    parts.push(bytes.slice(at, at + size));
    assert.equal(dec.decode(bytes.subarray(at + size, at + size + 2)), "\r\n");
    at += size + 2;
  }
  return concat(parts);
}

class Sink implements BodySink {
  chunks: Uint8Array[] = [];
  failAfter = Infinity;
  write(bytes: Uint8Array): Promise<void> {
    if (this.chunks.length >= this.failAfter) return Promise.reject(new Deno.errors.BrokenPipe("gone"));
    this.chunks.push(bytes.slice());
    return Promise.resolve();
  }
  bytes(): Uint8Array {
    return concat(this.chunks);
  }
}

const TEXT = new TextEncoder().encode(
  Array.from({ length: 30_000 }, (_, i) => `row ${i} ${(i * 2654435761) % 1000}\n`).join(""),
);

Deno.test("CompressedFileStream writes a chunked body that decompresses to the file, then releases once", () =>
  withCompressor(async (c) => {
    for (const encoding of ["br", "gzip"] as const) {
      const file = new FakeFile(TEXT);
      let released = 0;
      const s = new CompressedFileStream(file, c, encoding, TEXT.length, LEVEL[encoding], () => released++);
      const sink = new Sink();
      await s.pipe(sink);
      const body = dechunk(sink.bytes());
      const plain = encoding === "br" ? zlib.brotliDecompressSync(body) : zlib.gunzipSync(body);
      assert.equal(dec.decode(plain), dec.decode(TEXT), encoding);
      assert.equal(file.closed, 1);
      assert.equal(released, 1);
      s.cancel(); // after the end: no second release
      assert.equal(released, 1);
    }
  }));

Deno.test("CompressedFileStream reads no more than its length (a file that grew) and survives one that shrank", () =>
  withCompressor(async (c) => {
    const s = new CompressedFileStream(new FakeFile(TEXT), c, "gzip", 1000, 6, () => {});
    const sink = new Sink();
    await s.pipe(sink);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(dechunk(sink.bytes()))), TEXT.subarray(0, 1000));
    const short = new CompressedFileStream(new FakeFile(TEXT.subarray(0, 50)), c, "br", 5000, 5, () => {});
    const sink2 = new Sink();
    await short.pipe(sink2);
    assert.deepEqual(new Uint8Array(zlib.brotliDecompressSync(dechunk(sink2.bytes()))), TEXT.subarray(0, 50));
  }));

Deno.test("CompressedFileStream: a failing sink rejects the pipe, closes the file and releases the slot", () =>
  withCompressor(async (c) => {
    const file = new FakeFile(crypto.getRandomValues(new Uint8Array(60_000))); // incompressible
    let released = 0;
    const s = new CompressedFileStream(file, c, "gzip", 60_000, 6, () => released++);
    const sink = new Sink();
    sink.failAfter = 1;
    await assert.rejects(s.pipe(sink), Deno.errors.BrokenPipe);
    assert.equal(file.closed, 1);
    assert.equal(released, 1);
    // The compressor serves the next stream as before.
    const again = new CompressedFileStream(new FakeFile(TEXT), c, "gzip", TEXT.length, 6, () => {});
    const ok = new Sink();
    await again.pipe(ok);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(dechunk(ok.bytes()))), TEXT);
  }));

Deno.test("CompressedFileStream.cancel closes the file and releases without compressing", () =>
  withCompressor((c) => {
    const file = new FakeFile(TEXT);
    let released = 0;
    const s = new CompressedFileStream(file, c, "br", TEXT.length, 5, () => released++);
    s.cancel();
    s.cancel();
    assert.equal(file.closed, 1);
    assert.equal(released, 1);
  }));

Deno.test("Compressor.whole round-trips both codings and leaves the caller's bytes alone", () =>
  withCompressor(async (c) => {
    const copy = TEXT.slice();
    const [br, gz] = await Promise.all([c.whole(copy, "br", 5), c.whole(copy, "gzip", 6)]);
    assert.deepEqual(copy, TEXT, "the input is copied, not transferred away");
    assert.deepEqual(new Uint8Array(zlib.brotliDecompressSync(br)), TEXT);
    assert.deepEqual(new Uint8Array(zlib.gunzipSync(gz)), TEXT);
    assert.ok(br.length < TEXT.length / 3 && gz.length < TEXT.length / 3);
  }));

Deno.test("Compressor runs off the event loop: timers keep firing while it compresses", () =>
  withCompressor(async (c) => {
    const big = new Uint8Array(8 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = ((i * 2654435761) >>> 24) & 0x3f;
    await c.whole(new Uint8Array(16), "br", 5); // the thread is up
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      const t0 = performance.now();
      await c.whole(big, "br", 9);
      const took = performance.now() - t0;
      // On the event loop no timer could fire before the end; off it they fire throughout.
      assert.ok(ticks >= 3 || took < 20, `${ticks} ticks in ${took.toFixed(0)} ms`);
    } finally {
      clearInterval(timer);
    }
  }));

Deno.test("Compressor.close rejects what is in flight and later requests", async () => {
  const c = new Compressor();
  const pending = c.whole(TEXT, "br", 11);
  c.close();
  await assert.rejects(pending, /closed/);
  await assert.rejects(c.whole(TEXT, "gzip", 6), /closed/);
  c.close();
});

function req(path: string, headers: Record<string, string>): RequestHead {
  const flat: string[] = ["host", "example.test"];
  for (const [k, v] of Object.entries(headers)) flat.push(k.toLowerCase(), v);
  return {
    method: "GET",
    target: path,
    targetForm: "origin",
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

function header(reply: Reply, name: string): string | undefined {
  const m = new RegExp(`\r\n${name}: ([^\r]*)\r\n`, "i").exec(dec.decode(reply.head));
  return m?.[1];
}

Deno.test("COMPRESS_MAX_JOBS: a request beyond the running compressions gets the identity file", async () => {
  const root = await Deno.makeTempDir({ prefix: "vento-compress-jobs-" });
  try {
    await Deno.writeFile(`${root}/a.txt`, TEXT);
    await Deno.writeFile(`${root}/b.txt`, TEXT);
    const responder = await StaticResponder.create({
      ...DEFAULT_CONFIG,
      documentRoot: root,
      compressCacheMaxFileBytes: 1024, // both stream
      compressMaxJobs: 1,
    }, new FakeClock());
    try {
      const first = await responder.handle(req("/a.txt", { "accept-encoding": "br" }));
      assert.equal(header(first, "Content-Encoding"), "br");
      assert.equal(responder.compressJobs, 1);
      const second = await responder.handle(req("/b.txt", { "accept-encoding": "br" }));
      assert.equal(header(second, "Content-Encoding"), undefined, "busy: identity");
      assert.equal(header(second, "Vary"), "Accept-Encoding");
      second.stream?.cancel();
      first.stream!.cancel();
      assert.equal(responder.compressJobs, 0);
      const third = await responder.handle(req("/b.txt", { "accept-encoding": "br" }));
      assert.equal(header(third, "Content-Encoding"), "br", "a slot is free again");
      third.stream!.cancel();
    } finally {
      responder.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("concurrent requests for one file version share one compression", async () => {
  const root = await Deno.makeTempDir({ prefix: "vento-compress-once-" });
  try {
    await Deno.writeFile(`${root}/a.txt`, TEXT);
    const responder = await StaticResponder.create(
      { ...DEFAULT_CONFIG, documentRoot: root },
      new FakeClock(),
    );
    try {
      const replies = await Promise.all(
        Array.from({ length: 8 }, () => responder.handle(req("/a.txt", { "accept-encoding": "gzip" }))),
      );
      assert.equal(
        new Set(replies.map((r) => r.body)).size,
        1,
        "every reply holds the same compressed bytes",
      );
      assert.deepEqual(new Uint8Array(zlib.gunzipSync(replies[0].body!)), TEXT);
      assert.equal(responder.compressJobs, 0);
    } finally {
      responder.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
