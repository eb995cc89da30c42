/**
 * Range requests (RFC 9110 §14): parsing `Range: bytes=…` against a file size, and laying out a
 * `multipart/byteranges` body with its exact length known before the first byte is sent.
 *
 * Pure; no Deno APIs; never throws on input. Hardened against amplification: more than `maxRanges`
 * ranges, overlapping ranges, or ranges adding up to more than the file answer 200 with the file once.
 */

/** An inclusive byte range, already clamped to the file. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * `none`: ignore the header and send 200 (absent, invalid syntax, other unit, or refused as abusive);
 * `unsatisfiable`: 416; `ranges`: 206 with these ranges in the order requested.
 */
export type RangeResult =
  | { kind: "none" }
  | { kind: "unsatisfiable" }
  | { kind: "ranges"; ranges: ByteRange[] };

const NONE: RangeResult = Object.freeze({ kind: "none" }) as RangeResult;
const UNSATISFIABLE: RangeResult = Object.freeze({ kind: "unsatisfiable" }) as RangeResult;

/** Digits only; `Number` of a long digit run is approximate but only ever compared against the size. */
const DIGITS = /^\d+$/;

/** Parses a Range header value for a representation of `size` bytes. */
export function parseRange(header: string, size: number, maxRanges: number): RangeResult {
  const eq = header.indexOf("=");
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== "bytes") return NONE;
  const specs = header.slice(eq + 1).split(",");
  const ranges: ByteRange[] = [];
  let count = 0;
  for (const raw of specs) {
    const spec = raw.trim();
    if (spec === "") continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    if (++count > maxRanges) return NONE;
    const dash = spec.indexOf("-");
    if (dash < 0) return NONE;
    const first = spec.slice(0, dash);
    const last = spec.slice(dash + 1);
    if (first === "") {
      if (!DIGITS.test(last)) return NONE;
      const suffix = Number(last);
      if (suffix > 0 && size > 0) ranges.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    if (!DIGITS.test(first) || (last !== "" && !DIGITS.test(last))) return NONE;
    const start = Number(first);
    const end = last === "" ? Infinity : Number(last);
    if (end < start) return NONE; // invalid syntax makes the whole header ignorable (§14.1.1)
    if (start >= size) continue; // unsatisfiable on its own; others may still be served
    ranges.push({ start, end: Math.min(end, size - 1) });
  }
  if (count === 0) return NONE;
  if (ranges.length === 0) return UNSATISFIABLE;
  if (ranges.length > 1 && !isModest(ranges, size)) return NONE;
  return { kind: "ranges", ranges };
}

/** No overlaps (in any order) and no more bytes than the file: a range request may not amplify. */
function isModest(ranges: readonly ByteRange[], size: number): boolean {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  let total = 0;
  for (let i = 0; i < sorted.length; i++) {
    total += sorted[i].end - sorted[i].start + 1;
    if (i > 0 && sorted[i].start <= sorted[i - 1].end) return false;
  }
  return total <= size;
}

/** `bytes a-b/size`. */
export function contentRange(r: ByteRange, size: number): string {
  return `bytes ${r.start}-${r.end}/${size}`;
}

/** One part of a multipart/byteranges body: its header bytes, then the file's bytes `start..end`. */
export interface MultipartPart {
  header: Uint8Array;
  start: number;
  end: number;
}

/** The full layout of a multipart/byteranges body; `length` is its exact Content-Length. */
export interface MultipartPlan {
  contentType: string;
  parts: MultipartPart[];
  trailer: Uint8Array;
  length: number;
}

const encoder = new TextEncoder();

/**
 * Lays out `ranges` as multipart/byteranges (RFC 9110 §14.6). `boundary` must be server-made (a
 * token not found in any part header; random hex is).
 */
export function planMultipart(
  ranges: readonly ByteRange[],
  size: number,
  partContentType: string,
  boundary: string,
): MultipartPlan {
  const parts: MultipartPart[] = [];
  let length = 0;
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i];
    const header = encoder.encode(
      `${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Type: ${partContentType}\r\n` +
        `Content-Range: ${contentRange(r, size)}\r\n\r\n`,
    );
    parts.push({ header, start: r.start, end: r.end });
    length += header.byteLength + (r.end - r.start + 1);
  }
  const trailer = encoder.encode(`\r\n--${boundary}--\r\n`);
  length += trailer.byteLength;
  return { contentType: `multipart/byteranges; boundary=${boundary}`, parts, trailer, length };
}
