/**
 * WORKERS=2 end to end: the real supervisor and worker threads on one SO_REUSEPORT port (port 0 picked
 * by worker 0, shared by worker 1), talked to over raw loopback TCP. Serving from both workers; one
 * client spread over both held to the configured request rate (±10 %) and connection cap in all; the
 * admin channel's summed stats (over the real socket), kick and ban reaching every worker, a kick's
 * answer coming from the worker that holds (or does not hold) the connection; a crashed
 * worker restarted while the port keeps answering, its connection slots released; graceful shutdown.
 *
 * Never: sleeps to wait for an effect (every wait polls a condition with a deadline), or talks to
 * anything but 127.0.0.1 and the temp admin socket.
 */

import assert from "node:assert/strict";
import { type Config, DEFAULT_CONFIG, loadConfig } from "../../src/config/config.ts";
import { type Cluster, type ClusterOptions, startCluster } from "../../src/cluster/supervisor.ts";
import { globalConnId, splitConnId } from "../../src/cluster/protocol.ts";
import { RawClient, request } from "../_helpers/raw_client.ts";

const BODY = "<!doctype html><title>workers</title><h1>hello</h1>\n";
/** How long any single expected effect may take before the test fails. */
const EFFECT_TIMEOUT_MS = 10_000;
/** Connections one test opens to have both workers hold some (the kernel hashes each 4-tuple). */
const SPREAD_CONNS = 24;

interface Site {
  cluster: Cluster;
  port: number;
  dir: string;
  errors: string[];
  stop(): Promise<void>;
}

/**
 * Starts WORKERS=2 on port 0 in a temp folder; `admin` puts the admin socket at `<dir>/vento.sock`;
 * `watch` shortens the stuck-worker detection and observes it.
 */
async function startSite(
  overrides: Partial<Config> = {},
  admin = false,
  watch: Pick<ClusterOptions, "heartbeatTimeoutMs" | "onStuck" | "kickReplyTimeoutMs"> = {},
): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "vento-workers-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, BODY);
  const config: Config = {
    ...DEFAULT_CONFIG,
    host: "127.0.0.1",
    port: 0,
    documentRoot: `${dir}/www`,
    accessLog: "off",
    adminSocket: admin ? `${dir}/vento.sock` : "off",
    requestRatePerSec: 100_000,
    requestBurst: 100_000,
    connRatePerSec: 100_000,
    connBurst: 100_000,
    maxConnsPerClient: 1_000,
    shutdownTimeoutMs: 2_000,
    allowlist: [],
    ...overrides,
  };
  const errors: string[] = [];
  const cluster = await startCluster(config, 2, {
    configPath: null,
    logError: (m) => errors.push(m),
    ...watch,
  });
  return {
    cluster,
    port: cluster.addr.port,
    dir,
    errors,
    async stop() {
      await cluster.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + EFFECT_TIMEOUT_MS;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const GET_CLOSE = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
const GET = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/** Opens `n` keep-alive connections, each answered once (so each is registered by its worker). */
async function openServed(port: number, n: number): Promise<RawClient[]> {
  const clients: RawClient[] = [];
  for (let i = 0; i < n; i++) {
    const c = await RawClient.connect(port);
    clients.push(c);
    await c.send(GET);
    assert.equal((await c.read()).status, 200);
  }
  return clients;
}

/** One request over the site's admin socket (a connection of its own); the decoded reply line. */
async function adminAsk<T = { id: number }>(
  site: Site,
  op: string,
  args: Record<string, unknown>,
): Promise<{ ok: boolean; data?: T; error?: { code: string } }> {
  const sock = await Deno.connect({ transport: "unix", path: `${site.dir}/vento.sock` });
  try {
    await sock.write(new TextEncoder().encode(JSON.stringify({ v: 1, id: 1, op, args }) + "\n"));
    let text = "";
    const buf = new Uint8Array(64 * 1024);
    while (!text.includes("\n")) {
      const got = await sock.read(buf);
      if (got === null) break;
      text += new TextDecoder().decode(buf.subarray(0, got));
    }
    return JSON.parse(text.slice(0, text.indexOf("\n")));
  } finally {
    sock.close();
  }
}

/** Connections each worker holds now, from the admin view (connection id → worker index). */
async function connsPerWorker(site: Site): Promise<number[]> {
  const per = [0, 0];
  for (const c of await site.cluster.backend.conns()) per[splitConnId(c.id).index]++;
  return per;
}

Deno.test("WORKERS=2 serves from both worker threads on one port", async () => {
  const site = await startSite();
  try {
    assert.equal(site.cluster.running, 2);
    for (let i = 0; i < 40; i++) {
      const r = await request(site.port, GET_CLOSE);
      assert.equal(r.status, 200);
      assert.equal(r.text, BODY);
    }
    await until("both workers report accepted connections", () => {
      const per = site.cluster.workerStats().map((s) => s?.accepted ?? 0);
      return per[0] > 0 && per[1] > 0 && per[0] + per[1] === 40;
    });
  } finally {
    await site.stop();
  }
});

Deno.test("one client spread over both workers is held to the configured request rate in all (±10 %)", async () => {
  const ratePerSec = 100;
  const burst = 10;
  const site = await startSite({
    requestRatePerSec: ratePerSec,
    requestBurst: burst,
    banAfterViolations: 10_000_000,
  });
  try {
    // Each attempt on a fresh connection (a 429 closes it anyway), so the kernel spreads them.
    const windowMs = 3_000;
    let served = 0;
    let limited = 0;
    const attempts: number[] = [];
    const start = performance.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (performance.now() - start < windowMs) {
        attempts.push(performance.now());
        const r = await request(site.port, GET_CLOSE);
        if (r.status === 200) served++;
        else if (r.status === 429) limited++;
        else assert.fail(`unexpected status ${r.status}`);
      }
    }));
    const elapsedMs = performance.now() - start;
    await until("both workers took part", () => {
      const per = site.cluster.workerStats().map((s) => s?.accepted ?? 0);
      return per[0] > 50 && per[1] > 50;
    });
    assert.ok(
      limited > served,
      `the client tried far more than its rate (served ${served}, limited ${limited})`,
    );
    // Upper bound: what the limit allows over the whole window; per-worker limits would allow twice that.
    const allowed = burst + ratePerSec * elapsedMs / 1000;
    // Lower bound: the same, minus any stretch where a busy test machine left the client sending nothing.
    attempts.sort((a, b) => a - b);
    let idleMs = 0;
    const intervalMs = 1000 / ratePerSec;
    for (let i = 1; i < attempts.length; i++) {
      idleMs += Math.max(0, attempts[i] - attempts[i - 1] - intervalMs);
    }
    const owed = burst + ratePerSec * (elapsedMs - idleMs) / 1000;
    const detail = `served ${served} in ${elapsedMs.toFixed(0)} ms (client idle ${idleMs.toFixed(0)} ms); ` +
      `the global limit allows ${allowed.toFixed(0)}`;
    assert.ok(served <= allowed * 1.1, detail);
    assert.ok(served >= owed * 0.9, detail);
  } finally {
    await site.stop();
  }
});

Deno.test("the per-client connection cap counts connections on every worker", async () => {
  const site = await startSite({ maxConnsPerClient: 6 });
  const clients: RawClient[] = [];
  try {
    // The kernel picks the worker by a hash of the source port: all 6 admitted ones land on one worker
    // about once in 32 tries. Such a round proves nothing about the sum across workers, so it is retried.
    let spread = false;
    for (let attempt = 0; attempt < 6 && !spread; attempt++) {
      let refused = 0;
      for (let i = 0; i < 16; i++) {
        const c = await RawClient.connect(site.port);
        clients.push(c);
        await c.send(GET);
        const r = await c.read();
        if (r.status === 503) refused++;
        else assert.equal(r.status, 200);
      }
      assert.equal(refused, 10, "6 admitted in all, not 6 per worker");
      let per = [0, 0];
      await until("the 6 admitted ones are listed", async () => {
        per = await connsPerWorker(site);
        return per[0] + per[1] === 6;
      });
      spread = per[0] > 0 && per[1] > 0;
      for (const c of clients.splice(0)) c.close();
      await until("the round's connections are gone", async () => {
        const now = await connsPerWorker(site);
        return now[0] + now[1] === 0;
      });
    }
    assert.ok(spread, "in 6 rounds the admitted connections never sat on both workers");
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("MAX_CONNS counts connections on every worker: 4 served in all, the 5th refused, a close frees one", async () => {
  // The busy idle timeout would close the held connections at 4 of 4: keep it long for the test.
  const site = await startSite({ maxConns: 4, maxConnsPerClient: 4, idleTimeoutBusyMs: 15_000 });
  const clients: RawClient[] = [];
  try {
    // Whatever worker the kernel picks for each, all 4 are admitted (a share of 2 each refused the 3rd
    // on one worker whenever the spread was uneven).
    clients.push(...await openServed(site.port, 4));
    const fifth = await RawClient.connect(site.port);
    clients.push(fifth);
    await fifth.send(GET);
    assert.equal((await fifth.read()).status, 503, "the 5th connection is over MAX_CONNS");
    await until("the refusal is counted", () => {
      const per = site.cluster.workerStats().map((s) => s?.refused.global_cap ?? 0);
      return per[0] + per[1] === 1;
    });
    // The held ones are still served.
    for (const c of clients.slice(0, 4)) {
      await c.send(GET);
      assert.equal((await c.read()).status, 200);
    }
    clients.shift()!.close();
    // The worker notices the close and releases its place; a new connection is then served.
    await until("a new connection is served after one closed", async () => {
      const c = await RawClient.connect(site.port);
      clients.push(c);
      await c.send(GET);
      const status = (await c.read()).status;
      if (status !== 200) assert.equal(status, 503);
      return status === 200;
    });
    const over = await RawClient.connect(site.port);
    clients.push(over);
    await over.send(GET);
    assert.equal((await over.read()).status, 503, "full again at 4");
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("the admin socket sums both workers' stats", async () => {
  const site = await startSite({}, true);
  try {
    const n = 30;
    for (let i = 0; i < n; i++) assert.equal((await request(site.port, GET_CLOSE)).status, 200);
    await until("reports carry every request", () => site.cluster.stats().requests === n);
    type Snapshot = { requests: number; accepted: number; responses: Record<number, number> };
    const reply = await adminAsk<{ snapshot?: Snapshot } & Snapshot>(site, "stats", {});
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const data = reply.data!.snapshot ?? reply.data!;
    assert.equal(data.requests, n);
    assert.equal(data.accepted, n);
    assert.equal(data.responses[2], n);
    const per = site.cluster.workerStats().map((s) => s?.requests ?? 0);
    assert.ok(per[0] > 0 && per[1] > 0, `both workers served (${per.join(" + ")})`);
  } finally {
    await site.stop();
  }
});

Deno.test("kick closes a connection on whichever worker holds it", async () => {
  const site = await startSite();
  const clients = await openServed(site.port, SPREAD_CONNS);
  try {
    await until("the admin view lists every connection on both workers", async () => {
      const per = await connsPerWorker(site);
      return per[0] + per[1] === SPREAD_CONNS && per[0] > 0 && per[1] > 0;
    });
    const ids = (await site.cluster.backend.conns()).map((c) => c.id);
    for (const id of ids) assert.equal(await site.cluster.backend.kick(id), true);
    for (const c of clients) assert.ok(await c.closedWithin(EFFECT_TIMEOUT_MS), "kicked connection closed");
    // The workers answer, not the supervisor's list (which may still show them): gone is not found.
    for (const id of ids) assert.equal(await site.cluster.backend.kick(id), false);
    assert.equal(await site.cluster.backend.kick(globalConnId(999_999, 0)), false);
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("admin kick without any connection list at the supervisor: a made-up id is not found, a real one is kicked", async () => {
  // Nobody asks for `conns` here, so the supervisor holds no connection list: every answer is a worker's.
  const site = await startSite({}, true);
  const clients: RawClient[] = [];
  try {
    for (const index of [0, 1]) {
      const r = await adminAsk(site, "kick", { id: globalConnId(999_999, index) });
      assert.equal(r.ok, false, `made-up id on worker ${index}`);
      assert.equal(r.error?.code, "NOT_FOUND");
    }
    // A fresh worker numbers its connections from 1: the one connection is id 1 on whichever worker
    // the kernel gave it to, and the other worker has none.
    clients.push(...await openServed(site.port, 1));
    const answers = [];
    for (const index of [0, 1]) answers.push(await adminAsk(site, "kick", { id: globalConnId(1, index) }));
    const kicked = answers.filter((r) => r.ok);
    assert.equal(kicked.length, 1, JSON.stringify(answers));
    const id = kicked[0].data!.id;
    assert.equal(answers.find((r) => !r.ok)?.error?.code, "NOT_FOUND");
    assert.ok(await clients[0].closedWithin(EFFECT_TIMEOUT_MS), "kicked connection closed");
    const again = await adminAsk(site, "kick", { id });
    assert.equal(again.error?.code, "NOT_FOUND", "a closed connection cannot be kicked twice");
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("a kick a stuck worker never answers is reported not done after the reply timeout", async () => {
  const kickReplyTimeoutMs = 300;
  const site = await startSite({}, false, { kickReplyTimeoutMs });
  const clients: RawClient[] = [];
  try {
    clients.push(...await openServed(site.port, 1));
    // Muted workers stop answering kicks (as stuck ones would), yet still serve and shut down.
    site.cluster.muteWorker(0);
    site.cluster.muteWorker(1);
    const start = performance.now();
    const answers = await Promise.all([0, 1].map((i) => site.cluster.kick(globalConnId(1, i))));
    assert.deepEqual(answers, [false, false]);
    assert.ok(performance.now() - start >= kickReplyTimeoutMs - 20, "answered only at the timeout");
    await clients[0].send(GET);
    assert.equal((await clients[0].read()).status, 200, "the connection was not kicked");
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("a worker dying while a kick waits for its answer makes the kick answer false at once", async () => {
  // A reply timeout far beyond the test: only the death can answer, and its timer must not leak.
  const site = await startSite({}, false, { heartbeatTimeoutMs: 1_000, kickReplyTimeoutMs: 600_000 });
  try {
    site.cluster.muteWorker(0);
    const start = performance.now();
    assert.equal(await site.cluster.kick(globalConnId(1, 0)), false);
    assert.ok(performance.now() - start < EFFECT_TIMEOUT_MS, "answered at the death, not the timeout");
    assert.ok(site.errors.some((e) => /worker 0 died \(no report for/.test(e)), site.errors.join("\n"));
    await until("the stuck worker was restarted", () => site.cluster.restarts === 1);
    assert.equal(
      await site.cluster.kick(globalConnId(1, 0)),
      false,
      "the restarted worker has no connections",
    );
  } finally {
    await site.stop();
  }
});

Deno.test("the first one-shot conns, with no admin query before it, lists every open connection", async () => {
  const site = await startSite({}, true);
  const clients = await openServed(site.port, SPREAD_CONNS);
  try {
    // No admin client has looked before, so no report carries the lists: the workers must be asked.
    const r = await adminAsk<{ id: number }[]>(site, "conns", {});
    assert.equal(r.ok, true);
    assert.equal(r.data!.length, SPREAD_CONNS, "a one-shot conns answered from stale lists");
    // And again at once: the lists just asked for are current, not a repeat of an older report.
    clients.pop()!.close();
    await until("the closed connection is gone from the next one-shot conns", async () => {
      const again = await adminAsk<{ id: number }[]>(site, "conns", {});
      return again.data!.length === SPREAD_CONNS - 1;
    });
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("a ban reaches every worker: open connections close, new ones are refused, unban restores", async () => {
  const site = await startSite();
  const clients = await openServed(site.port, SPREAD_CONNS);
  try {
    await until("connections on both workers", async () => {
      const per = await connsPerWorker(site);
      return per[0] > 0 && per[1] > 0;
    });
    assert.deepEqual(site.cluster.backend.ban("127.0.0.1", 60_000, "test"), { ok: true });
    for (const c of clients) assert.ok(await c.closedWithin(EFFECT_TIMEOUT_MS), "banned connection closed");
    // Refused at accept on both workers: closed before any byte, whichever worker the kernel picks.
    for (let i = 0; i < 16; i++) {
      const c = await RawClient.connect(site.port);
      try {
        await c.send(GET).catch(() => {});
        assert.equal((await c.readToEnd()).length, 0, "a banned peer gets nothing");
      } finally {
        c.close();
      }
    }
    await until("both workers refused", () => {
      const per = site.cluster.workerStats().map((s) => s?.refused.banned ?? 0);
      return per[0] > 0 && per[1] > 0;
    });
    await until("the ban is listed once", async () => {
      const bans = await site.cluster.backend.bans();
      return bans.length === 1 && bans[0].key === "127.0.0.1";
    });
    assert.equal(site.cluster.stats().bansAdded, 1, "an operator ban counts once, not once per worker");
    assert.equal(site.cluster.backend.unban("127.0.0.1"), true);
    // The unban reaches each worker by message: until every worker has it, a request may still be closed
    // unanswered by one that has not, so a round counts only when all its requests were served.
    await until("served again after unban", async () => {
      for (let i = 0; i < 8; i++) {
        const ok = await request(site.port, GET_CLOSE).then((r) => r.status === 200, () => false);
        if (!ok) return false;
      }
      return true;
    });
    for (let i = 0; i < 10; i++) assert.equal((await request(site.port, GET_CLOSE)).status, 200);
  } finally {
    for (const c of clients) c.close();
    await site.stop();
  }
});

Deno.test("a crashed worker is restarted and logged; the port keeps answering; its slots are released", async () => {
  const site = await startSite({ maxConnsPerClient: 8 });
  const held = await openServed(site.port, 8);
  try {
    await until("connections on both workers", async () => {
      const per = await connsPerWorker(site);
      return per[0] + per[1] === 8 && per[0] > 0 && per[1] > 0;
    });
    const onZero = (await connsPerWorker(site))[0];
    site.cluster.crashWorker(0);
    // While worker 0 is down and restarting, the other one answers every new connection.
    let ok = 0;
    let failed = 0;
    const start = performance.now();
    while (site.cluster.restarts === 0 && performance.now() - start < EFFECT_TIMEOUT_MS) {
      try {
        const r = await request(site.port, GET_CLOSE);
        // 503 while the dead worker's slots were still counted against the cap of 8.
        if (r.status === 200 || r.status === 503) ok++;
        else failed++;
      } catch {
        failed++; // reset by the dying worker's listener: at most the few in its queue
      }
    }
    assert.equal(site.cluster.restarts, 1);
    assert.equal(site.cluster.running, 2);
    assert.ok(ok > 0 && failed <= 3, `answered ${ok}, failed ${failed} while a worker restarted`);
    assert.ok(site.errors.some((e) => /worker 0 died/.test(e)), site.errors.join("\n"));
    assert.ok(site.errors.some((e) => /worker 0 restarted/.test(e)), site.errors.join("\n"));
    // Worker 0's connections died with it and their pins were released: the cap admits that many again.
    const fresh = await openServed(site.port, onZero);
    held.push(...fresh);
    for (let i = 0; i < 20; i++) assert.equal((await request(site.port, GET_CLOSE)).status, 503);
  } finally {
    for (const c of held) c.close();
    await site.stop();
  }
});

Deno.test("a silent worker (no reports) is declared stuck, terminated and restarted; the port answers", async () => {
  const stuck: number[] = [];
  const site = await startSite({}, false, { heartbeatTimeoutMs: 1_000, onStuck: (i) => stuck.push(i) });
  try {
    site.cluster.muteWorker(1);
    await until("the stuck worker was restarted", () => site.cluster.restarts === 1);
    assert.ok(site.errors.some((e) => /worker 1 died \(no report for/.test(e)), site.errors.join("\n"));
    await until("both workers running", () => site.cluster.running === 2);
    for (let i = 0; i < 20; i++) assert.equal((await request(site.port, GET_CLOSE)).status, 200);
    assert.deepEqual(stuck, [1]);
  } finally {
    await site.stop();
  }
});

Deno.test("reload re-reads the config in every worker: a new per-client cap holds across both", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-workers-reload-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, BODY);
  const confPath = `${dir}/vento.conf`;
  const conf = (cap: number) =>
    `PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nACCESS_LOG=off\nADMIN_SOCKET=off\nWORKERS=2\n` +
    `REQUEST_RATE_PER_SEC=100000\nREQUEST_BURST=100000\nCONN_RATE_PER_SEC=100000\nCONN_BURST=100000\n` +
    `MAX_CONNS_PER_CLIENT=${cap}\nALLOWLIST=\n`;
  await Deno.writeTextFile(confPath, conf(100));
  const loaded = await loadConfig(confPath);
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.messages.join("\n"));
  const cluster = await startCluster(loaded.config, 2, { configPath: confPath, logError: () => {} });
  const clients: RawClient[] = [];
  try {
    await Deno.writeTextFile(confPath, conf(3));
    assert.deepEqual(await cluster.reload(), { applied: ["MAX_CONNS_PER_CLIENT"], needsRestart: [] });
    let refused = 0;
    for (let i = 0; i < 12; i++) {
      const c = await RawClient.connect(cluster.addr.port);
      clients.push(c);
      await c.send(GET);
      if ((await c.read()).status === 503) refused++;
    }
    assert.equal(refused, 9, "3 admitted in all after the reload");
    await until("both workers saw the client (and so both applied the new cap)", () => {
      const seen = cluster.workerStats().map((s) => s === null ? 0 : s.accepted + s.refused.client_cap);
      return seen[0] > 0 && seen[1] > 0 && seen[0] + seen[1] === 12;
    });
    assert.equal(cluster.backend.limits().maxConns, DEFAULT_CONFIG.maxConns);
  } finally {
    for (const c of clients) c.close();
    await cluster.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("graceful shutdown stops every worker: idle connections close, the port stops answering", async () => {
  const site = await startSite();
  const clients = await openServed(site.port, SPREAD_CONNS);
  await until("connections on both workers", async () => {
    const per = await connsPerWorker(site);
    return per[0] > 0 && per[1] > 0;
  });
  site.cluster.backend.drain(); // the admin `drain`, as SIGTERM does
  await site.cluster.done;
  for (const c of clients) {
    assert.ok(await c.closedWithin(EFFECT_TIMEOUT_MS), "idle keep-alive connection closed at shutdown");
    c.close();
  }
  await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port: site.port }));
  assert.equal(site.cluster.running, 0);
  await Deno.remove(site.dir, { recursive: true });
});

Deno.test("a forced stop has every worker write its access log's last lines, and removes the admin socket", async () => {
  const base = await Deno.makeTempDir({ prefix: "vento-workers-force-" });
  const site = await startSite({ accessLog: `${base}/access.log` }, true);
  const clients = await openServed(site.port, SPREAD_CONNS);
  try {
    await until("connections on both workers", async () => {
      const per = await connsPerWorker(site);
      return per[0] > 0 && per[1] > 0;
    });
    // Within the log's batching interval: these lines are still in the workers' memory.
    for (const c of clients) {
      await c.send(GET);
      assert.equal((await c.read()).status, 200);
    }
    await site.cluster.forceStop();
    const lines = (await Deno.readTextFile(`${base}/access.log`)).split("\n").filter((l) => l !== "");
    assert.equal(lines.length, SPREAD_CONNS * 2, "every answered request is in the log");
    await assert.rejects(() => Deno.lstat(`${site.dir}/vento.sock`), Deno.errors.NotFound);
    assert.equal(site.cluster.running, 0);
  } finally {
    for (const c of clients) c.close();
    await Deno.remove(site.dir, { recursive: true });
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a WORKERS=2 reload whose access log cannot be opened applies nothing in any worker", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-workers-reload-log-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.mkdir(`${dir}/logs`);
  await Deno.writeTextFile(`${dir}/www/index.html`, BODY);
  const confPath = `${dir}/vento.conf`;
  const conf = (cap: number) =>
    `PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nACCESS_LOG=logs/access.log\nADMIN_SOCKET=off\nWORKERS=2\n` +
    `REQUEST_RATE_PER_SEC=100000\nREQUEST_BURST=100000\nCONN_RATE_PER_SEC=100000\nCONN_BURST=100000\n` +
    `MAX_CONNS_PER_CLIENT=${cap}\n`;
  await Deno.writeTextFile(confPath, conf(100));
  const loaded = await loadConfig(confPath);
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.messages.join("\n"));
  const cluster = await startCluster(loaded.config, 2, { configPath: confPath, logError: () => {} });
  const clients: RawClient[] = [];
  try {
    await Deno.remove(`${dir}/logs`, { recursive: true });
    await Deno.writeTextFile(confPath, conf(3));
    const r = await cluster.reload();
    assert.ok(
      "errors" in r && /reopening the access log .*nothing was applied/.test(r.errors.join()),
      String(r),
    );
    // The old cap (100) still holds in both workers: 12 connections are all served.
    for (let i = 0; i < 12; i++) {
      const c = await RawClient.connect(cluster.addr.port);
      clients.push(c);
      await c.send(GET);
      assert.equal((await c.read()).status, 200, "a refused reload changed the per-client cap");
    }
  } finally {
    for (const c of clients) c.close();
    await cluster.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
