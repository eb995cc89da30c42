/**
 * Request path → safe relative path inside the document root, or a refusal.
 *
 * Pure: no Deno APIs, never throws on input, never touches the file system. Symlink confinement is
 * the responder's job (it needs `realPath`); this module guarantees only that the segments it returns
 * never contain `..`, `.`, `/`, `\`, NUL or control characters, so joining them under the root can
 * only name something below it.
 */

/** What the resolver needs from the configuration. */
export interface ResolveOptions {
  /** `hide`: any dot segment is a 404 (except a leading `.well-known`); `allow`: served. */
  dotfiles: "hide" | "allow";
}

/** A path that is safe to join under the document root. */
export interface Resolved {
  ok: true;
  /** Decoded, normalised segments; never empty strings, `.`, `..`, or containing `/`, `\`, NUL. */
  segments: string[];
  /** `segments.join("/")`; `""` for the root itself. */
  relative: string;
  /** The request named a directory (`/a/`, `/a/.`): a file there is a 404, a directory is served. */
  trailingSlash: boolean;
  /** The raw query including its `?`, or `""`; kept for redirects. */
  query: string;
}

/** A request path we refuse: 400 for malformed, 404 for forbidden (never revealing why). */
export interface Refused {
  ok: false;
  refuse: 400 | 404;
}

export type Resolution = Resolved | Refused;

/**
 * Longest decoded segment in UTF-8 bytes (Linux NAME_MAX). Longer names cannot exist, so they are a
 * 404 here instead of an ENAMETOOLONG that would otherwise surface as a 500.
 */
export const MAX_SEGMENT_BYTES = 255;

const BAD_REQUEST: Refused = Object.freeze({ ok: false, refuse: 400 }) as Refused;
const NOT_FOUND: Refused = Object.freeze({ ok: false, refuse: 404 }) as Refused;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/**
 * Percent-decodes one raw segment exactly once. Returns null for a malformed escape, invalid UTF-8,
 * or a raw character outside visible ASCII (the parser should have refused those already).
 */
function decodeSegment(raw: string): string | null {
  let hasEscape = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return null;
    if (c === 0x25) hasEscape = true;
  }
  if (!hasEscape) return raw;
  const bytes = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c !== 0x25) {
      bytes[n++] = c;
      continue;
    }
    if (i + 2 >= raw.length) return null;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    bytes[n++] = (hi << 4) | lo;
    i += 2;
  }
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    return null;
  }
}

/** Characters a decoded segment may never hold: separators, NUL and other controls. */
function hasForbiddenChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x2f || c === 0x5c) return true;
  }
  return false;
}

/**
 * Resolves `head.path` (origin form, still percent-encoded, may carry `?query`).
 *
 * Splitting happens before decoding, so `%2f` can never create a separator; decoding happens once,
 * so `%252e` stays the literal name `%2e`. Climbing above the root is a 404, not a 400: we do not
 * tell a prober which of its guesses hit the boundary.
 */
export function resolvePath(path: string, opts: ResolveOptions): Resolution {
  if (path.length === 0 || path.charCodeAt(0) !== 0x2f) return BAD_REQUEST;
  const q = path.indexOf("?");
  const rawPath = q < 0 ? path : path.slice(0, q);
  const query = q < 0 ? "" : path.slice(q);
  if (rawPath.includes("#")) return BAD_REQUEST;
  const raw = rawPath.split("/");
  const segments: string[] = [];
  let notFound = false;
  // Whether the path, once decoded, ends by naming a directory (`/a/`, `/a/.`, `/a/%2e`, `/a/b/..`).
  // Judged on decoded segments so `%2e` and `.` mean the same thing here as they do for resolution.
  let trailingSlash = true;
  // raw[0] is the empty string before the leading slash.
  for (let i = 1; i < raw.length; i++) {
    const part = raw[i];
    trailingSlash = true;
    if (part === "") continue;
    const seg = decodeSegment(part);
    if (seg === null || hasForbiddenChar(seg)) return BAD_REQUEST;
    if (seg === ".") continue;
    if (seg === "..") {
      if (segments.length === 0) notFound = true;
      else segments.pop();
      continue;
    }
    trailingSlash = false;
    if (seg.length > MAX_SEGMENT_BYTES / 3 && utf8Encoder.encode(seg).length > MAX_SEGMENT_BYTES) {
      notFound = true; // cannot exist; answer as not found once the whole path is known to be well formed
      continue;
    }
    segments.push(seg);
  }
  if (notFound) return NOT_FOUND;
  if (opts.dotfiles === "hide") {
    for (let i = 0; i < segments.length; i++) {
      if (segments[i].charCodeAt(0) === 0x2e && !(i === 0 && segments[i] === ".well-known")) return NOT_FOUND;
    }
  }
  return { ok: true, segments, relative: segments.join("/"), trailingSlash, query };
}

/**
 * The canonical URL path of `segments`, each segment percent-encoded (for `Location` and listing
 * links). It always starts with exactly one `/`, so it can never be read as `//host`.
 */
export function encodePath(segments: readonly string[], trailingSlash: boolean): string {
  if (segments.length === 0) return "/";
  let s = "";
  for (const seg of segments) s += "/" + encodeURIComponent(seg);
  return trailingSlash ? s + "/" : s;
}
