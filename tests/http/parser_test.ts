/**
 * `RequestParser` API contract: results, offsets, stickiness, reuse, buffer ranges. Grammar coverage
 * lives in the golden vectors (`vectors_test.ts`); this file pins what the connection layer relies on.
 */

import assert from "node:assert/strict";
import { parseContentLength, type ParseResult, RequestParser } from "../../src/http/parser.ts";

const LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 16384, maxHeaderCount: 100 };
const enc = new TextEncoder();

function head(r: ParseResult) {
  assert.equal(r.kind, "head", JSON.stringify(r));
  return r as Extract<ParseResult, { kind: "head" }>;
}

Deno.test("parser answers more and counts bytesSeen for a partial head", () => {
  const p = new RequestParser(LIMITS);
  assert.equal(p.bytesSeen, 0);
  const b = enc.encode("GET / HTTP/1.1\r\nHo");
  assert.deepEqual(p.feed(b, 0, b.length), { kind: "more" });
  assert.equal(p.bytesSeen, b.length);
  const rest = enc.encode("st: a\r\n\r\n");
  const r = head(p.feed(rest, 0, rest.length));
  assert.equal(r.consumed, rest.length);
  assert.equal(r.head.host, "a");
  assert.equal(p.bytesSeen, b.length + rest.length);
});

Deno.test("parser reports consumed for a head followed by pipelined bytes", () => {
  const p = new RequestParser(LIMITS);
  const text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n";
  const b = enc.encode(text);
  const r = head(p.feed(b, 0, b.length));
  assert.equal(r.consumed, text.indexOf("GET /2"));
  assert.equal(r.head.path, "/1");
});

Deno.test("parser only reads chunk[start,end) and counts consumed from start", () => {
  const p = new RequestParser(LIMITS);
  const inner = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
  // Bytes outside the range are invalid everywhere: reading them would show as an error.
  const b = enc.encode("\x00\x00\x00" + inner + "\x00\x00");
  const r = head(p.feed(b, 3, 3 + inner.length));
  assert.equal(r.consumed, inner.length);
  assert.equal(r.head.path, "/x");
});

Deno.test("parser treats an empty range as more without consuming", () => {
  const p = new RequestParser(LIMITS);
  const b = enc.encode("GET");
  assert.deepEqual(p.feed(b, 2, 2), { kind: "more" });
  assert.equal(p.bytesSeen, 0);
});

Deno.test("parser error is sticky until reset", () => {
  const p = new RequestParser(LIMITS);
  const bad = enc.encode("GET / HTTP/1.1\nHost: a\r\n\r\n");
  const r = p.feed(bad, 0, bad.length);
  assert.deepEqual(r, { kind: "error", code: "BARE_LF", offset: 14 });
  const good = enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.deepEqual(p.feed(good, 0, good.length), r);
  p.reset();
  assert.equal(p.bytesSeen, 0);
  assert.equal(head(p.feed(good, 0, good.length)).head.method, "GET");
});

Deno.test("parser returns the same head with consumed 0 until reset", () => {
  const p = new RequestParser(LIMITS);
  const b = enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET");
  const first = head(p.feed(b, 0, b.length));
  const again = head(p.feed(b, first.consumed, b.length));
  assert.equal(again.consumed, 0);
  assert.equal(again.head, first.head);
});

Deno.test("parser reused after reset gives each head its own headers array", () => {
  const p = new RequestParser(LIMITS);
  const a = enc.encode("GET /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n");
  const b = enc.encode("GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
  const ha = head(p.feed(a, 0, a.length)).head;
  p.reset();
  const hb = head(p.feed(b, 0, b.length)).head;
  assert.deepEqual(ha.headers, ["host", "a", "x-a", "1"]);
  assert.deepEqual(hb.headers, ["host", "b"]);
  assert.equal(hb.keepAlive, true);
  assert.equal(hb.contentLength, -1);
});

Deno.test("parser makes its per-request objects with new, never from an object literal", () => {
  // V8 may start making every object of a literal in the old generation once a burst of them outlived
  // young collections; a request's head must stay cheap garbage whatever happened before (see parser.ts).
  const p = new RequestParser(LIMITS);
  const a = enc.encode("GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
  for (const r of [p.feed(a, 0, a.length), p.feed(a, 0, a.length)]) {
    assert.notEqual(Object.getPrototypeOf(r), Object.prototype);
    assert.notEqual(Object.getPrototypeOf(head(r).head), Object.prototype);
  }
});

Deno.test("parser keeps its state when the caller reuses the read buffer between feeds", () => {
  // A connection reads into the same buffer again: the parser must have copied any partial token.
  const p = new RequestParser(LIMITS);
  const buf = new Uint8Array(64);
  const part1 = enc.encode("GET /lo");
  buf.set(part1);
  assert.equal(p.feed(buf, 0, part1.length).kind, "more");
  buf.fill(0x21);
  const part2 = enc.encode("ng HTTP/1.1\r\nHost: a\r\nX-V: ab");
  buf.set(part2);
  assert.equal(p.feed(buf, 0, part2.length).kind, "more");
  buf.fill(0x21);
  const part3 = enc.encode("cd  \r\n\r\n");
  buf.set(part3);
  const h = head(p.feed(buf, 0, part3.length)).head;
  assert.equal(h.path, "/long");
  assert.deepEqual(h.headers, ["host", "a", "x-v", "abcd"]);
});

Deno.test("parser keeps a large head identical whether whole or in three reads", () => {
  const value = "v".repeat(3000) + " \t " + "w".repeat(3000);
  const text = `POST /up HTTP/1.1\r\nHost: h\r\nX-Big: ${value}   \r\nContent-Length: 7\r\n\r\n`;
  const b = enc.encode(text);
  const whole = head(new RequestParser(LIMITS).feed(b, 0, b.length)).head;
  const p = new RequestParser(LIMITS);
  assert.equal(p.feed(b, 0, 1000).kind, "more");
  assert.equal(p.feed(b, 1000, 4000).kind, "more");
  const r = head(p.feed(b, 4000, b.length));
  assert.equal(r.consumed, b.length - 4000);
  assert.deepEqual(r.head, whole);
  assert.equal(whole.headers[3], value);
  assert.equal(whole.contentLength, 7);
});

Deno.test("parser never reports an offset beyond the bytes it was given", () => {
  const p = new RequestParser({ ...LIMITS, maxHeaderBytes: 20 });
  const b = enc.encode("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n");
  assert.deepEqual(p.feed(b, 0, 10), { kind: "more" });
  assert.deepEqual(p.feed(b, 10, b.length), { kind: "error", code: "HEADER_TOO_LARGE", offset: 20 });
});

Deno.test("parseContentLength accepts digits and identical lists only", () => {
  assert.equal(parseContentLength("0"), 0);
  assert.equal(parseContentLength("42"), 42);
  assert.equal(parseContentLength("42 , 42,42"), 42);
  assert.equal(parseContentLength("999999999999999"), 999_999_999_999_999);
  for (const bad of ["", " ", "+1", "-1", "1.0", "0x1", "1 2", "1,", ",1", "1e2", "1234567890123456"]) {
    assert.equal(parseContentLength(bad), -1, JSON.stringify(bad));
  }
  assert.equal(parseContentLength("1, 2"), -2);
});

Deno.test("a parser reconfigured for reuse forgets its last request and takes the new limits", () => {
  const p = new RequestParser(LIMITS);
  // Leave it mid-head, then in an error state: a pooled parser can come back in either.
  assert.equal(p.feed(enc.encode("GET / HT"), 0, 8).kind, "more");
  p.configure({ maxRequestLineBytes: 16, maxHeaderBytes: 64, maxHeaderCount: 1 });
  assert.equal(p.bytesSeen, 0);
  const long = enc.encode("GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = p.feed(long, 0, long.length);
  assert.equal(r.kind, "error");
  if (r.kind === "error") assert.equal(r.code, "URI_TOO_LONG");
  p.configure(LIMITS);
  const ok = enc.encode("GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n");
  const h = p.feed(ok, 0, ok.length);
  assert.equal(h.kind, "head");
  if (h.kind === "head") {
    assert.equal(h.head.path, "/x");
    assert.equal(h.consumed, ok.length);
  }
});

Deno.test("parser knows a HEAD method once its SP arrived, at any split and after an error, until reset", () => {
  const cases: [string, boolean][] = [
    ["HEAD / HTTP/1.1\r\nBad Header: x\r\n\r\n", true],
    ["\r\nHEAD / HTTP/1.1\r\nBad Header: x\r\n\r\n", true],
    ["HEADS / HTTP/1.1\r\nBad Header: x\r\n\r\n", false],
    ["HEA / HTTP/1.1\r\nBad Header: x\r\n\r\n", false],
    ["head / HTTP/1.1\r\nBad Header: x\r\n\r\n", false],
    ["GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", false],
  ];
  for (const [text, isHead] of cases) {
    const bytes = enc.encode(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const p = new RequestParser(LIMITS);
      // The caller reuses one buffer between feeds: the first part must have been copied.
      const buf = new Uint8Array(bytes.length);
      buf.set(bytes.subarray(0, cut));
      const first = p.feed(buf, 0, cut);
      buf.fill(0x20);
      buf.set(bytes.subarray(cut), cut);
      const r = first.kind === "more" ? p.feed(buf, cut, bytes.length) : first;
      assert.equal(r.kind, "error", `${JSON.stringify(text)} split at ${cut}`);
      assert.equal(p.methodIsHead, isHead, `${JSON.stringify(text)} split at ${cut}`);
    }
    const p = new RequestParser(LIMITS);
    p.feed(bytes, 0, bytes.length);
    p.reset();
    assert.equal(p.methodIsHead, false, "reset forgets the method");
  }
  const partial = new RequestParser(LIMITS);
  assert.equal(partial.feed(enc.encode("HEAD"), 0, 4).kind, "more");
  assert.equal(partial.methodIsHead, false, "unknown before the SP: the method could still grow");
  partial.feed(enc.encode(" /"), 0, 2);
  assert.equal(partial.methodIsHead, true);
});

Deno.test("the version ending the request line reads the same whole and byte by byte, at the line limit and past it", () => {
  // "GET /abc HTTP/1.x" is 17 bytes: a limit of 17 takes it (CR LF excluded), 16 does not.
  const feedAll = (p: RequestParser, bytes: Uint8Array) => p.feed(bytes, 0, bytes.length);
  const feedBytes = (p: RequestParser, bytes: Uint8Array) => {
    let r: ParseResult = { kind: "more" };
    for (let i = 0; i < bytes.length && r.kind === "more"; i++) r = p.feed(bytes, i, i + 1);
    return r;
  };
  const outcome = (r: ParseResult) =>
    r.kind === "head" ? `head ${r.head.version}` : r.kind === "error" ? `error ${r.code}` : "more";
  const cases: [string, number, string][] = [
    ["GET /abc HTTP/1.1\r\nHost: a\r\n\r\n", 17, "head 11"],
    ["GET /abc HTTP/1.0\r\nHost: a\r\n\r\n", 17, "head 10"],
    ["GET /abc HTTP/1.1\r\nHost: a\r\n\r\n", 16, "error URI_TOO_LONG"],
    ["GET /abc HTTP/1.2\r\nHost: a\r\n\r\n", 17, "head 11"],
    ["GET /abc HTTP/2.0\r\nHost: a\r\n\r\n", 17, "error UNSUPPORTED_VERSION"],
    ["GET /abc HTTP/1.1\rXHost: a\r\n\r\n", 17, "error BARE_CR"],
  ];
  for (const [text, limit, expected] of cases) {
    const bytes = enc.encode(text);
    const limits = { ...LIMITS, maxRequestLineBytes: limit };
    assert.equal(
      outcome(feedAll(new RequestParser(limits), bytes)),
      expected,
      `${JSON.stringify(text)} whole`,
    );
    assert.equal(
      outcome(feedBytes(new RequestParser(limits), bytes)),
      expected,
      `${JSON.stringify(text)} bytewise`,
    );
  }
});
