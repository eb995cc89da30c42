/**
 * The socket transport on real loopback sockets: reads into the caller's buffer, what a close does to a
 * pending read or write (deadlines and shutdown rely on it), backpressure on writes, end of stream and
 * resets, and the listener handing sockets over unread.
 */

import assert from "node:assert/strict";
import {
  ACCEPT_REARM_MS,
  listenTransport,
  mapSocketError,
  rearmAccept,
  uvError,
} from "../../src/net/node_transport.ts";
import type { Transport, TransportListener } from "../../src/net/transport.ts";

const enc = new TextEncoder();

/** A listener on 127.0.0.1:0 whose accepted transports come out of `next()`. */
async function listen(): Promise<{ listener: TransportListener; next: () => Promise<Transport> }> {
  const waiting: Transport[] = [];
  let wake: (() => void) | null = null;
  const listener = await listenTransport(
    { host: "127.0.0.1", port: 0, reusePort: false, tls: null },
    (t) => {
      waiting.push(t);
      wake?.();
    },
    () => {},
  );
  const next = async () => {
    while (waiting.length === 0) await new Promise<void>((r) => wake = r);
    return waiting.shift()!;
  };
  return { listener, next };
}

/**
 * A listener, a client connected to it and the transport accepted for that client; disposing it closes all
 * three (closing again what a test closed itself does nothing).
 */
async function connected() {
  const { listener, next } = await listen();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const t = await next();
  return {
    listener,
    client,
    t,
    async [Symbol.asyncDispose]() {
      t.close();
      try {
        client.close();
      } catch {
        // the test closed it already
      }
      await listener.close();
    },
  };
}

/** Reads from `c` until `n` bytes arrived. */
async function readN(c: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await c.read(out.subarray(got));
    if (k === null) throw new Error(`EOF after ${got} of ${n} bytes`);
    got += k;
  }
  return out;
}

Deno.test("a pending read ends with Interrupted when the transport is closed (as a deadline does)", async () => {
  await using c = await connected();
  const { client, t } = c;
  const pending = t.read(new Uint8Array(64));
  t.close();
  await assert.rejects(pending, Deno.errors.Interrupted);
  await assert.rejects(t.read(new Uint8Array(64)), Deno.errors.BadResource);
  // The peer sees the close.
  assert.equal(await client.read(new Uint8Array(8)), null);
  t.close(); // idempotent
});

Deno.test("reads fill the caller's buffer and keep the rest of a larger chunk for the next read", async () => {
  await using c = await connected();
  const { client, t } = c;
  const sent = new Uint8Array(3000).map((_, i) => i % 251);
  await client.write(sent);
  const got: number[] = [];
  const buf = new Uint8Array(1024);
  while (got.length < sent.length) {
    const n = await t.read(buf);
    assert.ok(n !== null && n > 0 && n <= buf.length);
    got.push(...buf.subarray(0, n));
  }
  assert.deepEqual(new Uint8Array(got), sent);
  // The peer's end of stream reads as null, after every byte.
  client.closeWrite();
  assert.equal(await t.read(buf), null);
  // A half-closed peer still gets our answer (the socket is half-open, not closed under us). A write the
  // kernel takes whole at once says so with a number: nothing to wait for.
  assert.equal(t.write(enc.encode("answer")), 6);
  await t.closeWrite();
  assert.deepEqual(await readN(client, 6), enc.encode("answer"));
  assert.equal(await client.read(new Uint8Array(8)), null);
  t.close();
});

Deno.test("a write settles only once the kernel took it: a peer that does not read holds it pending", async () => {
  await using c = await connected();
  const { client, t } = c;
  // Far more than loopback socket buffers hold.
  const big = new Uint8Array(64 * 1024 * 1024).fill(0x61);
  let settled = false;
  const writing = Promise.resolve(t.write(big)).then((n) => {
    settled = true;
    return n;
  });
  // Several event-loop turns with the peer not reading: the write must still be pending.
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(settled, false, "a write to a peer that reads nothing must not settle");
  await assert.rejects(
    Promise.resolve(t.write(new Uint8Array(1))),
    Deno.errors.Busy,
    "one write in flight at a time",
  );
  // The peer reads everything: the write settles with the whole count.
  const reading = readN(client, big.length);
  assert.equal(await writing, big.length);
  assert.equal((await reading).length, big.length);
  t.close();
});

Deno.test("a pending write ends with Interrupted when the transport is closed (send deadline)", async () => {
  await using c = await connected();
  const { t } = c;
  const writing = Promise.resolve(t.write(new Uint8Array(64 * 1024 * 1024)));
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  t.close();
  await assert.rejects(writing, Deno.errors.Interrupted);
});

Deno.test("a peer's reset rejects a pending read with a peer-gone error", async () => {
  await using c = await connected();
  const { client, t } = c;
  // Unread data at close makes the kernel send a reset instead of a FIN.
  await t.write(enc.encode("unread by the client"));
  const pending = t.read(new Uint8Array(64));
  client.close();
  const e = await pending.then(() => null, (e: unknown) => e);
  // Either the reset, or (when the FIN wins the race) a plain end of stream.
  if (e !== null) {
    assert.ok(
      e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe,
      `expected a peer-gone error, got ${e}`,
    );
  }
});

Deno.test("socket errors map to the Deno.errors classes the connection treats as the peer leaving", () => {
  const err = (code: string) => Object.assign(new Error(code), { code });
  assert.ok(mapSocketError(err("ECONNRESET")) instanceof Deno.errors.ConnectionReset);
  assert.ok(mapSocketError(err("EPIPE")) instanceof Deno.errors.BrokenPipe);
  assert.ok(mapSocketError(err("ERR_STREAM_DESTROYED")) instanceof Deno.errors.BrokenPipe);
  assert.ok(mapSocketError(err("ECONNABORTED")) instanceof Deno.errors.ConnectionAborted);
  assert.ok(mapSocketError(err("ERR_SSL_WRONG_VERSION_NUMBER")) instanceof Deno.errors.InvalidData);
  // The runtime's handles report negative errnos: named, then mapped the same way.
  assert.ok(mapSocketError(uvError(-104, "read")) instanceof Deno.errors.ConnectionReset);
  assert.ok(mapSocketError(uvError(-32, "write")) instanceof Deno.errors.BrokenPipe);
  assert.ok(mapSocketError(uvError(-125, "write")) instanceof Deno.errors.Interrupted);
  assert.equal((uvError(-98, "listen") as { code?: string }).code, "EADDRINUSE");
  const other = err("EWHATEVER");
  assert.equal(mapSocketError(other), other, "an unknown error is passed on as is (and gets logged)");
});

Deno.test("binding a port in use rejects with AddrInUse", async () => {
  const { listener } = await listen();
  try {
    await assert.rejects(
      listenTransport(
        { host: "127.0.0.1", port: listener.addr.port, reusePort: false, tls: null },
        () => {},
        () => {},
      ),
      Deno.errors.AddrInUse,
    );
  } finally {
    await listener.close();
  }
});

Deno.test("re-arming accept (as the listener does every few ms) accepts every connection exactly once", async () => {
  const accepted: Transport[] = [];
  const listener = await listenTransport(
    { host: "127.0.0.1", port: 0, reusePort: false, tls: null },
    (t) => accepted.push(t),
    () => {},
  );
  try {
    // Connections arrive over several re-arm periods, some while a re-arm runs.
    const clients: Deno.Conn[] = [];
    for (let i = 0; i < 4; i++) {
      clients.push(
        ...await Promise.all(
          Array.from({ length: 5 }, () => Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })),
        ),
      );
      await new Promise((r) => setTimeout(r, ACCEPT_REARM_MS));
    }
    for (let i = 0; i < 500 && accepted.length < 20; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 3 * ACCEPT_REARM_MS));
    assert.equal(accepted.length, 20);
    const ports = new Set(accepted.map((t) => t.remotePort));
    assert.equal(ports.size, 20, "each connection handed over once");
    for (const t of accepted) t.close();
    for (const c of clients) c.close();
  } finally {
    await listener.close();
  }
  // A handle that is closing throws from listen: re-arming it is a no-op, not an error.
  rearmAccept({
    listen() {
      throw new Error("closed");
    },
  });
});

/**
 * `t.readLent` as a promise of what `lentReadDone` says; `loans` counts the buffers asked for. Rejects if
 * `lentReadDone` came from inside `readLent` (the caller would run re-entrantly) or came twice.
 */
function lentRead(t: Transport, buf: Uint8Array, loans = { count: 0 }): Promise<number | null> {
  return new Promise((resolve, reject) => {
    let inside = true;
    let calls = 0;
    t.readLent({
      lendReadBuffer() {
        loans.count++;
        return buf;
      },
      lentReadDone(n, e) {
        if (inside) reject(new Error("lentReadDone was called from inside readLent"));
        else if (++calls > 1) reject(new Error("lentReadDone was called twice"));
        else if (e !== null) reject(e);
        else resolve(n);
      },
    });
    inside = false;
  });
}

Deno.test("readLent waits holding no buffer, asks the lender once bytes are there, and close ends the wait", async () => {
  await using c = await connected();
  const { client, t } = c;
  const loans = { count: 0 };
  const buf = new Uint8Array(16);
  const waiting = lentRead(t, buf, loans);
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(loans.count, 0, "nothing sent yet: no buffer taken");
  await client.write(enc.encode("hello"));
  assert.equal(await waiting, 5);
  assert.equal(loans.count, 1);
  assert.equal(new TextDecoder().decode(buf.subarray(0, 5)), "hello");
  // A wait pending when the transport closes ends with Interrupted (the idle deadline relies on it),
  // told from a microtask, and the lender is never asked for a buffer.
  const idle = lentRead(t, buf, loans);
  t.close();
  await assert.rejects(idle, Deno.errors.Interrupted);
  assert.equal(loans.count, 1);
  // Once closed: BadResource, as a read.
  await assert.rejects(lentRead(t, buf, loans), Deno.errors.BadResource);
});

Deno.test("readLent at the peer's end of stream says null without asking the lender", async () => {
  await using c = await connected();
  const { client, t } = c;
  const loans = { count: 0 };
  const waiting = lentRead(t, new Uint8Array(16), loans);
  client.close();
  assert.equal(await waiting, null);
  assert.equal(loans.count, 0);
  // Asked again after the end: said at once (from a microtask), still null.
  assert.equal(await lentRead(t, new Uint8Array(16), loans), null);
});

Deno.test("bytes held while nobody reads survive other sockets' reads (every socket reads into one buffer)", async () => {
  const { listener, next } = await listen();
  const a = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const ta = await next();
  const b = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const tb = await next();
  try {
    const buf = new Uint8Array(64);
    // A's first read stops reading (a short first chunk); its second read leaves reading on, so what
    // comes next for A arrives with no read asking for it and is held.
    await a.write(enc.encode("a-first"));
    assert.equal(await ta.read(buf), 7);
    const second = ta.read(buf);
    await a.write(enc.encode("a-second"));
    assert.equal(await second, 8);
    await a.write(enc.encode("a-held"));
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
    // B's reads go through the same runtime buffer meanwhile, over the same offsets.
    const pendingB = tb.read(new Uint8Array(64));
    await b.write(enc.encode("BBBBBBBBBBBBBBBBBBBB"));
    assert.equal(await pendingB, 20);
    const n = await ta.read(buf);
    assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "a-held");
  } finally {
    ta.close();
    tb.close();
    a.close();
    b.close();
    await listener.close();
  }
});

Deno.test("a transport nobody reads from stops reading: the sender blocks; every byte then arrives in order", async () => {
  await using c = await connected();
  const { client, t } = c;
  const total = 32 * 1024 * 1024;
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
  let sent = false;
  const sending = (async () => {
    let off = 0;
    while (off < total) off += await client.write(data.subarray(off));
    sent = true;
  })();
  // One read starts reading; after it nothing asks, so the transport must stop (hold one chunk at most).
  const buf = new Uint8Array(1000);
  const first = await t.read(buf);
  assert.ok(first !== null && first > 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sent, false, "the kernel's buffers filled: the transport stopped reading");
  const got = new Uint8Array(total);
  got.set(buf.subarray(0, first));
  let off = first;
  const big = new Uint8Array(64 * 1024);
  while (off < total) {
    const n = await t.read(big);
    assert.ok(n !== null);
    got.set(big.subarray(0, n), off);
    off += n;
  }
  await sending;
  assert.ok(sent);
  assert.deepEqual(got, data);
});

Deno.test("a peer that resets during a pending write fails the write with a peer-gone error, never hangs", async () => {
  await using c = await connected();
  const { client, t } = c;
  const writing = Promise.resolve(t.write(new Uint8Array(64 * 1024 * 1024).fill(0x62)));
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  // Unread data in the client's receive queue makes its close a reset.
  client.close();
  await assert.rejects(
    writing,
    (e: unknown) => e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe,
  );
  // Later calls report the failure at once.
  await assert.rejects(Promise.resolve(t.write(new Uint8Array(1))));
});

Deno.test("after closeWrite the peer sees the end of stream, and reads go on", async () => {
  await using c = await connected();
  const { client, t } = c;
  await t.write(enc.encode("bye"));
  await t.closeWrite();
  assert.equal(new TextDecoder().decode(await readN(client, 3)), "bye");
  assert.equal(await client.read(new Uint8Array(8)), null, "the peer sees our FIN");
  await client.write(enc.encode("late"));
  const buf = new Uint8Array(16);
  const n = await t.read(buf);
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "late");
  client.close();
  assert.equal(await t.read(buf), null, "then the peer's end");
});

Deno.test("bytes arriving after a lent read, before the next read, are held and joined in order", async () => {
  await using c = await connected();
  const { client, t } = c;
  // The first read: a short first chunk stops reading until the next read or wait.
  await client.write(enc.encode("GET /1"));
  const buf = new Uint8Array(64);
  assert.equal(await t.read(buf), 6);
  const lent = new Uint8Array(64);
  const waiting = lentRead(t, lent);
  await client.write(enc.encode("first "));
  assert.equal(await waiting, 6);
  // The lent read left reading on: what comes now, with no read asking, is held for the next read.
  await client.write(enc.encode("second"));
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  let text = "";
  while (text.length < 6) {
    const n = await t.read(buf);
    assert.ok(n !== null);
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  assert.equal(new TextDecoder().decode(lent.subarray(0, 6)) + text, "first second");
});
