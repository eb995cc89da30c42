/**
 * End-to-end tests of an accept-time verdict that arrives later (as GUARD_STORE's shared connection rate
 * makes it): the real server with a gate that holds each verdict until the test releases it. The socket
 * is not read meanwhile; one whose verdict arrives after shutdown is closed unserved and its ticket
 * released. No Redis needed.
 */

import assert from "node:assert/strict";
import { NodeClient } from "../_helpers/node_client.ts";
import { startTestServer } from "../_helpers/server.ts";
import type { Vento } from "../../src/app/vento.ts";
import type { ConnGate, ConnGateVerdict } from "../../src/net/server.ts";

/** Longest wait for an effect the test causes. */
const EFFECT_LIMIT_MS = 1_000;
const GET = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = performance.now() + EFFECT_LIMIT_MS;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(10);
  }
}

/** A real server whose gate is the guard with each connection's verdict held until `next()` releases it. */
async function withLateGate(
  fn: (port: number, gate: { calls: number; next(): void }, vento: Vento) => Promise<void>,
): Promise<void> {
  const held: (() => void)[] = [];
  const late = {
    calls: 0,
    next() {
      held.shift()!();
    },
  };
  const s = await startTestServer({}, undefined, {
    gate: (guard): ConnGate => ({
      admitConnection: (remoteIp) => {
        late.calls++;
        const v = guard.admitConnection(remoteIp);
        return new Promise<ConnGateVerdict>((resolve) => held.push(() => resolve(v)));
      },
      admitRequest: (ticket, forwardedFor) => guard.admitRequest(ticket, forwardedFor),
      release: (ticket) => guard.release(ticket),
      idleTimeoutMs: () => guard.idleTimeoutMs(),
      tick: () => guard.tick(),
    }),
  });
  try {
    await fn(s.port, late, s.vento);
  } finally {
    await s.stop();
    while (held.length > 0) late.next();
  }
}

Deno.test("a connection whose verdict arrives later is not read until then, then served", () =>
  withLateGate(async (port, gate, vento) => {
    const c = await NodeClient.connect(port, { localAddress: "127.0.0.29" });
    try {
      await c.send(GET);
      await until("the gate is asked", () => gate.calls === 1);
      await sleep(50);
      assert.equal(c.bytesReceived, 0, "nothing is answered before the verdict");
      assert.equal(vento.stats.accepted, 0);
      gate.next();
      assert.equal((await c.read()).status, 200);
      assert.equal(vento.stats.accepted, 1);
    } finally {
      await c.close();
    }
  }));

Deno.test("a verdict arriving during shutdown: the socket is closed unserved and the ticket released", () =>
  withLateGate(async (port, gate, vento) => {
    const c = await NodeClient.connect(port, { localAddress: "127.0.0.30" });
    try {
      await c.send(GET);
      await until("the gate is asked", () => gate.calls === 1);
      assert.equal(vento.guard.openConns, 1, "the guard admitted it; the server waits for the verdict");
      await vento.shutdown();
      assert.equal(await c.closedWithin(EFFECT_LIMIT_MS), true, "closed by shutdown: it never spoke");
      assert.equal(c.bytesReceived, 0);
      gate.next(); // the verdict (ok) arrives after everything closed
      await until("the ticket is released", () => vento.guard.openConns === 0);
      assert.equal(vento.stats.accepted, 0);
    } finally {
      await c.close();
    }
  }));
