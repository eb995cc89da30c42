/**
 * Byte classes for the HTTP/1.1 grammar (RFC 9110 §5.6, RFC 9112, RFC 3986) as one `Uint8Array(256)`
 * of bit flags, a lower-casing table, a hex-digit table, and the latin1 byte → string helper the
 * parsers use to make strings from subarrays.
 *
 * Pure; no Deno APIs; no allocation except the strings `latin1` returns. Never throws.
 */

import { Buffer } from "node:buffer";

/** `tchar` (RFC 9110 §5.6.2): the bytes of a token (methods, header names, codings). */
export const C_TOKEN = 1;
/**
 * Bytes allowed in a request-target's path: the characters RFC 3986 allows in a URI (unreserved,
 * reserved, `%`), except `#` (a fragment is never sent, RFC 9112 §3.2). Visible ASCII outside RFC 3986 —
 * `"` `<` `>` `\` `^` `` ` `` `{` `|` `}` — makes the request line invalid (400, RFC 9112 §3.2): every
 * browser percent-encodes all of them in a path, and letting them through would hand downstream code
 * (logs, HTML listings, redirects) characters that a valid URI never carries. The query is judged by
 * `QUERY_BYTES`.
 */
export const C_TARGET = 2;
/** Bytes allowed inside a field value: VCHAR, obs-text, SP, HTAB (RFC 9110 §5.5). */
export const C_VALUE = 4;
/** `qdtext` of a quoted-string (RFC 9110 §5.6.4): HTAB, SP, VCHAR except `"` and `\`, obs-text. */
export const C_QDTEXT = 8;
/** Bytes of a uri-host reg-name (RFC 3986 §3.2.2): unreserved, sub-delims and `%` of pct-encoded. */
export const C_REGNAME = 16;
/** `0-9a-fA-F`. */
export const C_HEX = 32;
/** `0-9`. */
export const C_DIGIT = 64;
/** SP or HTAB (OWS). */
export const C_WS = 128;

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;
export const SEMICOLON = 0x3b;
export const EQUALS = 0x3d;
export const DQUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const QUESTION = 0x3f;

function buildClasses(): Uint8Array {
  const t = new Uint8Array(256);
  const add = (chars: string, flag: number) => {
    for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] |= flag;
  };
  const range = (from: number, to: number, flag: number) => {
    for (let b = from; b <= to; b++) t[b] |= flag;
  };
  const digits = "0123456789";
  const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  add(digits + alpha + "!#$%&'*+-.^_`|~", C_TOKEN);
  add(digits + alpha + "-._~" + ":/?[]@" + "!$&'()*+,;=" + "%", C_TARGET);
  range(0x21, 0x7e, C_VALUE);
  range(0x80, 0xff, C_VALUE);
  add(" \t", C_VALUE | C_WS);
  range(0x21, 0x7e, C_QDTEXT);
  range(0x80, 0xff, C_QDTEXT);
  add(" \t", C_QDTEXT);
  t[DQUOTE] &= ~C_QDTEXT;
  t[BACKSLASH] &= ~C_QDTEXT;
  add(digits + alpha + "-._~" + "!$&'()*+,;=" + "%", C_REGNAME);
  add(digits + "abcdefABCDEF", C_HEX);
  add(digits, C_DIGIT);
  return t;
}

/** Bit flags per byte value; test with `(CLASS[b] & C_TOKEN) !== 0`. */
export const CLASS: Uint8Array = buildClasses();

/**
 * Bytes allowed in a request-target's query (after the first `?`): those of the path plus `{` `}` `|`
 * `^` `\` and the backtick, which browsers send as typed in a query (the WHATWG URL query
 * percent-encode set leaves them out, so `?q={x}` from an address bar or a `fetch` arrives raw) and
 * which nginx accepts too; refusing them would answer 400 to ordinary browser requests. `"` `<` `>`
 * stay refused: browsers encode them in a query as well. Nonzero = allowed.
 */
export const QUERY_BYTES: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) if ((CLASS[b] & C_TARGET) !== 0) t[b] = 1;
  for (const c of "{}|^\\`") t[c.charCodeAt(0)] = 1;
  return t;
})();

/** Byte → lower-case byte (ASCII letters only; everything else maps to itself). */
export const LOWER: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
  return t;
})();

/** Byte → hex digit value, or -1. */
export const HEX_VALUE: Int8Array = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let d = 0; d < 10; d++) t[0x30 + d] = d;
  for (let d = 0; d < 6; d++) {
    t[0x41 + d] = 10 + d;
    t[0x61 + d] = 10 + d;
  }
  return t;
})();

/**
 * Longest slice handed to one `String.fromCharCode.apply` call: well under every engine's argument
 * limit, and heads are far shorter anyway.
 */
const APPLY_MAX_BYTES = 8192;

/**
 * The runtime's own one-char-per-byte decoder (`Buffer.prototype.latin1Slice`, one native call), when it
 * decodes any Uint8Array correctly (checked once, here); else null. Measured on Deno 2.9 for a 98-byte
 * head: 135 ns, against 330 for `TextDecoder` (whose web-API checks cost more than the decoding) and 860
 * for `fromCharCode.apply`.
 */
const LATIN1_SLICE: ((this: Uint8Array, start: number, end: number) => string) | null = (() => {
  try {
    const slice = (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice;
    if (typeof slice !== "function") return null;
    const probe = new Uint8Array([0x47, 0x45, 0x54, 0x80, 0x9f, 0xe9, 0xff, 0x0d]);
    const out = slice.call(probe, 1, 7);
    return out === "ET\x80\x9f\xe9\xff"
      ? slice as (this: Uint8Array, start: number, end: number) => string
      : null;
  } catch {
    return null;
  }
})();

/** `latin1` decodes natively, in one call (else a head of ASCII only is better decoded by `TextDecoder`). */
export const NATIVE_LATIN1: boolean = LATIN1_SLICE !== null;

/**
 * Bytes `buf[start,end)` as a string, one char per byte (ISO-8859-1). Not `TextDecoder("latin1")`:
 * the Encoding Standard maps that label to windows-1252, which rewrites 0x80–0x9F.
 */
export function latin1(buf: Uint8Array, start: number, end: number): string {
  if (end <= start) return "";
  if (LATIN1_SLICE !== null) return LATIN1_SLICE.call(buf, start, end);
  if (end - start <= APPLY_MAX_BYTES) {
    return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  }
  let out = "";
  for (let s = start; s < end; s += APPLY_MAX_BYTES) {
    const e = Math.min(end, s + APPLY_MAX_BYTES);
    out += String.fromCharCode.apply(null, buf.subarray(s, e) as unknown as number[]);
  }
  return out;
}

/** Whether every char of `s` is a tchar (and `s` is non-empty). */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (CLASS[c] & C_TOKEN) === 0) return false;
  }
  return true;
}

/**
 * Whether `s` is a valid `uri-host [ ":" port ]` (RFC 3986 §3.2.2, RFC 9110 §7.2): a non-empty reg-name
 * (which covers IPv4) with well-formed `%HH` escapes, or an IP-literal `[…]` of hex digits, `:` and `.`
 * (an IPv6 address, possibly with an embedded IPv4 tail; IPvFuture is refused); then optionally `:`
 * and 1–5 digits not above 65535. No userinfo, no empty host, no empty port.
 */
export function isValidHost(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  let i = 0;
  if (s.charCodeAt(0) === 0x5b) {
    // '[' IPv6 ']'; at most 45 chars inside ("ffff:…:255.255.255.255").
    const close = s.indexOf("]");
    if (close < 3 || close > 46) return false;
    let colons = 0;
    for (let k = 1; k < close; k++) {
      const c = s.charCodeAt(k);
      if (c === COLON) colons++;
      else if (c !== 0x2e && (c > 0xff || (CLASS[c] & C_HEX) === 0)) return false;
    }
    if (colons < 2) return false;
    i = close + 1;
  } else {
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === COLON) break;
      if (c > 0xff || (CLASS[c] & C_REGNAME) === 0) return false;
      if (c === 0x25) {
        // pct-encoded needs exactly two hex digits.
        if (i + 2 >= n) return false;
        const h1 = s.charCodeAt(i + 1);
        const h2 = s.charCodeAt(i + 2);
        if (h1 > 0xff || h2 > 0xff || HEX_VALUE[h1] < 0 || HEX_VALUE[h2] < 0) return false;
        i += 3;
        continue;
      }
      i++;
    }
    if (i === 0) return false;
  }
  if (i === n) return true;
  if (s.charCodeAt(i) !== COLON) return false;
  const digits = n - i - 1;
  if (digits < 1 || digits > 5) return false;
  let port = 0;
  for (let k = i + 1; k < n; k++) {
    const c = s.charCodeAt(k);
    if (c < 0x30 || c > 0x39) return false;
    port = port * 10 + (c - 0x30);
  }
  return port <= 65535;
}
