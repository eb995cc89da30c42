/**
 * The connection over a fake transport (no sockets, a fake clock, no sleeps): what the transport seam
 * makes possible to get wrong. Writes the transport takes only in part must be continued; a deadline that
 * passes while a read is pending must close the transport, which must end that read; an idle connection's
 * deadline is enforced by the sweep even though it never gets to read.
 */

import assert from "node:assert/strict";
import { type ConnContext, Connection } from "../../src/net/connection.ts";
import type { ReadBufferLender, Transport } from "../../src/net/transport.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";
import { DateLine } from "../../src/http/date.ts";
import { textReply, WholeReplies } from "../../src/http/response.ts";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import type { Handler } from "../../src/http/handler.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A scripted transport: reads are fed by `feed`, writes take at most `maxWrite` bytes each. */
class FakeTransport implements Transport {
  readonly remoteIp = "192.0.2.7";
  readonly remotePort = 40000;
  readonly secure = false;
  written: number[] = [];
  writeSizes: number[] = [];
  closed = false;
  halfClosed = false;
  noDelay = false;
  #maxWrite: number;
  #queue: Uint8Array[] = [];
  #eof = false;
  /** The pending read: into `buf`, or (`readLent`) into the buffer `lender` gives when bytes are there. */
  #pending: {
    buf: Uint8Array | null;
    lender: ReadBufferLender | null;
    resolve: (n: number | null) => void;
    reject: (e: Error) => void;
  } | null = null;

  constructor(maxWrite = Infinity) {
    this.#maxWrite = maxWrite;
  }

  /** Bytes from the peer; null for its end of stream. */
  feed(bytes: Uint8Array | null): void {
    if (bytes === null) this.#eof = true;
    else this.#queue.push(bytes);
    this.#deliver();
  }

  /** A read into a buffer of the connection's is pending. */
  get readPending(): boolean {
    return this.#pending !== null && this.#pending.buf !== null;
  }

  /** Waiting for the first byte of the next request with no buffer (an idle connection's `readLent`). */
  get lentReadPending(): boolean {
    return this.#pending !== null && this.#pending.lender !== null;
  }

  #deliver(): void {
    const p = this.#pending;
    if (p === null) return;
    const next = this.#queue[0];
    if (next !== undefined) {
      const buf = p.buf ?? p.lender!.lendReadBuffer();
      const n = Math.min(next.length, buf.length);
      buf.set(next.subarray(0, n));
      if (n === next.length) this.#queue.shift();
      else this.#queue[0] = next.subarray(n);
      this.#pending = null;
      p.resolve(n);
    } else if (this.#eof) {
      this.#pending = null;
      p.resolve(null);
    }
  }

  read(buf: Uint8Array): Promise<number | null> {
    return this.#read(buf, null);
  }

  readLent(lender: ReadBufferLender): void {
    if (this.closed) {
      queueMicrotask(() => lender.lentReadDone(null, new Deno.errors.BadResource("closed")));
      return;
    }
    this.#pending = {
      buf: null,
      lender,
      resolve: (n) => lender.lentReadDone(n, null),
      reject: (e) => lender.lentReadDone(null, e),
    };
    // As the real transport: what is here already is reported from a microtask, never from inside.
    queueMicrotask(() => this.#deliver());
  }

  #read(buf: Uint8Array, lender: null): Promise<number | null> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      this.#pending = { buf, lender, resolve, reject };
      this.#deliver();
    });
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    const n = Math.min(bytes.length, this.#maxWrite);
    this.written.push(...bytes.subarray(0, n));
    this.writeSizes.push(n);
    return Promise.resolve(n);
  }

  closeWrite(): Promise<void> {
    this.halfClosed = true;
    return Promise.resolve();
  }

  setNoDelay(): void {
    this.noDelay = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const p = this.#pending;
    this.#pending = null;
    const interrupted = new Deno.errors.Interrupted("closed");
    // A lent read hears of the close from a microtask (as from the real transport), a read at once.
    if (p?.lender) queueMicrotask(() => p.reject(interrupted));
    else p?.reject(interrupted);
  }

  text(): string {
    return dec.decode(new Uint8Array(this.written));
  }
}

const BODY = enc.encode("x".repeat(5000));

const handler: Handler = {
  bodyLimitBytes: () => 0,
  handle: () => ({ ...textReply(200, [], false), body: BODY, length: BODY.length }),
};

function context(clock: FakeClock, overrides: Partial<typeof DEFAULT_CONFIG> = {}): ConnContext {
  return {
    options: { ...DEFAULT_CONFIG, ...overrides },
    clock,
    stats: new Stats(),
    handler,
    gate: null,
    accessLog: null,
    dateLine: new DateLine(),
    wholeReplies: new WholeReplies(),
    nowMs: clock.nowMs(),
    wallMs: clock.wallMs(),
    shuttingDown: false,
    readPool: new BufferPool(1024, 4),
    parserPool: [],
    largeReadPool: new BufferPool(16 * 1024, 4),
    outPool: new BufferPool(16 * 1024, 4),
    logError: (m) => {
      throw new Error(`unexpected log line: ${m}`);
    },
  };
}

/** Lets every settled promise run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

Deno.test("a write the transport takes only in part is continued until every byte is out", async () => {
  const clock = new FakeClock();
  const t = new FakeTransport(700);
  const c = new Connection(t, 1, t.remoteIp, t.remotePort, t.remoteIp, -1, context(clock));
  c.serve();
  const served = c.ended;
  t.feed(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  const text = t.text();
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.ok(text.endsWith("x".repeat(5000)), "the whole body arrived, in order");
  assert.ok(t.writeSizes.length > 7, "the answer went out in many partial writes");
  assert.ok(t.writeSizes.every((n) => n <= 700));
  assert.ok(t.closed);
});

Deno.test("a header deadline passing while a read is pending closes the transport and ends that read", async () => {
  const clock = new FakeClock();
  const ctx = context(clock, { headerTimeoutMs: 1000 });
  const t = new FakeTransport();
  const c = new Connection(t, 2, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  await settle();
  assert.ok(t.readPending, "the connection waits for its first byte");
  clock.advance(999);
  c.expireIfDue(clock.nowMs());
  assert.equal(t.closed, false);
  clock.advance(1);
  c.expireIfDue(clock.nowMs());
  assert.ok(t.closed, "the deadline closed the transport");
  await served; // the pending read ended (Interrupted) and serve() returned without an error
  assert.equal(c.state, "closed");
  assert.equal(ctx.stats.timeouts, 1);
});

Deno.test("an idle keep-alive connection is closed by its idle deadline, and Nagle is off after the first answer", async () => {
  const clock = new FakeClock();
  const ctx = context(clock, { idleTimeoutMs: 5000 });
  const t = new FakeTransport();
  const c = new Connection(t, 3, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  t.feed(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  await settle();
  assert.match(t.text(), /^HTTP\/1\.1 200 /);
  assert.ok(t.noDelay, "no-delay is set once the connection is known to stay open");
  assert.equal(c.state, "idle");
  assert.ok(t.lentReadPending, "idle: waiting for a byte without a pending read");
  assert.equal(ctx.readPool.inUse, 0, "the idle connection's read buffer is back in the pool");
  clock.advance(5000 + 250);
  c.expireIfDue(clock.nowMs());
  assert.ok(t.closed);
  await served;
  assert.equal(c.state, "closed");
});

Deno.test("an idle connection takes a buffer back for its next request and serves it", async () => {
  const clock = new FakeClock();
  const ctx = context(clock);
  const t = new FakeTransport();
  const c = new Connection(t, 5, t.remoteIp, t.remotePort, t.remoteIp, -1, ctx);
  c.serve();
  const served = c.ended;
  t.feed(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  await settle();
  assert.equal(c.state, "idle");
  t.feed(enc.encode("GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  assert.equal(t.text().match(/HTTP\/1\.1 200 /g)?.length, 2);
  assert.equal(ctx.readPool.inUse, 0, "every buffer went back to the pool, once");
  assert.equal(ctx.readPool.idle, 1);
});

Deno.test("a connection that closes after its only answer never sets no-delay (one system call saved)", async () => {
  const clock = new FakeClock();
  const t = new FakeTransport();
  const c = new Connection(t, 4, t.remoteIp, t.remotePort, t.remoteIp, -1, context(clock));
  c.serve();
  const served = c.ended;
  t.feed(enc.encode("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  await served;
  assert.equal(t.noDelay, false);
  assert.ok(t.closed);
});
