/**
 * Byte-class tables and helpers of `src/http/chars.ts`, checked against the RFC grammar written out
 * independently here.
 */

import assert from "node:assert/strict";
import {
  C_DIGIT,
  C_HEX,
  C_QDTEXT,
  C_TARGET,
  C_TOKEN,
  C_VALUE,
  C_WS,
  CLASS,
  HEX_VALUE,
  isToken,
  isValidHost,
  latin1,
  LOWER,
} from "../../src/http/chars.ts";

const has = (b: number, flag: number) => (CLASS[b] & flag) !== 0;

Deno.test("byte classes match the RFC 9110 grammar for every byte", () => {
  const tcharPunct = "!#$%&'*+-.^_`|~";
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCharCode(b);
    const alnum = /^[A-Za-z0-9]$/.test(ch);
    assert.equal(has(b, C_TOKEN), alnum || tcharPunct.includes(ch), `tchar ${b}`);
    assert.equal(
      has(b, C_TARGET),
      b > 0x20 && b < 0x7f && !'#"<>\\^`{|}'.includes(ch),
      `target ${b}`,
    );
    assert.equal(has(b, C_VALUE), b === 0x09 || (b >= 0x20 && b !== 0x7f), `value ${b}`);
    assert.equal(
      has(b, C_QDTEXT),
      b === 0x09 || (b >= 0x20 && b !== 0x7f && b !== 0x22 && b !== 0x5c),
      `qdtext ${b}`,
    );
    assert.equal(has(b, C_DIGIT), b >= 0x30 && b <= 0x39);
    assert.equal(has(b, C_HEX), /^[0-9a-fA-F]$/.test(ch));
    assert.equal(HEX_VALUE[b], /^[0-9a-fA-F]$/.test(ch) ? parseInt(ch, 16) : -1);
    assert.equal(has(b, C_WS), b === 0x20 || b === 0x09);
    assert.equal(LOWER[b], /^[A-Z]$/.test(ch) ? b + 32 : b);
  }
});

Deno.test("latin1 maps every byte to the same code unit, including 0x80-0x9f and long runs", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const s = latin1(all, 0, 256);
  assert.equal(s.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(s.charCodeAt(i), i);
  const long = new Uint8Array(20_000).map((_, i) => 0x61 + (i % 26));
  const t = latin1(long, 5, 19_999);
  assert.equal(t.length, 19_994);
  assert.equal(t.charCodeAt(0), long[5]);
  assert.equal(t.charCodeAt(t.length - 1), long[19_998]);
  assert.equal(latin1(long, 3, 3), "");
});

Deno.test("isToken accepts tchar runs only", () => {
  assert.ok(isToken("keep-alive"));
  assert.ok(!isToken(""));
  assert.ok(!isToken("a b"));
  assert.ok(!isToken("caf\u00e9"));
});

Deno.test("isValidHost accepts uri-host with optional port and refuses the rest", () => {
  for (
    const ok of ["a", "a.b", "127.0.0.1:80", "[::1]", "[2001:db8::1]:443", "x_y", "a%20b", "h:0", "h:65535"]
  ) {
    assert.ok(isValidHost(ok), ok);
  }
  for (
    const bad of [
      "",
      ":80",
      "a:",
      "a:65536",
      "a:123456",
      "a b",
      "u@h",
      "a/b",
      "[::1",
      "[v1.x]",
      "[1]",
      "a%2",
      "a%g0",
    ]
  ) {
    assert.ok(!isValidHost(bad), bad);
  }
});
