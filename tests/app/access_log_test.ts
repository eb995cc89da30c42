/**
 * Tests for the access log: Combined Log Format and its escaping (pure), batching, the pending-bytes
 * bound and failure accounting (with an in-memory writer), and a real file written, closed, reopened
 * and read back.
 */

import assert from "node:assert/strict";
import type { AccessEntry } from "../../src/stats/access_entry.ts";
import fc from "fast-check";
import {
  AccessLog,
  ClfTimeCache,
  escapeLogField,
  formatClfTime,
  formatCombined,
  formatJson,
  jsonString,
  type LogWriter,
} from "../../src/app/access_log.ts";

const T0 = Date.UTC(2000, 9, 10, 13, 55, 36); // 10 Oct 2000 13:55:36 UTC, Apache's documentation example

function entry(over: Partial<AccessEntry> = {}): AccessEntry {
  return {
    remote: "127.0.0.1",
    wallMs: T0,
    requestLine: "GET /apache_pb.gif HTTP/1.0",
    status: 200,
    bytes: 2326,
    referer: "http://www.example.com/start.html",
    userAgent: "Mozilla/4.08 [en] (Win98; I ;Nav)",
    method: "GET",
    target: "/apache_pb.gif",
    protocol: "HTTP/1.0",
    host: "www.example.com",
    durationMs: 12,
    connId: 42,
    ...over,
  };
}

/** An in-memory writer whose writes complete only when the test says so (or at once when `auto`). */
class MemoryWriter implements LogWriter {
  chunks: Uint8Array[] = [];
  closed = false;
  auto = true;
  failNext = false;
  #waiting: (() => void)[] = [];
  #onWrite: (() => void) | null = null;

  write(p: Uint8Array): Promise<number> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error("disk full"));
    }
    // Take at most 1000 bytes per call, so the writer's partial-write loop is exercised.
    const n = Math.min(p.length, 1000);
    this.chunks.push(p.slice(0, n));
    this.#onWrite?.();
    if (this.auto) return Promise.resolve(n);
    return new Promise((resolve) => this.#waiting.push(() => resolve(n)));
  }
  close(): void {
    this.closed = true;
  }
  /** Completes every write waiting so far. */
  release(): void {
    this.auto = true;
    for (const w of this.#waiting.splice(0)) w();
  }
  /** Resolves at the next write call. */
  nextWrite(): Promise<void> {
    return new Promise((resolve) => (this.#onWrite = () => resolve()));
  }
  text(): string {
    return this.chunks.map((c) => new TextDecoder().decode(c)).join("");
  }
}

// --- formatting ----------------------------------------------------------------------------------

Deno.test("formatCombined writes Apache's documented combined example exactly", () => {
  assert.equal(
    formatCombined(entry()),
    '127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /apache_pb.gif HTTP/1.0" 200 2326 ' +
      '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
  );
});

Deno.test("formatCombined writes - for an empty referer, user agent, request line and remote", () => {
  assert.equal(
    formatCombined(entry({ remote: "", requestLine: "", referer: "", userAgent: "", status: 400, bytes: 0 })),
    '- - - [10/Oct/2000:13:55:36 +0000] "-" 400 0 "-" "-"',
  );
});

Deno.test("formatClfTime is UTC, zero-padded, with the English month", () => {
  assert.equal(formatClfTime(Date.UTC(2026, 0, 2, 3, 4, 5, 999)), "[02/Jan/2026:03:04:05 +0000]");
  assert.equal(formatClfTime(Date.UTC(1999, 11, 31, 23, 59, 59)), "[31/Dec/1999:23:59:59 +0000]");
});

Deno.test("ClfTimeCache gives the same text within a second and a new one the next second", () => {
  const cache = new ClfTimeCache();
  const a = cache.format(T0);
  assert.equal(cache.format(T0 + 999), a);
  assert.equal(cache.format(T0 + 1000), "[10/Oct/2000:13:55:37 +0000]");
  assert.equal(cache.format(T0), a);
});

Deno.test("escapeLogField escapes quotes and backslashes so a field cannot end early", () => {
  assert.equal(escapeLogField('a"b\\c'), 'a\\"b\\\\c');
  // A forged ending: without escaping this would read as a UA followed by a fake second field.
  assert.equal(
    formatCombined(entry({ userAgent: 'x" "injected' })).endsWith('"x\\" \\"injected"'),
    true,
  );
});

Deno.test("escapeLogField writes control bytes and bytes >= 0x7f as \\xNN, so a line cannot be split", () => {
  assert.equal(escapeLogField("a\r\nb\tc\x00\x1b[31m"), "a\\x0D\\x0Ab\\x09c\\x00\\x1B[31m");
  assert.equal(escapeLogField("\x7f\x80\xff"), "\\x7F\\x80\\xFF");
  const line = formatCombined(entry({ requestLine: "GET /\r\n127.0.0.1 - - fake HTTP/1.1" }));
  assert.equal(line.includes("\n"), false);
  assert.equal(line.includes("\r"), false);
});

Deno.test("escapeLogField writes chars above 0xff as their UTF-8 bytes", () => {
  assert.equal(escapeLogField("\u20ac"), "\\xE2\\x82\\xAC"); // €
  assert.equal(escapeLogField("\u{1f600}"), "\\xF0\\x9F\\x98\\x80"); // 😀, one surrogate pair
  assert.equal(escapeLogField("\u0100"), "\\xC4\\x80");
  assert.equal(escapeLogField("\ud800x"), "\\xEF\\xBF\\xBDx"); // lone surrogate → U+FFFD
});

Deno.test("escapeLogField output is printable ASCII for every char code", () => {
  for (let c = 0; c < 0x10000; c += 7) {
    const out = escapeLogField("a" + String.fromCharCode(c));
    assert.match(out, /^[\x20-\x7e]+$/, `char ${c}`);
    assert.equal(/(^|[^\\])"/.test(out), false, `char ${c} left an unescaped quote`);
  }
});

Deno.test("formatJson writes one object with every field, numbers as numbers", () => {
  const line = formatJson(entry(), 3);
  assert.equal(
    line,
    '{"time":"2000-10-10T13:55:36.000Z","remote":"127.0.0.1","method":"GET","target":"/apache_pb.gif",' +
      '"protocol":"HTTP/1.0","status":200,"bytes":2326,"duration_ms":12,"host":"www.example.com",' +
      '"referer":"http://www.example.com/start.html","user_agent":"Mozilla/4.08 [en] (Win98; I ;Nav)",' +
      '"conn":42,"worker":3}',
  );
  const empty = JSON.parse(
    formatJson(entry({ remote: "", method: "", target: "", protocol: "", referer: "" }), 0),
  );
  assert.equal(empty.referer, "");
  assert.equal(empty.method, "-", "a request that never parsed");
  assert.equal(empty.target, "-");
  assert.equal(empty.protocol, "-");
});

Deno.test("jsonString escapes quotes, backslashes, controls and non-ASCII so a value cannot end the line", () => {
  assert.equal(jsonString('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(jsonString('x\r\n{"a":1}'), '"x\\u000d\\u000a{\\"a\\":1}"');
  assert.equal(jsonString("\u2028\u2029"), '"\\u2028\\u2029"');
  // Header bytes arrive one char per byte: valid UTF-8 is decoded, anything else kept byte by byte.
  assert.equal(JSON.parse(jsonString("h\xc3\xa9llo")), "h\u00e9llo");
  assert.equal(JSON.parse(jsonString("\xff\xfe")), "\xff\xfe");
  assert.equal(JSON.parse(jsonString("\u{1f600}")), "\u{1f600}");
  assert.equal(JSON.parse(jsonString("\ud800x")), "\ufffdx");
  const line = formatJson(entry({ userAgent: '"},"status":500,"x":{"', target: "/a\n{}" }), 0);
  const parsed = JSON.parse(line);
  assert.equal(parsed.status, 200, "a forged field does not win");
  assert.equal(parsed.user_agent, '"},"status":500,"x":{"');
});

Deno.test("formatJson lines are printable ASCII and parse back for any field content (property)", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary" }),
      fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) }),
      fc.string({ unit: "grapheme-ascii" }),
      (ua, latin1, referer) => {
        const line = formatJson(entry({ userAgent: ua, target: latin1, referer }), 1);
        assert.match(line, /^[\x20-\x7e]*$/);
        const o = JSON.parse(line);
        assert.deepEqual(Object.keys(o), [
          "time",
          "remote",
          "method",
          "target",
          "protocol",
          "status",
          "bytes",
          "duration_ms",
          "host",
          "referer",
          "user_agent",
          "conn",
          "worker",
        ]);
        assert.equal(o.referer, referer);
        assert.equal(o.status, 200);
        // Without lone surrogates a value above U+00FF comes back exactly.
        if (ua.isWellFormed() && [...ua].some((ch) => ch.codePointAt(0)! > 0xff)) {
          assert.equal(o.user_agent, ua);
        }
      },
    ),
  );
});

Deno.test("AccessLog in json format writes JSON lines and maps connection ids", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), {
    format: "json",
    worker: 2,
    connIdOf: (id) => id * 64 + 2,
  });
  log.log(entry({ connId: 5 }));
  await log.flush();
  const o = JSON.parse(w.text().trimEnd());
  assert.equal(o.conn, 5 * 64 + 2);
  assert.equal(o.worker, 2);
  assert.ok(w.text().endsWith("}\n"));
});

// --- batching ------------------------------------------------------------------------------------

Deno.test("AccessLog writes nothing until flushed, then every line in order", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), { flushIntervalMs: 60_000 });
  for (let i = 0; i < 5; i++) log.log(entry({ status: 200 + i }));
  assert.equal(w.chunks.length, 0);
  await log.flush();
  const lines = w.text().split("\n");
  assert.equal(lines.pop(), "");
  assert.deepEqual(lines.map((l) => l.split(" ")[8]), ["200", "201", "202", "203", "204"]);
  await log.close();
  assert.equal(w.closed, true);
});

Deno.test("AccessLog writes a batch as soon as it reaches flushBytes, without waiting for the timer", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), { flushBytes: 500, flushIntervalMs: 60_000 });
  const lineBytes = formatCombined(entry()).length + 1;
  const perBatch = Math.ceil(500 / lineBytes);
  const wrote = w.nextWrite();
  for (let i = 0; i < perBatch - 1; i++) log.log(entry());
  for (let i = 0; i < 5; i++) await Promise.resolve(); // give a (wrongly) scheduled write its chance
  assert.equal(w.chunks.length, 0);
  log.log(entry());
  await wrote; // the timer is a minute away: only the size threshold can have started this write
  assert.equal(w.text().split("\n").length - 1, perBatch);
  await log.close();
});

Deno.test("AccessLog's timer writes a waiting batch on its own", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), { flushIntervalMs: 1 });
  const wrote = w.nextWrite();
  log.log(entry());
  await wrote; // resolves only if the timer fired and wrote
  assert.match(w.text(), /^127\.0\.0\.1 /);
  await log.close();
});

Deno.test("AccessLog drops and counts lines once the writer is maxPendingBytes behind", async () => {
  const errors: string[] = [];
  const w = new MemoryWriter();
  w.auto = false; // the disk stalls
  const lineBytes = formatCombined(entry()).length + 1;
  const log = new AccessLog(w, () => Promise.resolve(w), {
    flushBytes: lineBytes * 4,
    flushIntervalMs: 60_000,
    maxPendingBytes: lineBytes * 10,
  }, { logError: (m) => errors.push(m) });
  for (let i = 0; i < 25; i++) log.log(entry());
  assert.equal(log.dropped, 15);
  assert.deepEqual(errors, [
    `access log: dropping lines (the writer is ${
      lineBytes * 10
    } bytes behind); counted in stats as accessLogDropped`,
  ]);
  w.release();
  await log.flush();
  assert.equal(w.text().split("\n").length - 1, 10);
  // Once the writer caught up, lines are accepted again.
  log.log(entry());
  await log.close();
  assert.equal(w.text().split("\n").length - 1, 11);
  assert.equal(log.dropped, 15);
});

Deno.test("AccessLog counts the lines of a failed write as dropped and keeps going", async () => {
  const errors: string[] = [];
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), { flushIntervalMs: 60_000 }, {
    logError: (m) => errors.push(m),
  });
  log.log(entry());
  log.log(entry());
  w.failNext = true;
  await log.flush();
  assert.equal(log.dropped, 2);
  log.log(entry());
  await log.flush();
  assert.equal(w.text().split("\n").length - 1, 1);
  await log.close();
});

Deno.test("AccessLog counts lines logged after close as dropped", async () => {
  const errors: string[] = [];
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), {}, { logError: (m) => errors.push(m) });
  await log.close();
  log.log(entry());
  assert.equal(log.dropped, 1);
  await log.close(); // a second close is harmless
});

Deno.test("AccessLog reopen keeps the old writer when opening fails", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.reject(new Error("EACCES")), { flushIntervalMs: 60_000 });
  log.log(entry());
  await assert.rejects(log.reopen(), /EACCES/);
  assert.equal(w.closed, false);
  log.log(entry());
  await log.close();
  assert.equal(w.text().split("\n").length - 1, 2);
});

// --- a real file ---------------------------------------------------------------------------------

Deno.test("AccessLog appends to a file, creates it with mode 0640, and reads back whole lines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento_access_log_test_" });
  try {
    const path = `${dir}/access.log`;
    const log = await AccessLog.open(path);
    log.log(entry({ requestLine: "GET /one HTTP/1.1" }));
    log.log(entry({ requestLine: "GET /two\n HTTP/1.1", userAgent: "" }));
    await log.close();
    const mode = (await Deno.stat(path)).mode! & 0o777;
    assert.equal(mode & 0o600, 0o600, "owner reads and writes");
    assert.equal(mode & ~0o640, 0, "never more open than 0640 (the umask may narrow it)");

    const again = await AccessLog.open(path); // append, not truncate
    again.log(entry({ requestLine: "GET /three HTTP/1.1" }));
    await again.close();

    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines.pop(), "");
    assert.deepEqual(lines, [
      formatCombined(entry({ requestLine: "GET /one HTTP/1.1" })),
      '127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /two\\x0A HTTP/1.1" 200 2326 ' +
      '"http://www.example.com/start.html" "-"',
      formatCombined(entry({ requestLine: "GET /three HTTP/1.1" })),
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AccessLog reopen after the file was rotated away starts a fresh file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento_access_log_test_" });
  try {
    const path = `${dir}/access.log`;
    const log = await AccessLog.open(path);
    log.log(entry({ status: 201 }));
    await log.flush();
    await Deno.rename(path, `${path}.1`); // what logrotate does before sending SIGHUP
    log.log(entry({ status: 202 })); // still goes to the renamed file: it was queued before reopen
    await log.reopen();
    log.log(entry({ status: 203 }));
    await log.close();
    const old = await Deno.readTextFile(`${path}.1`);
    const fresh = await Deno.readTextFile(path);
    assert.deepEqual(old.split("\n").slice(0, -1).map((l) => l.split(" ")[8]), ["201", "202"]);
    assert.deepEqual(fresh.split("\n").slice(0, -1).map((l) => l.split(" ")[8]), ["203"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- losses: counted, reported once per episode, never a torn line ---------------------------------

/** A disk that fills up: takes `room` more bytes, then fails every write until `room` is raised. */
class FullDisk implements LogWriter {
  bytes: number[] = [];
  room = 0;
  write(p: Uint8Array): Promise<number> {
    if (this.room <= 0) return Promise.reject(new Error("No space left on device (os error 28)"));
    const n = Math.min(p.length, this.room);
    this.room -= n;
    for (const b of p.subarray(0, n)) this.bytes.push(b);
    return Promise.resolve(n);
  }
  close(): void {}
  text(): string {
    return new TextDecoder().decode(new Uint8Array(this.bytes));
  }
}

Deno.test("AccessLog never leaves a torn line: after a write cut midway the next write starts a new line", async () => {
  const disk = new FullDisk();
  const counters = { accessLogDropped: 0 };
  const errors: string[] = [];
  let now = 0;
  const log = new AccessLog(disk, () => Promise.resolve(disk), { flushIntervalMs: 60_000 }, {
    counters,
    logError: (m) => errors.push(m),
    nowMs: () => now,
  });
  const lineBytes = formatCombined(entry()).length + 1;
  disk.room = lineBytes + 16; // one whole line and 16 bytes of the next fit
  log.log(entry({ status: 201 }));
  log.log(entry({ status: 202 }));
  log.log(entry({ status: 203 }));
  await log.flush();
  // The first line was written whole; the second was cut, the third never started: both dropped.
  assert.equal(log.dropped, 2);
  assert.equal(counters.accessLogDropped, 2);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /^access log: dropping lines \(writing failed: No space left on device/);
  // Still full: more lines dropped, no more error lines.
  log.log(entry({ status: 204 }));
  await log.flush();
  assert.equal(counters.accessLogDropped, 3);
  assert.equal(errors.length, 1);
  // Space comes back, after a quiet second: the fragment is ended, the new line starts on its own.
  now += 1_000;
  disk.room = 1 << 20;
  log.log(entry({ status: 205 }));
  await log.flush();
  const lines = disk.text().split("\n");
  assert.equal(lines.length, 4); // whole 201, the 202 fragment, whole 205, "" after the last newline
  assert.match(lines[0], /" 201 /);
  assert.equal(lines[1], formatCombined(entry({ status: 202 })).slice(0, 16));
  assert.equal(lines[2], formatCombined(entry({ status: 205 })));
  assert.equal(errors.length, 2);
  assert.equal(errors[1], "access log: writing again; 3 lines dropped meanwhile");
  await log.close();
});

Deno.test("AccessLog reports a writer that keeps falling behind once, not once per batch", async () => {
  const w = new MemoryWriter();
  w.auto = false;
  const errors: string[] = [];
  let now = 0;
  const lineBytes = formatCombined(entry()).length + 1;
  const log = new AccessLog(w, () => Promise.resolve(w), {
    flushBytes: lineBytes * 2,
    flushIntervalMs: 60_000,
    maxPendingBytes: lineBytes * 4,
  }, { logError: (m) => errors.push(m), nowMs: () => now });
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10; i++) log.log(entry());
    w.release();
    await log.flush();
    w.auto = false;
    now += 100; // drops keep coming within the quiet period
  }
  assert.equal(errors.length, 1, errors.join("\n"));
  assert.ok(log.dropped > 0);
  now += 1_000;
  w.auto = true;
  log.log(entry());
  await log.flush();
  assert.equal(errors.length, 2);
  assert.match(errors[1], new RegExp(`^access log: writing again; ${log.dropped} lines dropped meanwhile$`));
  await log.close();
});

Deno.test("AccessLog prepareReopen opens now and switches files only on commit", async () => {
  const a = new MemoryWriter();
  const b = new MemoryWriter();
  const log = new AccessLog(a, () => Promise.resolve(b), { flushIntervalMs: 60_000 });
  log.log(entry({ status: 201 }));
  const step = await log.prepareReopen();
  log.log(entry({ status: 202 }));
  await log.flush();
  assert.equal(a.text().split("\n").length - 1, 2, "nothing switched before commit");
  step.commit();
  log.log(entry({ status: 203 }));
  await log.flush();
  assert.equal(a.closed, true);
  assert.match(b.text(), /" 203 /);
  await log.close();
  // A failed open changes nothing.
  const c = new MemoryWriter();
  const failing = new AccessLog(c, () => Promise.reject(new Error("ENOENT")));
  await assert.rejects(failing.prepareReopen(), /ENOENT/);
  assert.equal(c.closed, false);
  await failing.close();
});

Deno.test("AccessLog.setFormat switches the format of the lines logged after it", async () => {
  const w = new MemoryWriter();
  const log = new AccessLog(w, () => Promise.resolve(w), { format: "combined" });
  log.log(entry());
  log.setFormat("json");
  log.log(entry());
  await log.flush();
  const [first, second] = w.text().trimEnd().split("\n");
  assert.ok(first.startsWith("127.0.0.1 - - ["));
  assert.equal(JSON.parse(second).status, 200);
});
