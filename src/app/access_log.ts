/**
 * The access log: one line per response, in Combined Log Format (as Apache and nginx write it) or as one
 * JSON object (`ACCESS_LOG_FORMAT=json`), so existing log tools (GoAccess, jq, log shippers) read it.
 * Formatted by pure functions and written asynchronously in batches, so a request never waits for the
 * disk and a burst costs one `write` per 64 KiB, not one per line.
 *
 * Must never: block or slow the request path (lines are dropped and counted once the writer falls
 * `maxPendingBytes` behind, so memory stays bounded however slow the disk), let a client forge or split
 * log lines (every peer-controlled field is escaped, nginx style), throw into a caller because the
 * disk failed (the lines a failed write did not finish are counted as dropped), drop silently (one error
 * line when dropping starts, one when lines are written again, with the count), or glue a line onto the
 * fragment a failed write left (the next write then starts with a newline).
 */

import type { AccessEntry } from "../stats/access_entry.ts";
import { errorMessage } from "../core/errors.ts";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const HEX = "0123456789ABCDEF";

const two = (n: number): string => (n < 10 ? "0" : "") + n;

/** `[10/Oct/2000:13:55:36 +0000]`, always UTC so lines from any host sort and compare. */
export function formatClfTime(wallMs: number): string {
  const d = new Date(wallMs);
  return `[${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000]`;
}

/**
 * Formats the time once per second: every line of a busy second shares one string. A per-instance
 * cache (the `AccessLog` owns one), never module state.
 */
export class ClfTimeCache {
  #second = Number.NaN;
  #text = "";
  format(wallMs: number): string {
    const second = Math.floor(wallMs / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#text = formatClfTime(wallMs);
    }
    return this.#text;
  }
}

/**
 * Fields made only of printable ASCII other than `"` and `\` are written as they are (the common case),
 * in both line formats.
 */
const SAFE_FIELD = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function hexByte(b: number): string {
  return "\\x" + HEX[b >> 4] + HEX[b & 15];
}

/**
 * Escapes a peer-controlled field against log injection, as nginx does: `"` → `\"`, `\` → `\\`, control
 * bytes and bytes ≥ 0x7f → `\xNN`; "" → "-". Header bytes usually arrive decoded as Latin-1 (one char
 * per byte), so a char ≤ 0xff is taken as that byte; a char above is written as its UTF-8 bytes (a lone
 * surrogate as U+FFFD's). The output is pure printable ASCII: one line, one field.
 */
export function escapeLogField(s: string): string {
  if (s === "") return "-";
  if (SAFE_FIELD.test(s)) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c >= 0x20 && c < 0x7f) out += s[i];
    else if (c <= 0xff) out += hexByte(c);
    else {
      let cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++; // the low surrogate was consumed with the high one
      else if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
      if (cp < 0x800) out += hexByte(0xc0 | (cp >> 6)) + hexByte(0x80 | (cp & 63));
      else if (cp < 0x10000) {
        out += hexByte(0xe0 | (cp >> 12)) + hexByte(0x80 | ((cp >> 6) & 63)) + hexByte(0x80 | (cp & 63));
      } else {
        out += hexByte(0xf0 | (cp >> 18)) + hexByte(0x80 | ((cp >> 12) & 63)) +
          hexByte(0x80 | ((cp >> 6) & 63)) + hexByte(0x80 | (cp & 63));
      }
    }
  }
  return out;
}

/**
 * One Combined Log Format line, without the trailing newline:
 * `remote - - [time] "request line" status bytes "referer" "user agent"`. Pure; `times` only caches.
 */
export function formatCombined(e: AccessEntry, times?: ClfTimeCache): string {
  const time = times !== undefined ? times.format(e.wallMs) : formatClfTime(e.wallMs);
  return `${escapeLogField(e.remote)} - - ${time} "${
    escapeLogField(e.requestLine)
  }" ${e.status} ${e.bytes} ` +
    `"${escapeLogField(e.referer)}" "${escapeLogField(e.userAgent)}"`;
}

/** `2026-12-04T13:55:36.123Z`: ISO 8601 in UTC with milliseconds, which sorts as text. */
export function formatIsoTime(wallMs: number): string {
  return new Date(wallMs).toISOString();
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Header bytes arrive as Latin-1 (one char per byte); a value whose bytes are valid UTF-8 is given back
 * as the text the client meant, anything else keeps one char per byte.
 */
function asUnicode(s: string): string {
  let high = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return s; // already Unicode text
    if (c >= 0x80) high = true;
  }
  if (!high) return s;
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  try {
    return utf8.decode(bytes);
  } catch {
    return s;
  }
}

/**
 * A JSON string literal of pure printable ASCII: quotes, backslashes and control characters escaped, and
 * everything outside ASCII written as `\uXXXX` (lone surrogates as U+FFFD), so a value can never end
 * the line, the string or the object, and the line is valid UTF-8 whatever the client sent.
 */
export function jsonString(s: string): string {
  // Printable ASCII without `"` and `\` needs no escaping in JSON either.
  if (SAFE_FIELD.test(s)) return `"${s}"`;
  const text = asUnicode(s);
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c >= 0x20 && c < 0x7f) out += text[i];
    else {
      if (c >= 0xd800 && c <= 0xdbff) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          out += "\\u" + c.toString(16).padStart(4, "0") + "\\u" + next.toString(16).padStart(4, "0");
          i++;
          continue;
        }
        c = 0xfffd;
      } else if (c >= 0xdc00 && c <= 0xdfff) c = 0xfffd;
      out += "\\u" + c.toString(16).padStart(4, "0");
    }
  }
  return out + '"';
}

/** A request field of a request that never parsed: `-`, as Combined writes it (GoAccess needs one). */
const orDash = (s: string): string => s === "" ? "-" : s;

/**
 * One JSON line, without the trailing newline: `{"time", "remote", "method", "target", "protocol",
 * "status", "bytes", "duration_ms", "host", "referer", "user_agent", "conn", "worker"}`. Numbers are
 * numbers; absent headers are ""; method, target and protocol of a request that never parsed are "-".
 * Pure.
 */
export function formatJson(e: AccessEntry, worker: number, connId = e.connId): string {
  return `{"time":"${formatIsoTime(e.wallMs)}","remote":${jsonString(e.remote)},` +
    `"method":${jsonString(orDash(e.method))},"target":${jsonString(orDash(e.target))},` +
    `"protocol":${jsonString(orDash(e.protocol))},"status":${e.status},"bytes":${e.bytes},` +
    `"duration_ms":${e.durationMs},"host":${jsonString(e.host)},"referer":${jsonString(e.referer)},` +
    `"user_agent":${jsonString(e.userAgent)},"conn":${connId},"worker":${worker}}`;
}

/** Line formats (`ACCESS_LOG_FORMAT`). */
export type AccessLogFormat = "combined" | "json";

/** Where batches go: a file, stdout, or a test double. */
export interface LogWriter {
  /** Writes some prefix of `p`; resolves with how many bytes were taken. */
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Limits of the batching writer. */
export interface AccessLogOptions {
  /** A batch this large is written at once instead of waiting for the timer. */
  flushBytes: number;
  /** A non-empty batch is written at most this long after its first line. */
  flushIntervalMs: number;
  /** Bytes formatted but not yet written (batch + in flight) above which new lines are dropped. */
  maxPendingBytes: number;
  /** `combined` or `json`. */
  format: AccessLogFormat;
  /** This worker's index (0 without worker threads), written in JSON lines. */
  worker: number;
  /**
   * Maps a connection's id on this worker to the id the admin channel shows (with worker threads
   * the supervisor numbers connections server-wide); identity by default.
   */
  connIdOf: (localId: number) => number;
}

export const DEFAULT_ACCESS_LOG_OPTIONS: Readonly<AccessLogOptions> = {
  flushBytes: 64 * 1024,
  flushIntervalMs: 250,
  maxPendingBytes: 4 * 1024 * 1024,
  format: "combined",
  worker: 0,
  connIdOf: (id) => id,
};

/**
 * A dropping episode ends at the first successful write this long after the last dropped line, so a
 * writer that keeps falling behind gives one start line and one end line, not one pair per batch.
 */
export const DROP_EPISODE_QUIET_MS = 1_000;

/** Where the access log reports its losses. */
export interface AccessLogReports {
  /** Counter of dropped lines, raised as they are dropped (the server's `Stats`). */
  counters?: { accessLogDropped: number };
  /** One line when dropping starts and one when it ends (default console.error). */
  logError?: (message: string) => void;
  /** Milliseconds on a monotonic scale, for the end of an episode (default Date.now). */
  nowMs?: () => number;
}

const NEWLINE = 0x0a;

function countNewlines(bytes: Uint8Array): number {
  let n = 0;
  for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/** Opens (or reopens) the writer; for a path, in append mode, created with mode 0o640. */
type Opener = () => Promise<LogWriter>;

const STDOUT_TARGET = "-";
const LOG_FILE_MODE = 0o640;

async function openTarget(target: string): Promise<LogWriter> {
  if (target === STDOUT_TARGET) {
    // stdout belongs to the process: writing is ours, closing is not.
    return { write: (p) => Deno.stdout.write(p), close: () => {} };
  }
  return await Deno.open(target, { append: true, create: true, mode: LOG_FILE_MODE });
}

/**
 * The batching writer. `log` only formats and appends to memory; one timer (armed only while a batch
 * waits) or a full batch starts a write; writes are strictly sequential, so lines keep their order.
 */
export class AccessLog {
  #opener: Opener;
  #writer: LogWriter | null;
  #opts: AccessLogOptions;
  #times = new ClfTimeCache();
  #encoder = new TextEncoder();
  #batch: string[] = [];
  #batchBytes = 0;
  #inFlightBytes = 0;
  #dropped = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Tail of the sequential chain of writes and reopens; never rejects. */
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  #reports: AccessLogReports;
  #logError: (message: string) => void;
  #nowMs: () => number;
  /** Dropping episode: whether one is in progress, its lines so far, when the last line was dropped. */
  #dropping = false;
  #episodeDropped = 0;
  #lastDropMs = 0;
  /** The file ends with a fragment of a line (a write failed midway): the next write starts a line. */
  #torn = false;

  /** Opens `target` (a path, or `-` for stdout). Throws if the file cannot be opened. */
  static async open(
    target: string,
    opts: Partial<AccessLogOptions> = {},
    reports: AccessLogReports = {},
  ): Promise<AccessLog> {
    const opener = () => openTarget(target);
    return new AccessLog(await opener(), opener, opts, reports);
  }

  /** Wraps an already-open writer; `reopen` calls `opener` again. For tests and custom sinks. */
  constructor(
    writer: LogWriter,
    opener: Opener,
    opts: Partial<AccessLogOptions> = {},
    reports: AccessLogReports = {},
  ) {
    this.#writer = writer;
    this.#opener = opener;
    this.#opts = { ...DEFAULT_ACCESS_LOG_OPTIONS, ...opts };
    this.#reports = reports;
    this.#logError = reports.logError ?? ((m: string) => console.error(m));
    this.#nowMs = reports.nowMs ?? Date.now;
  }

  /** Lines not written: over the pending bound, after close, or lost to a failed write. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Counts `lines` dropped for `why`; the first of an episode says so on the error log. */
  #drop(lines: number, why: string): void {
    this.#dropped += lines;
    if (this.#reports.counters !== undefined) this.#reports.counters.accessLogDropped += lines;
    this.#lastDropMs = this.#nowMs();
    this.#episodeDropped += lines;
    if (this.#dropping) return;
    this.#dropping = true;
    this.#logError(`access log: dropping lines (${why}); counted in stats as accessLogDropped`);
  }

  /** A write succeeded: ends a dropping episode once no line was dropped for a quiet period. */
  #wrote(): void {
    if (!this.#dropping || this.#nowMs() - this.#lastDropMs < DROP_EPISODE_QUIET_MS) return;
    this.#logError(`access log: writing again; ${this.#episodeDropped} lines dropped meanwhile`);
    this.#dropping = false;
    this.#episodeDropped = 0;
  }

  /** Switches the line format (a reload changed ACCESS_LOG_FORMAT); lines logged from now on use it. */
  setFormat(format: AccessLogFormat): void {
    this.#opts = { ...this.#opts, format };
  }

  /** Queues one line. Never blocks, never throws. */
  log(e: AccessEntry): void {
    if (this.#closed) {
      this.#drop(1, "the log is closed");
      return;
    }
    // Every field is escaped to ASCII, so string length is byte length.
    const o = this.#opts;
    const line =
      (o.format === "json" ? formatJson(e, o.worker, o.connIdOf(e.connId)) : formatCombined(e, this.#times)) +
      "\n";
    if (this.#batchBytes + this.#inFlightBytes + line.length > this.#opts.maxPendingBytes) {
      // (The reason is read only when an episode starts: no string per dropped line under overload.)
      this.#drop(1, this.#dropping ? "" : `the writer is ${this.#opts.maxPendingBytes} bytes behind`);
      return;
    }
    this.#batch.push(line);
    this.#batchBytes += line.length;
    if (this.#batchBytes >= this.#opts.flushBytes) this.#startWrite();
    else if (this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#startWrite();
      }, this.#opts.flushIntervalMs);
    }
  }

  /** Resolves once every line logged before the call is written (or counted as dropped). */
  flush(): Promise<void> {
    this.#startWrite();
    return this.#chain;
  }

  /** Flushes, stops the timer and closes the file. Later lines are counted as dropped. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#chain;
    await this.flush();
    this.#closed = true;
    this.#clearTimer();
    this.#writer?.close();
    this.#writer = null;
  }

  /**
   * For log rotation (SIGHUP): after the lines already queued are written, opens the same target again
   * and closes the old file. If the open fails, the old file stays in use and the error is thrown.
   */
  reopen(): Promise<void> {
    this.#startWrite();
    const done = this.#chain.then(async () => {
      if (this.#closed) return;
      this.#swap(await this.#opener());
    });
    this.#chain = done.catch(() => {});
    return done;
  }

  /**
   * The first half of a reopen, for a reload that must fail whole or not at all: opens the target again
   * now (throws, changing nothing, if it cannot) and returns the step that puts the new file in use
   * after the lines already queued, which cannot fail. The caller must run the step or `discard` it.
   */
  async prepareReopen(): Promise<{ commit(): void; discard(): void }> {
    const fresh = await this.#opener();
    let used = false;
    return {
      commit: () => {
        if (used) return;
        used = true;
        this.#startWrite();
        this.#chain = this.#chain.then(() => {
          if (this.#closed) fresh.close();
          else this.#swap(fresh);
        });
      },
      discard: () => {
        if (used) return;
        used = true;
        fresh.close();
      },
    };
  }

  #swap(fresh: LogWriter): void {
    const old = this.#writer;
    this.#writer = fresh;
    // A fresh file starts on a line of its own; a fragment at the end of the old one stays there.
    this.#torn = false;
    old?.close();
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  /** Moves the batch onto the write chain (no-op when empty). */
  #startWrite(): void {
    this.#clearTimer();
    if (this.#batch.length === 0) return;
    const text = this.#batch.join("");
    this.#batch = [];
    this.#batchBytes = 0;
    this.#inFlightBytes += text.length;
    this.#chain = this.#chain.then(async () => {
      // After a failed write left half a line, this batch first ends that line.
      const lead = this.#torn ? 1 : 0;
      const bytes = this.#encoder.encode(lead === 1 ? "\n" + text : text);
      let off = 0;
      try {
        if (this.#writer === null) throw new Error("access log is closed");
        while (off < bytes.length) off += await this.#writer.write(bytes.subarray(off));
        this.#torn = false;
        this.#wrote();
      } catch (e) {
        // A full disk or a vanished file must not take the server down; the loss is counted instead:
        // every line whose newline was not written, the one cut midway included.
        if (off > 0) this.#torn = bytes[off - 1] !== NEWLINE;
        this.#drop(
          countNewlines(bytes.subarray(Math.max(off, lead))),
          `writing failed: ${errorMessage(e)}`,
        );
      } finally {
        this.#inFlightBytes -= text.length;
      }
    });
  }
}
