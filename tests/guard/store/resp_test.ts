/**
 * The RESP2 codec of the shared guard store: the exact bytes of commands, and a decoder whose result
 * never depends on how the reply stream was split.
 */

import assert from "node:assert/strict";
import { encodeCommand, RespDecoder, RespError, type RespValue } from "../../../src/guard/store/resp.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("encodeCommand writes an array of bulk strings, byte lengths for UTF-8, numbers in full", () => {
  assert.equal(text(encodeCommand(["PING"])), "*1\r\n$4\r\nPING\r\n");
  assert.equal(
    text(encodeCommand(["SET", "k", "é", "PX", 1500])),
    "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n$2\r\nPX\r\n$4\r\n1500\r\n",
  );
  assert.equal(
    text(encodeCommand(["X", 50.5, 1 / 3])),
    "*3\r\n$1\r\nX\r\n$4\r\n50.5\r\n$19\r\n0.33333333333333331\r\n",
  );
  assert.equal(text(encodeCommand(["X", ""])), "*2\r\n$1\r\nX\r\n$0\r\n\r\n");
});

/** A stream of replies of every type, and what they decode to. */
const STREAM = "+OK\r\n" +
  "-NOSCRIPT No matching script. Please use EVAL.\r\n" +
  ":-42\r\n" +
  "$5\r\nhé\r\n\r\n" + // bulk with a CRLF inside and a 2-byte character (5 bytes)
  "$-1\r\n" +
  "*-1\r\n" +
  "$0\r\n\r\n" +
  "*3\r\n$7\r\nmessage\r\n$10\r\nvento:bans\r\n$2\r\n{}\r\n" +
  "*2\r\n$1\r\n0\r\n*2\r\n:1\r\n*0\r\n";
const EXPECTED: RespValue[] = [
  "OK",
  new RespError("NOSCRIPT No matching script. Please use EVAL."),
  -42,
  "hé\r\n",
  null,
  null,
  "",
  ["message", "vento:bans", "{}"],
  ["0", [1, []]],
];

function drain(d: RespDecoder, out: RespValue[]): void {
  for (let v = d.next(); v !== undefined; v = d.next()) out.push(v);
}

Deno.test("decoder yields every reply type from one whole stream", () => {
  const d = new RespDecoder();
  d.feed(enc.encode(STREAM));
  const out: RespValue[] = [];
  drain(d, out);
  assert.deepEqual(out, EXPECTED);
  assert.equal(d.error, null);
  assert.equal(d.buffered, 0);
  assert.equal((out[1] as RespError).code, "NOSCRIPT");
});

Deno.test("decoder gives the same replies when the stream is split at every offset, and byte by byte", () => {
  const bytes = enc.encode(STREAM);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const d = new RespDecoder();
    const out: RespValue[] = [];
    d.feed(bytes.subarray(0, cut));
    drain(d, out);
    d.feed(bytes.subarray(cut));
    drain(d, out);
    assert.deepEqual(out, EXPECTED, `split at ${cut}`);
    assert.equal(d.error, null);
  }
  const d = new RespDecoder();
  const out: RespValue[] = [];
  for (let i = 0; i < bytes.length; i++) {
    d.feed(bytes.subarray(i, i + 1));
    drain(d, out);
  }
  assert.deepEqual(out, EXPECTED);
});

Deno.test("decoder returns nothing for an incomplete reply and keeps it for later", () => {
  const d = new RespDecoder();
  d.feed(enc.encode("$10\r\n01234"));
  assert.equal(d.next(), undefined);
  assert.equal(d.buffered, 10);
  d.feed(enc.encode("56789\r\n:7\r\n"));
  assert.equal(d.next(), "0123456789");
  assert.equal(d.next(), 7);
  assert.equal(d.next(), undefined);
});

Deno.test("decoder reports a malformed stream and decodes nothing after it", () => {
  for (
    const bad of [
      "?what\r\n",
      ":12a\r\n",
      "$abc\r\n",
      "$3\r\nabcXY",
      "+OK\rX\n",
      "*99999999999\r\n",
    ]
  ) {
    const d = new RespDecoder();
    d.feed(enc.encode(bad + "+OK\r\n"));
    assert.equal(d.next(), undefined, JSON.stringify(bad));
    assert.notEqual(d.error, null, JSON.stringify(bad));
    d.feed(enc.encode("+OK\r\n"));
    assert.equal(d.next(), undefined, "stays stopped");
  }
});

Deno.test("decoder bounds a reply's size", () => {
  const d = new RespDecoder(1024);
  d.feed(enc.encode("$5000\r\n"));
  assert.equal(d.next(), undefined);
  assert.match(d.error ?? "", /bad length/);
  const e = new RespDecoder(1024);
  e.feed(new Uint8Array(2000).fill(0x41));
  assert.match(e.error ?? "", /larger than 1024/);
});

Deno.test("decoder handles many replies fed in chunks larger than its buffer", () => {
  const d = new RespDecoder();
  const one = "$300\r\n" + "x".repeat(300) + "\r\n";
  const out: RespValue[] = [];
  for (let i = 0; i < 100; i++) {
    d.feed(enc.encode(one.repeat(20)));
    drain(d, out);
  }
  assert.equal(out.length, 2000);
  assert.ok(out.every((v) => v === "x".repeat(300)));
});
