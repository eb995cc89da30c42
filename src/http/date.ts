/**
 * HTTP dates (IMF-fixdate, RFC 9110 §5.6.7) and the per-second cached `Date:` header line that every
 * response carries. Formatting a date per response would cost more than the rest of a cache hit, so the
 * line is rebuilt only when the wall-clock second changes.
 *
 * Pure; no Deno APIs.
 */

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad2(n: number): string {
  return n < 10 ? "0" + n : String(n);
}

/** `Sun, 06 Nov 1994 08:49:37 GMT` for a wall-clock millisecond time. */
export function httpDate(wallMs: number): string {
  const d = new Date(wallMs);
  return `${DAYS[d.getUTCDay()]}, ${pad2(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${
    pad2(d.getUTCHours())
  }:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} GMT`;
}

const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;

/**
 * Parses an IMF-fixdate into wall-clock milliseconds, or returns NaN. Only the preferred format is
 * accepted: obsolete RFC 850 and asctime dates are treated as invalid, which for conditionals means
 * "ignore the header" (RFC 9110 §13.1.3), the safe reading.
 */
export function parseHttpDate(s: string): number {
  const m = IMF_FIXDATE.exec(s.trim());
  if (m === null) return NaN;
  const ms = Date.UTC(
    Number(m[4]),
    MONTHS.indexOf(m[3]),
    Number(m[2]),
    Number(m[5]),
    Number(m[6]),
    Number(m[7]),
  );
  const check = new Date(ms);
  if (check.getUTCDate() !== Number(m[2]) || Number(m[5]) > 23 || Number(m[6]) > 59 || Number(m[7]) > 60) {
    return NaN;
  }
  return ms;
}

const encoder = new TextEncoder();

/** The `Date: …\r\n` line as bytes, refreshed at most once per wall-clock second. */
export class DateLine {
  #second = -1;
  #bytes: Uint8Array = new Uint8Array(0);

  /** The line for `wallMs`; the same `Uint8Array` is returned until the second changes. */
  bytes(wallMs: number): Uint8Array {
    const second = Math.floor(wallMs / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#bytes = encoder.encode(`Date: ${httpDate(second * 1000)}\r\n`);
    }
    return this.#bytes;
  }
}
