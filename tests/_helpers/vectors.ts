/**
 * Golden request vectors: the reader of `tests/vectors/*.md` and the driver that runs one input
 * through `RequestParser` + `ChunkedDecoder` under any chunking and renders what happened as log lines.
 *
 * File format (llhttp-like, one case per `##` heading):
 *
 *     ## parser rejects CL with TE
 *     limits: maxHeaderBytes=64 maxHeaderCount=4 maxRequestLineBytes=32 maxTrailerBytes=16   (optional)
 *     ```http
 *     POST / HTTP/1.1
 *     Host: a
 *
 *     ```
 *     ```log
 *     head
 *     method POST
 *     ```
 *
 * The `http` block: every line gets CRLF appended, unless it ends in `\z`. Escapes: `\r` `\n` `\t` `\0`
 * `\s` (a space, for visible trailing spaces) `\\` `\xNN`; any other backslash or a non-ASCII char is
 * a reader error. Bytes after a head are the next request, or the head's body (Content-Length bytes,
 * or chunked framing run through `ChunkedDecoder`).
 *
 * The `log` block lists events in order; their number and kinds must match exactly:
 * - `head`, then any of: `method M`, `target T`, `form origin|absolute|asterisk`, `path P`,
 *   `version 1.0|1.1`, `host H`, `content-length N`, `chunked true|false`, `keep-alive true|false`,
 *   `expect-continue true|false`, `consumed N` (bytes of this head), `header name: value` (the value
 *   escaped like a body, without quotes). Field lines given are compared (trailing spaces ignored); if
 *   any `header` line is given the whole header list must match.
 * - `error CODE` or `error CODE at OFFSET` (the parser refused the head).
 * - `body "…"` with the body bytes escaped as above, then `body-done` (chunked end), `body-error CODE`,
 *   or `body-incomplete` (input ended inside the body).
 * - `incomplete N`: input ended N bytes into a head.
 * Prose between blocks is ignored.
 */

import assert from "node:assert/strict";
import { ChunkedDecoder } from "../../src/http/body.ts";
import type { RequestHead } from "../../src/http/head.ts";
import { type ParserLimits, RequestParser } from "../../src/http/parser.ts";

export interface VectorLimits extends ParserLimits {
  maxTrailerBytes: number;
}

export const DEFAULT_VECTOR_LIMITS: Readonly<VectorLimits> = {
  maxRequestLineBytes: 8192,
  maxHeaderBytes: 16384,
  maxHeaderCount: 100,
  maxTrailerBytes: 4096,
};

export interface Vector {
  /** `file:line` of the heading, for failure messages. */
  where: string;
  name: string;
  input: Uint8Array;
  limits: VectorLimits;
  /** The `log` block's lines. */
  expected: string[];
}

const HEAD_KEYS = new Set([
  "method",
  "target",
  "form",
  "path",
  "version",
  "host",
  "content-length",
  "chunked",
  "keep-alive",
  "expect-continue",
  "consumed",
  "header",
]);

/** Decodes one `http`-block line into bytes (CRLF appended unless it ends in `\z`). */
export function decodeLine(line: string): number[] {
  const out: number[] = [];
  let crlf = true;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c > 0x7e || (c < 0x20 && c !== 0x09)) throw new Error(`raw byte 0x${c.toString(16)}: use \\xNN`);
    if (c !== 0x5c) {
      out.push(c);
      continue;
    }
    const e = line[++i];
    if (e === "r") out.push(13);
    else if (e === "n") out.push(10);
    else if (e === "t") out.push(9);
    else if (e === "0") out.push(0);
    else if (e === "s") out.push(32);
    else if (e === "\\") out.push(0x5c);
    else if (e === "x") {
      const hex = line.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error(`bad \\x escape in ${JSON.stringify(line)}`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (e === "z" && i === line.length - 1) crlf = false;
    else throw new Error(`unknown escape \\${e} in ${JSON.stringify(line)}`);
  }
  if (crlf) out.push(13, 10);
  return out;
}

/** Parses a vector file; throws on malformed cases so a typo cannot silently drop a vector. */
export function parseVectors(text: string, file: string): Vector[] {
  const lines = text.split("\n");
  const out: Vector[] = [];
  let cur: {
    where: string;
    name: string;
    input: number[] | null;
    limits: VectorLimits;
    expected: string[] | null;
  } | null = null;
  const flush = () => {
    if (cur === null) return;
    if (cur.input === null || cur.expected === null || cur.expected.length === 0) {
      throw new Error(`${cur.where}: case "${cur.name}" needs an http block and a non-empty log block`);
    }
    checkExpected(cur.expected, cur.where);
    out.push({
      where: cur.where,
      name: cur.name,
      input: Uint8Array.from(cur.input),
      limits: cur.limits,
      expected: cur.expected,
    });
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "");
    if (line.startsWith("## ")) {
      flush();
      cur = {
        where: `${file}:${i + 1}`,
        name: line.slice(3).trim(),
        input: null,
        limits: { ...DEFAULT_VECTOR_LIMITS },
        expected: null,
      };
      continue;
    }
    if (cur === null) continue;
    if (line.startsWith("limits:")) {
      for (const kv of line.slice(7).trim().split(/\s+/)) {
        const [k, v] = kv.split("=");
        if (!(k in cur.limits) || !/^\d+$/.test(v ?? "")) {
          throw new Error(`${file}:${i + 1}: bad limit ${kv}`);
        }
        (cur.limits as unknown as Record<string, number>)[k] = Number(v);
      }
      continue;
    }
    if (line === "```http" || line === "```log") {
      const body: string[] = [];
      let j = i + 1;
      while (j < lines.length && lines[j].replace(/\r$/, "") !== "```") {
        body.push(lines[j++].replace(/\r$/, ""));
      }
      if (j === lines.length) throw new Error(`${file}:${i + 1}: unterminated block`);
      if (line === "```http") {
        if (cur.input !== null) throw new Error(`${file}:${i + 1}: second http block`);
        cur.input = body.flatMap((l) => decodeLine(l));
      } else {
        if (cur.expected !== null) throw new Error(`${file}:${i + 1}: second log block`);
        cur.expected = body.map((l) => l.trimEnd()).filter((l) => l !== "");
      }
      i = j;
    }
  }
  flush();
  return out;
}

function checkExpected(expected: string[], where: string): void {
  let inHead = false;
  for (const l of expected) {
    const key = l.split(" ")[0];
    if (isEventStart(l)) {
      inHead = key === "head";
      continue;
    }
    if (!inHead || !HEAD_KEYS.has(key)) throw new Error(`${where}: unexpected log line ${JSON.stringify(l)}`);
  }
}

function isEventStart(line: string): boolean {
  return line === "head" || line.startsWith("error ") || line.startsWith("body ") ||
    line === "body-done" || line.startsWith("body-error ") || line === "body-incomplete" ||
    line.startsWith("incomplete ");
}

/** Bytes as a quoted, escaped string (the `body "…"` notation). */
export function escapeBytes(bytes: ArrayLike<number>): string {
  let s = '"';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 13) s += "\\r";
    else if (b === 10) s += "\\n";
    else if (b === 9) s += "\\t";
    else if (b === 0x5c) s += "\\\\";
    else if (b === 0x22) s += '\\"';
    else if (b >= 0x20 && b <= 0x7e) s += String.fromCharCode(b);
    else s += "\\x" + b.toString(16).padStart(2, "0");
  }
  return s + '"';
}

/** A latin1 string with the `body` escapes but no quotes (header values in logs). */
export function escapeText(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) bytes.push(s.charCodeAt(i));
  return escapeBytes(bytes).slice(1, -1);
}

/** The full canonical rendering of a head (every key; see the format above). */
export function renderHead(head: RequestHead, consumed: number): string[] {
  const out = [
    "head",
    `method ${head.method}`,
    `target ${head.target}`,
    `form ${head.targetForm}`,
    `path ${head.path}`,
    `version ${head.version === 10 ? "1.0" : "1.1"}`,
    `host ${head.host}`.trimEnd(),
    `content-length ${head.contentLength}`,
    `chunked ${head.chunked}`,
    `keep-alive ${head.keepAlive}`,
    `expect-continue ${head.expectContinue}`,
    `consumed ${consumed}`,
  ];
  for (let i = 0; i < head.headers.length; i += 2) {
    out.push(`header ${head.headers[i]}: ${escapeText(head.headers[i + 1])}`.trimEnd());
  }
  return out;
}

/** Bytes of padding around every fed chunk: the parser must never look outside [start,end). */
const PAD = 3;

/**
 * Runs `input` cut at `cuts` (ascending offsets) through one parser and one decoder, as a connection
 * would (reset between pipelined requests), asserting the API contract on every step, and returns the
 * canonical log. Each piece is copied into a larger buffer of 0xFF bytes and fed as a [start,end) range.
 */
export function drive(input: Uint8Array, cuts: readonly number[], limits: VectorLimits): string[] {
  const parser = new RequestParser(limits);
  const decoder = new ChunkedDecoder({ maxTrailerBytes: limits.maxTrailerBytes });
  const out: string[] = [];
  let mode: "head" | "length" | "chunked" = "head";
  let headBytes = 0;
  let lengthLeft = 0;
  let body: number[] = [];
  const bounds = [0, ...cuts, input.length];
  for (let c = 0; c + 1 < bounds.length; c++) {
    const from = bounds[c];
    const to = bounds[c + 1];
    if (from === to) continue;
    const buf = new Uint8Array(to - from + 2 * PAD).fill(0xff);
    buf.set(input.subarray(from, to), PAD);
    let pos = PAD;
    const end = PAD + to - from;
    while (pos < end) {
      if (mode === "head") {
        const r = parser.feed(buf, pos, end);
        if (r.kind === "more") {
          headBytes += end - pos;
          pos = end;
          assert.equal(parser.bytesSeen, headBytes, "bytesSeen counts every byte fed to an open head");
        } else if (r.kind === "error") {
          assert.ok(
            r.offset >= 0 && r.offset <= headBytes + end - pos,
            `offset ${r.offset} within the input`,
          );
          assert.deepEqual(parser.feed(buf, pos, end), r, "an error is sticky until reset");
          out.push(`error ${r.code} at ${r.offset}`);
          return out;
        } else {
          assert.ok(r.consumed > 0 && r.consumed <= end - pos, "0 < consumed <= fed bytes");
          headBytes += r.consumed;
          assert.equal(parser.bytesSeen, headBytes);
          out.push(...renderHead(r.head, headBytes));
          pos += r.consumed;
          parser.reset();
          assert.equal(parser.bytesSeen, 0);
          headBytes = 0;
          body = [];
          if (r.head.chunked) {
            decoder.reset();
            mode = "chunked";
          } else if (r.head.contentLength > 0) {
            lengthLeft = r.head.contentLength;
            mode = "length";
          }
        }
      } else if (mode === "length") {
        const n = Math.min(lengthLeft, end - pos);
        for (let k = pos; k < pos + n; k++) body.push(buf[k]);
        pos += n;
        lengthLeft -= n;
        if (lengthLeft === 0) {
          out.push(`body ${escapeBytes(body)}`);
          mode = "head";
        }
      } else {
        const at = pos;
        const r = decoder.feed(buf, pos, end, (b, s, e) => {
          assert.ok(b === buf && s >= at && s < e && e <= end, "onData ranges lie inside the fed range");
          for (let k = s; k < e; k++) body.push(b[k]);
        });
        if (r.kind === "more") pos = end;
        else if (r.kind === "error") {
          out.push(`body ${escapeBytes(body)}`, `body-error ${r.code}`);
          return out;
        } else {
          assert.ok(r.consumed > 0 && r.consumed <= end - pos, "0 < consumed <= fed bytes");
          pos += r.consumed;
          out.push(`body ${escapeBytes(body)}`, "body-done");
          mode = "head";
        }
      }
    }
  }
  if (mode === "head" && parser.bytesSeen > 0) out.push(`incomplete ${parser.bytesSeen}`);
  if (mode !== "head") out.push(`body ${escapeBytes(body)}`, "body-incomplete");
  return out;
}

/** Splits log lines into events (an event-start line plus the field lines under it). */
function events(lines: readonly string[]): string[][] {
  const out: string[][] = [];
  for (const l of lines) {
    if (isEventStart(l) || out.length === 0) out.push([l]);
    else out[out.length - 1].push(l);
  }
  return out;
}

/**
 * Compares an actual canonical log with a case's expected (possibly partial) log; returns a
 * description of the first difference, or null when they agree.
 */
export function compareLog(actual: readonly string[], expected: readonly string[]): string | null {
  const a = events(actual);
  const e = events(expected);
  if (a.length !== e.length) return `expected ${e.length} events, got ${a.length}:\n${actual.join("\n")}`;
  for (let k = 0; k < e.length; k++) {
    const [ah, ...af] = a[k];
    const [eh, ...ef] = e[k];
    const headMatches = ah === eh ||
      (eh.startsWith("error ") && !eh.includes(" at ") && ah.startsWith(eh + " at "));
    if (!headMatches) return `event ${k}: expected "${eh}", got "${ah}"\n${actual.join("\n")}`;
    for (const f of ef) {
      if (f.startsWith("header ")) continue;
      if (!af.includes(f)) {
        const key = f.split(" ")[0];
        const got = af.find((x) => x.split(" ")[0] === key);
        return `event ${k}: expected "${f}", got "${got}"`;
      }
    }
    const eHeaders = ef.filter((f) => f.startsWith("header "));
    if (eHeaders.length > 0) {
      const aHeaders = af.filter((f) => f.startsWith("header "));
      if (aHeaders.join("\n") !== eHeaders.join("\n")) {
        return `event ${k}: headers differ:\n${aHeaders.join("\n")}\nexpected\n${eHeaders.join("\n")}`;
      }
    }
  }
  return null;
}
