/**
 * The admin server over a real Unix socket with a fake backend: every op, every error path, the
 * subscription stream, socket permissions and the socket file's lifecycle. Talks raw NDJSON through
 * `Deno.connect` (never through the CLI's own client) so the wire format itself is what is checked.
 */

import assert from "node:assert/strict";
import {
  AdminServer,
  AdminSocketInUse,
  DEFAULT_ADMIN_OPTIONS,
  MAX_ADMIN_CLIENTS,
} from "../../src/admin/server.ts";
import { MAX_LINE_BYTES } from "../../src/admin/protocol.ts";
import { FakeClock, systemClock } from "../../src/core/clock.ts";
import { FakeBackend, tempSocket } from "./fake_backend.ts";

// deno-lint-ignore no-explicit-any
type Msg = any;

/** A tiny line client: send raw text, read one JSON line at a time. */
class RawClient {
  #conn: Deno.UnixConn;
  #buf = "";
  #dec = new TextDecoder();
  constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }
  static async open(path: string): Promise<RawClient> {
    return new RawClient(await Deno.connect({ transport: "unix", path }));
  }
  async send(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }
  /** The next line as JSON, or null at EOF. */
  async next(): Promise<Msg | null> {
    const chunk = new Uint8Array(65536);
    while (!this.#buf.includes("\n")) {
      const n = await this.#conn.read(chunk);
      if (n === null) return null;
      this.#buf += this.#dec.decode(chunk.subarray(0, n), { stream: true });
    }
    const i = this.#buf.indexOf("\n");
    const line = this.#buf.slice(0, i);
    this.#buf = this.#buf.slice(i + 1);
    return JSON.parse(line);
  }
  async ask(op: string, args: unknown = {}, id = 1): Promise<Msg> {
    await this.send(JSON.stringify({ v: 1, id, op, args }) + "\n");
    return await this.next();
  }
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

async function withServer(
  fn: (ctx: { path: string; backend: FakeBackend; server: AdminServer }) => Promise<void>,
) {
  const { dir, path } = await tempSocket();
  const backend = new FakeBackend(systemClock);
  const server = await AdminServer.start(path, backend, systemClock);
  try {
    await fn({ path, backend, server });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("admin server answers hello and stats with ids echoed", async () => {
  await withServer(async ({ path }) => {
    const c = await RawClient.open(path);
    const hello = await c.ask("hello", {}, 7);
    assert.deepEqual({ v: hello.v, id: hello.id, ok: hello.ok }, { v: 1, id: 7, ok: true });
    assert.equal(hello.data.pid, 4242);
    const stats = await c.ask("stats", {}, 8);
    assert.equal(stats.id, 8);
    assert.equal(stats.data.maxConns, 4096);
    assert.equal(typeof stats.data.rates.requestsPerSec, "number");
    assert.ok(stats.data.snapshot.requests >= 1000);
    c.close();
  });
});

Deno.test("admin server answers every read op", async () => {
  await withServer(async ({ path }) => {
    const c = await RawClient.open(path);
    assert.equal((await c.ask("conns")).data.length, 3);
    assert.equal((await c.ask("clients", { limit: 2 })).data.length, 2);
    assert.equal((await c.ask("bans")).data[0].key, "192.0.2.66");
    const m = await c.ask("metrics");
    assert.match(m.data, /^# HELP vento_uptime_seconds /);
    assert.match(m.data, /\nvento_responses_total\{class="2xx"\} 950\n/);
    c.close();
  });
});

Deno.test("admin server performs ban, unban, kick, reload and drain on the backend", async () => {
  await withServer(async ({ path, backend }) => {
    const c = await RawClient.open(path);
    const ban = await c.ask("ban", { target: "10.0.0.0/8", ms: 60_000, reason: "test" }, 1);
    assert.deepEqual(ban.data, { target: "10.0.0.0/8", ms: 60_000 });
    assert.deepEqual(backend.recorded.bans, [{ target: "10.0.0.0/8", ms: 60_000, reason: "test" }]);
    const refused = await c.ask("ban", { target: "127.0.0.1", ms: 60_000 }, 2);
    assert.deepEqual([refused.ok, refused.error.code], [false, "REFUSED"]);
    assert.equal((await c.ask("unban", { target: "10.0.0.0/8" }, 3)).ok, true);
    const missing = await c.ask("unban", { target: "10.0.0.0/8" }, 4);
    assert.deepEqual([missing.id, missing.error.code], [4, "NOT_FOUND"]);
    assert.equal((await c.ask("kick", { id: 2 })).data.id, 2);
    assert.equal((await c.ask("kick", { id: 99 })).error.code, "NOT_FOUND");
    assert.deepEqual(backend.recorded.kicks, [2]);
    assert.deepEqual((await c.ask("reload")).data, {
      applied: ["REQUEST_RATE_PER_SEC"],
      needsRestart: ["PORT"],
    });
    backend.reloadResult = { errors: ['vento.conf:3: unknown key "PROT"'] };
    const bad = await c.ask("reload");
    assert.equal(bad.error.code, "REFUSED");
    assert.deepEqual(bad.error.details, ['vento.conf:3: unknown key "PROT"']);
    assert.deepEqual((await c.ask("drain")).data, { draining: true });
    assert.equal(backend.recorded.drains, 1);
    c.close();
  });
});

Deno.test("admin server answers bad JSON, bad version, unknown op and bad args without closing", async () => {
  await withServer(async ({ path }) => {
    const c = await RawClient.open(path);
    await c.send("{nope\n");
    assert.deepEqual((await c.next()).error.code, "BAD_JSON");
    await c.send(JSON.stringify({ v: 2, id: 3, op: "stats" }) + "\n");
    const v = await c.next();
    assert.deepEqual([v.id, v.error.code], [3, "BAD_VERSION"]);
    const u = await c.ask("explode", {}, 5);
    assert.deepEqual([u.id, u.ok, u.error.code], [5, false, "UNKNOWN_OP"]);
    assert.equal((await c.ask("kick", { id: "x" })).error.code, "BAD_ARGS");
    assert.equal((await c.ask("subscribe", { intervalMs: 10 })).error.code, "BAD_ARGS");
    // Still serving after all of that.
    assert.equal((await c.ask("hello", {}, 9)).ok, true);
    c.close();
  });
});

Deno.test("admin server answers an oversized line with LINE_TOO_LONG and closes", async () => {
  await withServer(async ({ path }) => {
    const c = await RawClient.open(path);
    // Sent without a newline in pieces: the cap applies to the unterminated line too.
    const big = "x".repeat(MAX_LINE_BYTES + 10);
    const sending = c.send(big).catch(() => {});
    const reply = await c.next();
    assert.equal(reply.error.code, "LINE_TOO_LONG");
    assert.equal(reply.id, null);
    assert.equal(await c.next(), null);
    await sending;
    c.close();
  });
});

Deno.test("admin server streams snapshots to a subscriber until unsubscribe", async () => {
  await withServer(async ({ path }) => {
    const c = await RawClient.open(path);
    await c.send(
      JSON.stringify({
        v: 1,
        id: 11,
        op: "subscribe",
        args: { intervalMs: 100, conns: true, bans: true, clients: 2 },
      }) + "\n",
    );
    const first = await c.next();
    const second = await c.next();
    for (const ev of [first, second]) {
      assert.deepEqual([ev.id, ev.ok, ev.event], [11, true, "snapshot"]);
      assert.equal(ev.data.conns.length, 3);
      assert.equal(ev.data.clients.length, 2);
    }
    assert.ok(second.data.stats.snapshot.requests > first.data.stats.snapshot.requests);
    await c.send(JSON.stringify({ v: 1, id: 12, op: "unsubscribe" }) + "\n");
    // Snapshots already in flight may precede the unsubscribe reply; nothing follows it.
    let m = await c.next();
    while (m.event === "snapshot") m = await c.next();
    assert.deepEqual([m.id, m.data], [12, { unsubscribed: true }]);
    c.close();
  });
});

Deno.test("admin server serves many clients at once", async () => {
  await withServer(async ({ path, server }) => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.open(path)));
    const replies = await Promise.all(clients.map((c, i) => c.ask("hello", {}, i)));
    assert.deepEqual(replies.map((r) => r.id), clients.map((_, i) => i));
    assert.equal(server.clientCount, 20);
    for (const c of clients) c.close();
  });
});

Deno.test("admin server drops a subscriber that stops reading", async () => {
  await withServer(async ({ path, backend, server }) => {
    // Big snapshots fill the socket buffer quickly when nobody reads.
    backend.conns_ = Array.from(
      { length: 3000 },
      (_, i) => ({ ...backend.conns_[0], id: i, request: "x".repeat(200) }),
    );
    const c = await RawClient.open(path);
    await c.send(
      JSON.stringify({ v: 1, id: 1, op: "subscribe", args: { intervalMs: 100, conns: true } }) + "\n",
    );
    const deadline = Date.now() + 5_000;
    while (server.clientCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.clientCount, 0, "the stalled subscriber is still connected");
    c.close();
  });
});

Deno.test("admin socket is created with mode 0600 and removed on close", async () => {
  const { dir, path } = await tempSocket();
  const server = await AdminServer.start(path, new FakeBackend(systemClock), systemClock);
  const st = await Deno.lstat(path);
  assert.ok(st.isSocket);
  assert.equal(st.mode! & 0o777, 0o600);
  await server.close();
  await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("admin server replaces a stale socket left by a crash", async () => {
  const { dir, path } = await tempSocket();
  // A process killed while listening leaves exactly what a crash leaves: the file, nobody behind it.
  const code = `Deno.listen({ transport: "unix", path: ${
    JSON.stringify(path)
  } }); Deno.kill(Deno.pid, "SIGKILL");`;
  const crashed = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "null" }).output();
  assert.equal(crashed.success, false);
  assert.ok((await Deno.lstat(path)).isSocket);
  const server = await AdminServer.start(path, new FakeBackend(systemClock), systemClock);
  const c = await RawClient.open(path);
  assert.equal((await c.ask("hello")).ok, true);
  c.close();
  await server.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a second admin server on a live socket throws AdminSocketInUse and leaves the first intact", async () => {
  await withServer(async ({ path }) => {
    await assert.rejects(
      () => AdminServer.start(path, new FakeBackend(systemClock), systemClock),
      AdminSocketInUse,
    );
    const c = await RawClient.open(path);
    assert.equal((await c.ask("hello")).ok, true);
    c.close();
  });
});

Deno.test("admin server refuses to replace a path that is not a socket", async () => {
  const { dir, path } = await tempSocket();
  await Deno.writeTextFile(path, "precious");
  await assert.rejects(
    () => AdminServer.start(path, new FakeBackend(systemClock), systemClock),
    /not a socket/,
  );
  assert.equal(await Deno.readTextFile(path), "precious");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("admin server: with every slot taken, a new client evicts the one idle the longest", async () => {
  const { dir, path } = await tempSocket();
  const clock = new FakeClock(1_000);
  const server = await AdminServer.start(path, new FakeBackend(clock), clock, DEFAULT_ADMIN_OPTIONS);
  const clients: RawClient[] = [];
  try {
    // One at a time, a millisecond apart: the first is the one idle the longest.
    for (let i = 0; i < MAX_ADMIN_CLIENTS; i++) {
      const c = await RawClient.open(path);
      assert.equal((await c.ask("hello", {}, i)).ok, true);
      clients.push(c);
      clock.advance(1);
    }
    // The first speaks again: now the second is the longest idle.
    assert.equal((await clients[0].ask("hello", {}, 99)).ok, true);
    clock.advance(1);
    const operator = await RawClient.open(path);
    assert.equal((await operator.ask("hello", {}, 100)).ok, true, "the operator got a slot");
    assert.equal(await clients[1].next(), null, "the longest-idle client was closed");
    assert.equal((await clients[0].ask("hello", {}, 101)).ok, true, "the others keep their slots");
    assert.equal(server.clientCount, MAX_ADMIN_CLIENTS);
    assert.equal(server.evicted, 1);
    operator.close();
  } finally {
    for (const c of clients) c.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin server closes a client that sends nothing for ADMIN_IDLE_TIMEOUT_MS, not a subscriber", async () => {
  const { dir, path } = await tempSocket();
  const server = await AdminServer.start(path, new FakeBackend(systemClock), systemClock, {
    idleTimeoutMs: 100,
    sendTimeoutMs: 10_000,
  });
  try {
    const silent = await RawClient.open(path);
    const sub = await RawClient.open(path);
    await sub.send(JSON.stringify({ v: 1, id: 1, op: "subscribe", args: { intervalMs: 100 } }) + "\n");
    assert.equal((await sub.next()).event, "snapshot");
    // Bounded: a broken idle timeout fails here instead of hanging the test.
    const closed = await Promise.race([
      silent.next().then((m) => m === null),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
    ]);
    assert.equal(closed, true, "the silent client was closed");
    for (let i = 0; i < 5; i++) assert.equal((await sub.next()).event, "snapshot", "the subscriber stays");
    assert.ok(server.timedOut >= 1);
    silent.close();
    sub.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin server closes a client that pipelines requests and never reads, after ADMIN_SEND_TIMEOUT_MS", async () => {
  const { dir, path } = await tempSocket();
  const backend = new FakeBackend(systemClock);
  // Big answers fill the socket buffer quickly when nobody reads.
  backend.conns_ = Array.from(
    { length: 3000 },
    (_, i) => ({ ...backend.conns_[0], id: i, request: "x".repeat(200) }),
  );
  const server = await AdminServer.start(path, backend, systemClock, {
    idleTimeoutMs: 60_000,
    sendTimeoutMs: 100,
  });
  try {
    const c = await RawClient.open(path);
    await c.send(
      Array.from({ length: 50 }, (_, i) => JSON.stringify({ v: 1, id: i, op: "conns" }) + "\n").join(""),
    );
    const deadline = Date.now() + 5_000;
    while (server.clientCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.clientCount, 0, "the client that never reads still holds its slot");
    assert.ok(server.timedOut >= 1);
    c.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin server answers INTERNAL when the backend throws, and keeps serving", async () => {
  const { dir, path } = await tempSocket();
  class BrokenBackend extends FakeBackend {
    override conns(): never {
      throw new Error("registry exploded");
    }
    override reload(): Promise<never> {
      return Promise.reject(new Error("disk on fire"));
    }
  }
  const server = await AdminServer.start(path, new BrokenBackend(systemClock), systemClock);
  const c = await RawClient.open(path);
  try {
    const conns = await c.ask("conns", {}, 5);
    assert.deepEqual([conns.id, conns.ok, conns.error.code], [5, false, "INTERNAL"]);
    assert.match(conns.error.message, /conns failed: registry exploded/);
    const reload = await c.ask("reload", {}, 6);
    assert.deepEqual([reload.id, reload.error.code], [6, "INTERNAL"]);
    assert.match(reload.error.message, /disk on fire/);
    // A subscription whose snapshot throws says so with its id instead of dying silently.
    const sub = await c.ask("subscribe", { intervalMs: 100, conns: true }, 7);
    assert.deepEqual([sub.id, sub.ok, sub.error.code], [7, false, "INTERNAL"]);
    assert.match(sub.error.message, /snapshot failed: registry exploded/);
    await c.send(JSON.stringify({ v: 1, id: 8, op: "unsubscribe" }) + "\n");
    let reply = await c.next();
    while (reply !== null && reply.id !== 8) reply = await c.next();
    assert.equal(reply?.ok, true);
    assert.equal((await c.ask("hello", {}, 9)).data.pid, 4242);
  } finally {
    c.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
