/**
 * FileStream against an in-memory fake file and a fake clock: exact bytes for ranges and multipart
 * segments through a buffer smaller than the body, one pooled buffer per transfer, the file closed on
 * every path, a shrinking file rejected, and slow synchronous reads moving the transfer to async reads.
 */

import assert from "node:assert/strict";
import { BufferPool } from "../../src/core/buffer_pool.ts";
import {
  FileShrankError,
  FileStream,
  SLOW_READ_BASE_MS,
  SLOW_READS_TO_SWITCH,
  type StreamFile,
} from "../../src/static/file_stream.ts";
import { FakeClock } from "../../src/core/clock.ts";

/** A file in memory; `readSync` advances `clock` by `syncReadMs` to play a slow disk. */
class FakeFile implements StreamFile {
  pos = 0;
  closed = 0;
  syncReads = 0;
  asyncReads = 0;
  constructor(
    readonly data: Uint8Array,
    readonly clock: FakeClock = new FakeClock(),
    public syncReadMs = 0,
  ) {}
  #take(into: Uint8Array): number | null {
    if (this.pos >= this.data.length) return null;
    const n = Math.min(into.length, this.data.length - this.pos);
    into.set(this.data.subarray(this.pos, this.pos + n));
    this.pos += n;
    return n;
  }
  readSync(into: Uint8Array): number | null {
    this.syncReads++;
    this.clock.advance(this.syncReadMs);
    return this.#take(into);
  }
  read(into: Uint8Array): Promise<number | null> {
    this.asyncReads++;
    return Promise.resolve(this.#take(into));
  }
  seekSync(offset: number | bigint, whence: Deno.SeekMode): number {
    assert.equal(whence, Deno.SeekMode.Start);
    this.pos = Number(offset);
    return this.pos;
  }
  close(): void {
    this.closed++;
  }
}

/** A sink that copies what it is given (the stream reuses its buffer) and records each write's size. */
class CollectSink {
  chunks: Uint8Array[] = [];
  write(bytes: Uint8Array): Promise<void> {
    this.chunks.push(bytes.slice());
    return Promise.resolve();
  }
  get bytes(): Uint8Array {
    const out = new Uint8Array(this.chunks.reduce((a, c) => a + c.length, 0));
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7 + 3) & 0xff);
const enc = new TextEncoder();

Deno.test("file stream writes exactly the requested range in buffer-sized chunks and closes the file", async () => {
  const pool = new BufferPool(1024, 2);
  const file = new FakeFile(data);
  const sink = new CollectSink();
  await new FileStream(file, "/f", [{ header: null, start: 100, end: 5099 }], null, pool).pipe(sink);
  assert.deepEqual(sink.bytes, data.subarray(100, 5100));
  assert.ok(sink.chunks.every((c) => c.length <= 1024), "never more than one buffer per write");
  assert.equal(sink.chunks.length, 5, "full buffers: 5000 bytes in 5 writes");
  assert.equal(file.closed, 1);
  assert.equal(pool.inUse, 0, "the buffer went back to the pool");
  assert.equal(pool.idle, 1, "one buffer served the whole transfer");
});

Deno.test("file stream sends multipart headers with their segment and the trailer last", async () => {
  const pool = new BufferPool(64, 2);
  const file = new FakeFile(data);
  const sink = new CollectSink();
  const h1 = enc.encode("--b\r\nContent-Range: bytes 0-9/10000\r\n\r\n");
  const h2 = enc.encode("\r\n--b\r\n".repeat(20)); // longer than the buffer: written on its own
  const trailer = enc.encode("\r\n--b--\r\n");
  const segs = [{ header: h1, start: 0, end: 9 }, { header: h2, start: 9990, end: 9999 }];
  await new FileStream(file, "/f", segs, trailer, pool).pipe(sink);
  const expected = new Uint8Array([
    ...h1,
    ...data.subarray(0, 10),
    ...h2,
    ...data.subarray(9990),
    ...trailer,
  ]);
  assert.deepEqual(sink.bytes, expected);
  assert.deepEqual(sink.chunks[0], new Uint8Array([...h1, ...data.subarray(0, 10)]), "header rides along");
  assert.equal(file.closed, 1);
  assert.equal(pool.inUse, 0);
});

Deno.test("file stream rejects a file that shrank and still closes it and returns the buffer", async () => {
  const pool = new BufferPool(1024, 2);
  const file = new FakeFile(data.subarray(0, 3000));
  const sink = new CollectSink();
  const stream = new FileStream(file, "/short", [{ header: null, start: 0, end: 9999 }], null, pool);
  await assert.rejects(stream.pipe(sink), FileShrankError);
  assert.equal(file.closed, 1);
  assert.equal(pool.inUse, 0);
  assert.ok(sink.bytes.length <= 3000);
});

Deno.test("file stream reads synchronously while reads are fast", async () => {
  const clock = new FakeClock();
  const file = new FakeFile(data, clock, 0);
  const stream = new FileStream(
    file,
    "/f",
    [{ header: null, start: 0, end: 9999 }],
    null,
    new BufferPool(1000, 1),
    clock,
  );
  await stream.pipe(new CollectSink());
  assert.equal(file.syncReads, 10);
  assert.equal(file.asyncReads, 0);
  assert.equal(stream.syncReads, true);
});

Deno.test("file stream moves to async reads after repeated slow reads (a cold file), not after one", async () => {
  const clock = new FakeClock();
  const slowMs = SLOW_READ_BASE_MS + 1; // 1000-byte chunks: the bound is just above SLOW_READ_BASE_MS
  const file = new FakeFile(data, clock, slowMs);
  const sink = new CollectSink();
  const stream = new FileStream(
    file,
    "/f",
    [{ header: null, start: 0, end: 9999 }],
    null,
    new BufferPool(1000, 1),
    clock,
  );
  await stream.pipe(sink);
  assert.equal(file.syncReads, SLOW_READS_TO_SWITCH, "the event loop waited for the disk only this often");
  assert.equal(file.asyncReads, 10 - SLOW_READS_TO_SWITCH);
  assert.equal(stream.syncReads, false);
  assert.deepEqual(sink.bytes, data, "the switch loses no bytes");

  // One slow read (a preemption) among fast ones keeps the cheaper synchronous path.
  let n = 0;
  const jittery = new FakeFile(data, clock, 0);
  const origRead = jittery.readSync.bind(jittery);
  jittery.readSync = (into) => {
    if (n++ === 3) clock.advance(slowMs);
    return origRead(into);
  };
  const s2 = new FileStream(
    jittery,
    "/f",
    [{ header: null, start: 0, end: 9999 }],
    null,
    new BufferPool(1000, 1),
    clock,
  );
  await s2.pipe(new CollectSink());
  assert.equal(s2.syncReads, true);
  assert.equal(jittery.asyncReads, 0);
});

Deno.test("file stream cancel closes the file once and a second pipe is refused", async () => {
  const pool = new BufferPool(1024, 1);
  const file = new FakeFile(data);
  const stream = new FileStream(file, "/f", [{ header: null, start: 0, end: 9 }], null, pool);
  stream.cancel();
  stream.cancel();
  assert.equal(file.closed, 1);
  await assert.rejects(stream.pipe(new CollectSink()), /used twice/);
  assert.equal(pool.inUse, 0);
});

/** A sink whose writes take `delays[i]` ms of fake time each (then `rest`), recording each write's size. */
class TimedSink {
  sizes: number[] = [];
  #i = 0;
  constructor(readonly clock: FakeClock, readonly delays: number[], readonly rest: number) {}
  write(bytes: Uint8Array): Promise<void> {
    this.sizes.push(bytes.byteLength);
    this.clock.advance(this.delays[this.#i++] ?? this.rest);
    return Promise.resolve();
  }
}

Deno.test("a transfer starts with a small buffer and grows only after fast writes", async () => {
  const clock = new FakeClock();
  const data = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
  const file = new FakeFile(data, clock);
  const small = new BufferPool(1024, 4);
  const large = new BufferPool(64 * 1024, 4);
  const sink = new TimedSink(clock, [], 0);
  const s = new FileStream(file, "f", [{ header: null, start: 0, end: data.length - 1 }], null, {
    small,
    large,
    maxLargeInUse: 2,
  }, clock);
  await s.pipe(sink);
  assert.deepEqual(sink.sizes.slice(0, 5), [1024, 1024, 1024, 1024, 64 * 1024]);
  assert.equal(sink.sizes.reduce((a, b) => a + b, 0), data.length);
  assert.equal(small.inUse + large.inUse, 0, "every buffer went back");
});

Deno.test("a reader that stalls keeps (or returns to) the small buffer", async () => {
  const clock = new FakeClock();
  const data = new Uint8Array(512 * 1024);
  const small = new BufferPool(1024, 4);
  const large = new BufferPool(64 * 1024, 4);
  // Four fast writes (grow), then one stalled write of 500 ms (shrink), then slow writes for ever.
  const sink = new TimedSink(clock, [0, 0, 0, 0, 500], 50);
  const s = new FileStream(
    new FakeFile(data, clock),
    "f",
    [{ header: null, start: 0, end: data.length - 1 }],
    null,
    {
      small,
      large,
      maxLargeInUse: 2,
    },
    clock,
  );
  await s.pipe(sink);
  assert.deepEqual(sink.sizes.slice(0, 7), [1024, 1024, 1024, 1024, 64 * 1024, 1024, 1024]);
  assert.ok(sink.sizes.slice(5).every((n) => n <= 1024), "never grows again while writes are slow");
});

Deno.test("large buffers are a budget: beyond it transfers stay small", async () => {
  const clock = new FakeClock();
  const data = new Uint8Array(256 * 1024);
  const small = new BufferPool(1024, 4);
  const large = new BufferPool(64 * 1024, 4);
  const held = large.acquire(); // another transfer holds the only allowed large buffer
  const sink = new TimedSink(clock, [], 0);
  const s = new FileStream(
    new FakeFile(data, clock),
    "f",
    [{ header: null, start: 0, end: data.length - 1 }],
    null,
    {
      small,
      large,
      maxLargeInUse: 1,
    },
    clock,
  );
  await s.pipe(sink);
  assert.ok(sink.sizes.every((n) => n === 1024));
  large.release(held);
});
