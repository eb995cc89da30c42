/**
 * Validators and conditional requests (RFC 9110 §8.8, §13): the ETag and Last-Modified we emit, the
 * HTTP-date parser, entity-tag list parsing, and the §13.2.2 evaluation order.
 *
 * Pure; no Deno APIs; never throws on input. An unparsable date is ignored (as the RFC requires),
 * never an error.
 */

/** Strong ETag from size and mtime: no hashing, so it costs nothing per file. Sidecars add their coding. */
export function makeEtag(size: number, mtimeMs: number, encoding: string | null = null): string {
  const base = `${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}`;
  return encoding === null ? `"${base}"` : `"${base}-${encoding}"`;
}

/** Last-Modified has one-second precision; comparisons use this truncated value. */
export function truncateToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), which is exactly what `toUTCString` produces. */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const IMF_FIXDATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/;
const RFC850 =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d\d)-([A-Za-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) GMT$/;
const ASCTIME = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Za-z]{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})$/;

function toMs(year: number, mon: string, day: number, h: number, m: number, s: number): number {
  const month = MONTHS.indexOf(mon.toLowerCase());
  if (month < 0 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60) return NaN;
  const ms = Date.UTC(year, month, day, h, m, s);
  // Reject dates that roll over (31 Feb) instead of silently meaning 3 March.
  return new Date(ms).getUTCDate() === day ? ms : NaN;
}

/** Parses the three HTTP-date forms recipients must accept (RFC 9110 §5.6.7); NaN when invalid. */
export function parseHttpDate(s: string): number {
  let m = IMF_FIXDATE.exec(s);
  if (m !== null) return toMs(Number(m[3]), m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  m = RFC850.exec(s);
  if (m !== null) {
    // Two-digit years: §5.6.7 says a date more than 50 years ahead means the previous century.
    const yy = Number(m[3]);
    const year = yy + 2000 > new Date().getUTCFullYear() + 50 ? 1900 + yy : 2000 + yy;
    return toMs(year, m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  }
  m = ASCTIME.exec(s);
  if (m !== null) {
    return toMs(Number(m[6]), m[1], Number(m[2].trim()), Number(m[3]), Number(m[4]), Number(m[5]));
  }
  return NaN;
}

/** A parsed `If-Match` / `If-None-Match` value: `*`, a list of tags, or null when malformed. */
export type EtagList = "*" | ReadonlyArray<{ weak: boolean; tag: string }> | null;

/**
 * Parses `#entity-tag` or `*`. Quoted tags may contain commas, so this scans instead of splitting.
 * A malformed list is null: for If-None-Match it matches nothing; for If-Match it matches nothing
 * too, so the precondition fails (412) rather than being skipped.
 */
export function parseEtagList(value: string): EtagList {
  const v = value.trim();
  if (v === "*") return "*";
  const out: { weak: boolean; tag: string }[] = [];
  let i = 0;
  const n = v.length;
  for (;;) {
    while (i < n && (v[i] === " " || v[i] === "\t" || v[i] === ",")) i++;
    if (i >= n) break;
    let weak = false;
    if (v[i] === "W" && v[i + 1] === "/") {
      weak = true;
      i += 2;
    }
    if (v[i] !== '"') return null;
    const end = v.indexOf('"', i + 1);
    if (end < 0) return null;
    const tag = v.slice(i, end + 1);
    for (let k = 1; k < tag.length - 1; k++) {
      const c = tag.charCodeAt(k);
      if (c < 0x21 || c === 0x7f) return null;
    }
    out.push({ weak, tag });
    i = end + 1;
    while (i < n && (v[i] === " " || v[i] === "\t")) i++;
    if (i < n && v[i] !== ",") return null;
  }
  return out.length === 0 ? null : out;
}

/** What the validators of the selected representation are. `etag` is always strong (ours). */
export interface Validators {
  etag: string;
  /** Last-Modified in ms, already truncated to the second. */
  lastModifiedMs: number;
}

/** The conditional headers of a request, raw (undefined when absent). */
export interface Conditionals {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
  ifModifiedSince?: string | undefined;
  ifUnmodifiedSince?: string | undefined;
}

/** `"ok"` to proceed, 304 Not Modified, or 412 Precondition Failed. */
export type PreconditionResult = "ok" | 304 | 412;

/**
 * RFC 9110 §13.2.2 for GET and HEAD of an existing file: If-Match, else If-Unmodified-Since (fail →
 * 412); then If-None-Match (weak comparison; match → 304), else If-Modified-Since (→ 304).
 */
export function evaluatePreconditions(c: Conditionals, v: Validators): PreconditionResult {
  if (c.ifMatch !== undefined) {
    const list = parseEtagList(c.ifMatch);
    // Strong comparison (§8.8.3.2): weak tags never match.
    if (list !== "*" && (list === null || !list.some((e) => !e.weak && e.tag === v.etag))) return 412;
  } else if (c.ifUnmodifiedSince !== undefined) {
    const date = parseHttpDate(c.ifUnmodifiedSince);
    if (!Number.isNaN(date) && v.lastModifiedMs > date) return 412;
  }
  if (c.ifNoneMatch !== undefined) {
    const list = parseEtagList(c.ifNoneMatch);
    if (list === "*" || (list !== null && list.some((e) => e.tag === v.etag))) return 304;
    if (list !== null) return "ok"; // §13.1.3: If-Modified-Since is ignored when If-None-Match is present
  }
  if (c.ifModifiedSince !== undefined && c.ifNoneMatch === undefined) {
    const date = parseHttpDate(c.ifModifiedSince);
    if (!Number.isNaN(date) && v.lastModifiedMs <= date) return 304;
  }
  return "ok";
}

/**
 * `If-Range` (RFC 9110 §13.1.5): ranges apply only if the client's validator still matches, by strong
 * comparison of an ETag or exact equality of a Last-Modified date. Anything else: whole file.
 */
export function ifRangeAllows(ifRange: string, v: Validators): boolean {
  const s = ifRange.trim();
  if (s.startsWith('"')) return s === v.etag;
  if (s.startsWith("W/")) return false;
  const date = parseHttpDate(s);
  return !Number.isNaN(date) && date === v.lastModifiedMs;
}
