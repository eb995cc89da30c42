/**
 * Text helpers shared by the CLI tables and the `top` renderer: durations (parse and print), byte and
 * rate units, column alignment and truncation to a width.
 *
 * Pure: strings and numbers in, strings out; no Deno APIs.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `30s`, `10m`, `2h`, `1d`, `500ms` (or a bare number of seconds) into ms; null if malformed. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) return null;
  return Number(m[1]) * UNIT_MS[m[2] ?? "s"];
}

/** A compact duration: `45s`, `9m12s`, `3h05m`, `2d04h`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/** Bytes with a binary unit: `512B`, `1.5K`, `20.0M`, `3.1G`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)}B`;
  const units = ["K", "M", "G", "T"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)}${units[i]}`;
}

/** A rate with one decimal below 100 and none above (`4.5`, `1234`). */
export function formatRate(n: number): string {
  return n < 100 ? n.toFixed(1) : String(Math.round(n));
}

/** Megabytes (10^6) per second, two decimals. */
export function formatMBps(bytesPerSec: number): string {
  return (bytesPerSec / 1e6).toFixed(2);
}

/** Cuts `s` to at most `width` characters, marking a cut with `…`. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return "";
  if (s.length <= width) return s;
  return width === 1 ? "…" : s.slice(0, width - 1) + "…";
}

/** Pads (or cuts) to exactly `width` characters. */
export function fit(s: string, width: number, align: "left" | "right" = "left"): string {
  const t = truncate(s, width);
  return align === "left" ? t.padEnd(width) : t.padStart(width);
}

export interface Column<T> {
  title: string;
  align?: "left" | "right";
  value: (row: T) => string;
}

/** An aligned plain-text table: header line then one line per row, columns two spaces apart. */
export function table<T>(columns: readonly Column<T>[], rows: readonly T[]): string[] {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i].length)));
  const line = (vals: string[]) =>
    vals.map((v, i) => (columns[i].align === "right" ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join(
      "  ",
    )
      .trimEnd();
  return [line(columns.map((c) => c.title)), ...cells.map(line)];
}
