/**
 * Property tests (fast-check) for the request parser and the chunked decoder: no input makes them
 * throw or over-consume, and no chunking of the input changes what they conclude.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ChunkedDecoder } from "../../src/http/body.ts";
import { RequestParser } from "../../src/http/parser.ts";
import { DEFAULT_VECTOR_LIMITS, drive } from "../_helpers/vectors.ts";

const enc = new TextEncoder();
const NUM_RUNS = 300;

/** Sorted distinct cut offsets inside [1, length). */
function cutsFor(length: number): fc.Arbitrary<number[]> {
  if (length < 2) return fc.constant([]);
  return fc.uniqueArray(fc.integer({ min: 1, max: length - 1 }), { maxLength: 8 }).map((a) =>
    a.sort((x, y) => x - y)
  );
}

/** Byte strings made mostly of HTTP fragments, so the parser gets deep before failing. */
const httpish: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        "GET ",
        "POST ",
        "/",
        "/a?b=c",
        "http://h/",
        "*",
        " ",
        "HTTP/1.1",
        "HTTP/1.0",
        "\r\n",
        "\r",
        "\n",
        "Host: a",
        "host:b",
        "Content-Length: 3",
        "Transfer-Encoding: chunked",
        "Connection: close",
        ":",
        "\t",
        "0\r\n\r\n",
        "abc",
        "3\r\nxyz\r\n",
      ),
      fc.uint8Array({ maxLength: 3 }).map((b) => String.fromCharCode(...b)),
    ),
    { maxLength: 30 },
  )
  .map((parts) => Uint8Array.from(parts.join(""), (c) => c.charCodeAt(0)));

/** Well-formed exchanges (heads, bodies, pipelining) that `mutated` damages a little. */
const TEMPLATES = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
  "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
  'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e="q"\r\nabc\r\n0\r\nT: v\r\n\r\n',
  "OPTIONS * HTTP/1.1\r\nHost: [::1]:8\r\nExpect: 100-continue\r\nX-A:  b \r\n\r\n",
  "GET http://h:1/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nok",
];

/** A template with a few bytes replaced, inserted or deleted. */
const mutated: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.constantFrom(...TEMPLATES),
    fc.array(
      fc.tuple(fc.nat(), fc.constantFrom("set", "insert", "delete"), fc.integer({ min: 0, max: 255 })),
      {
        maxLength: 3,
      },
    ),
  )
  .map(([template, edits]) => {
    const b = Array.from(template, (c) => c.charCodeAt(0));
    for (const [at, op, byte] of edits) {
      const i = at % (b.length + 1);
      if (op === "insert") b.splice(i, 0, byte);
      else if (i < b.length) {
        if (op === "set") b[i] = byte;
        else b.splice(i, 1);
      }
    }
    return Uint8Array.from(b);
  });

const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), httpish, mutated, mutated);

Deno.test("parser never throws and never consumes more than it was given", () => {
  fc.assert(
    fc.property(anyBytes, fc.nat({ max: 8 }), (bytes, pad) => {
      const p = new RequestParser({ maxRequestLineBytes: 64, maxHeaderBytes: 128, maxHeaderCount: 4 });
      const buf = new Uint8Array(bytes.length + 2 * pad).fill(0x41);
      buf.set(bytes, pad);
      let pos = pad;
      const end = pad + bytes.length;
      while (pos < end) {
        const r = p.feed(buf, pos, end);
        if (r.kind === "more") break;
        if (r.kind === "error") {
          assert.ok(r.offset >= 0 && r.offset <= 128 && r.offset <= p.bytesSeen + end - pos);
          break;
        }
        assert.ok(r.consumed > 0 && r.consumed <= end - pos);
        pos += r.consumed;
        p.reset();
      }
    }),
    { numRuns: NUM_RUNS * 3 },
  );
});

Deno.test("any chunking of arbitrary bytes gives the same outcome as feeding them whole", () => {
  const limits = {
    ...DEFAULT_VECTOR_LIMITS,
    maxHeaderBytes: 200,
    maxRequestLineBytes: 60,
    maxHeaderCount: 5,
  };
  fc.assert(
    fc.property(anyBytes.chain((b) => fc.tuple(fc.constant(b), cutsFor(b.length))), ([bytes, cuts]) => {
      assert.deepEqual(drive(bytes, cuts, limits), drive(bytes, [], limits));
    }),
    { numRuns: NUM_RUNS * 3 },
  );
});

const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/);
const pathArb = fc.stringMatching(/^(\/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,10}){1,4}(\?[A-Za-z0-9=&%]{0,10})?$/);
const valueArb = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e\t]{0,20}[\x21-\x7e])?$/);
const reserved = new Set(["host", "content-length", "transfer-encoding", "connection", "expect"]);
const fieldArb = fc.tuple(token, valueArb).filter(([n]) => !reserved.has(n.toLowerCase()));

const validRequest = fc.record({
  method: token,
  path: pathArb,
  v11: fc.boolean(),
  host: fc.stringMatching(/^[a-z0-9.-]{1,15}(:[0-9]{1,4})?$/),
  fields: fc.array(fieldArb, { maxLength: 8 }),
  ows: fc.constantFrom("", " ", "\t", "  "),
  contentLength: fc.option(fc.nat({ max: 99999 }), { nil: null }),
  leadingEmptyLines: fc.nat({ max: 2 }),
});

/** `text` as bytes, one per char (latin1), so a test can put obs-text bytes (0x80–0xFF) in values. */
function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** The text of a valid request (see `validRequest`), fields as given. */
function requestText(req: {
  method: string;
  path: string;
  v11: boolean;
  host: string;
  fields: [string, string][];
  ows: string;
}): string {
  let text = `${req.method} ${req.path} HTTP/1.${
    req.v11 ? 1 : 0
  }\r\nHost:${req.ows}${req.host}${req.ows}\r\n`;
  for (const [n, v] of req.fields) text += `${n}:${req.ows}${v}${req.ows}\r\n`;
  return text + "\r\n";
}

/** How one head could differ from another request's: a name's case, one char of a value, a high byte. */
const variation = fc.constantFrom("same", "upper-name", "value-char", "high-byte", "one-more-field");

Deno.test("a parser reused for many heads gives each the head a fresh parser gives", () => {
  fc.assert(
    fc.property(
      fc.array(validRequest, { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), variation), { minLength: 2, maxLength: 10 }),
      (bases, sequence) => {
        const reused = new RequestParser(DEFAULT_VECTOR_LIMITS);
        for (const [pick, how] of sequence) {
          const base = bases[pick % bases.length];
          const fields = base.fields.map(([n, v]) => [n, v] as [string, string]);
          if (fields.length > 0) {
            const [n, v] = fields[pick % fields.length];
            if (how === "upper-name") fields[pick % fields.length] = [n.toUpperCase(), v];
            if (how === "value-char") {
              fields[pick % fields.length] = [n, v.slice(0, -1) + (v.endsWith("x") ? "y" : "x")];
            }
            if (how === "high-byte") fields[pick % fields.length] = [n, v + "\xe9"];
          }
          if (how === "one-more-field") fields.push(["X-Extra", String(pick)]);
          const bytes = latin1Bytes(requestText({ ...base, fields }));
          const got = reused.feed(bytes, 0, bytes.length);
          reused.reset();
          const want = new RequestParser(DEFAULT_VECTOR_LIMITS).feed(bytes, 0, bytes.length);
          assert.equal(got.kind, want.kind);
          if (got.kind === "head" && want.kind === "head") assert.deepEqual(got.head, want.head);
          else assert.deepEqual({ ...got }, { ...want });
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

Deno.test("any split of a valid request gives the head it gives whole", () => {
  fc.assert(
    fc.property(
      validRequest.chain((req) => {
        let text = "\r\n".repeat(req.leadingEmptyLines);
        text += `${req.method} ${req.path} HTTP/1.${
          req.v11 ? 1 : 0
        }\r\nHost:${req.ows}${req.host}${req.ows}\r\n`;
        for (const [n, v] of req.fields) text += `${n}:${req.ows}${v}${req.ows}\r\n`;
        if (req.contentLength !== null) text += `Content-Length: ${req.contentLength}\r\n`;
        text += "\r\n";
        const bytes = enc.encode(text);
        return fc.tuple(fc.constant(req), fc.constant(bytes), cutsFor(bytes.length));
      }),
      ([req, bytes, cuts]) => {
        const whole = new RequestParser(DEFAULT_VECTOR_LIMITS).feed(bytes, 0, bytes.length);
        assert.equal(whole.kind, "head", JSON.stringify(whole));
        if (whole.kind !== "head") return;
        assert.equal(whole.consumed, bytes.length);
        assert.equal(whole.head.method, req.method);
        assert.equal(whole.head.path, req.path);
        assert.equal(whole.head.host, req.host);
        assert.equal(whole.head.contentLength, req.contentLength ?? -1);
        assert.equal(
          whole.head.headers.length,
          2 * (1 + req.fields.length + (req.contentLength === null ? 0 : 1)),
        );
        for (let k = 0; k < req.fields.length; k++) {
          assert.equal(whole.head.headers[2 + 2 * k], req.fields[k][0].toLowerCase());
          assert.equal(whole.head.headers[3 + 2 * k], req.fields[k][1]);
        }
        const p = new RequestParser(DEFAULT_VECTOR_LIMITS);
        const bounds = [0, ...cuts, bytes.length];
        for (let k = 0; k + 1 < bounds.length; k++) {
          const r = p.feed(bytes, bounds[k], bounds[k + 1]);
          if (k + 2 < bounds.length) assert.equal(r.kind, "more");
          else {
            assert.equal(r.kind, "head");
            if (r.kind !== "head") return;
            assert.deepEqual(r.head, whole.head);
            assert.equal(r.consumed, bounds[k + 1] - bounds[k]);
          }
        }
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

/** Chunked framing of `body` in pieces of the given sizes (cycled), optionally with extensions. */
function encodeChunked(body: Uint8Array, sizes: number[], ext: boolean): Uint8Array {
  const out: number[] = [];
  const push = (s: string) => {
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
  };
  let pos = 0;
  let k = 0;
  while (pos < body.length) {
    const n = Math.min(body.length - pos, sizes[k++ % sizes.length]);
    push(n.toString(16) + (ext ? ';n="v"' : "") + "\r\n");
    for (let i = 0; i < n; i++) out.push(body[pos + i]);
    push("\r\n");
    pos += n;
  }
  push("0\r\nT: x\r\n\r\n");
  return Uint8Array.from(out);
}

Deno.test("any split of chunked framing decodes to the original body and the same consumed", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 400 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 5 }),
      fc.boolean(),
      fc.uint8Array({ maxLength: 10 }),
      (body, sizes, ext, after) => {
        const framed = encodeChunked(body, sizes, ext);
        const bytes = new Uint8Array(framed.length + after.length);
        bytes.set(framed);
        bytes.set(after, framed.length);
        return fc.assert(
          fc.property(cutsFor(bytes.length), (cuts) => {
            const d = new ChunkedDecoder({ maxTrailerBytes: 16 });
            const got: number[] = [];
            const bounds = [0, ...cuts, bytes.length];
            let consumed = 0;
            for (let k = 0; k + 1 < bounds.length; k++) {
              const r = d.feed(bytes, bounds[k], bounds[k + 1], (b, s, e) => {
                for (let i = s; i < e; i++) got.push(b[i]);
              });
              if (r.kind === "error") assert.fail(`unexpected ${r.code}`);
              if (r.kind === "more") consumed += bounds[k + 1] - bounds[k];
              else {
                consumed += r.consumed;
                break;
              }
            }
            assert.equal(consumed, framed.length);
            assert.deepEqual(Uint8Array.from(got), body);
          }),
          { numRuns: 5 },
        );
      },
    ),
    { numRuns: NUM_RUNS / 3 },
  );
});

Deno.test("decoder never throws and never consumes more than it was given", () => {
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      const d = new ChunkedDecoder({ maxTrailerBytes: 32, maxChunkExtBytes: 16 });
      let delivered = 0;
      const r = d.feed(bytes, 0, bytes.length, (_b, s, e) => {
        delivered += e - s;
      });
      assert.ok(delivered <= bytes.length);
      if (r.kind === "done") assert.ok(r.consumed > 0 && r.consumed <= bytes.length);
    }),
    { numRuns: NUM_RUNS * 3 },
  );
});
