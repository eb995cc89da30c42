/**
 * Every setting that SETTINGS marks `reload: "live"` is changed by a real reload of a real conf file and
 * its effect checked on the wire (or, for what has no wire effect of its own, in the component that reads
 * it). The table below must name every live key: adding one without a check here fails the first test.
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import { loadConfig, SETTINGS } from "../../src/config/config.ts";
import { startVento, type Vento } from "../../src/app/vento.ts";

/** Loopback, limited like any client (ALLOWLIST empty), generous limits unless a probe lowers them. */
const BASE = [
  "PORT=0",
  "HOST=127.0.0.1",
  "ADMIN_SOCKET=off",
  "ACCESS_LOG=off",
  "ALLOWLIST=",
  "REQUEST_RATE_PER_SEC=100000",
  "REQUEST_BURST=100000",
  "CONN_RATE_PER_SEC=100000",
  "CONN_BURST=100000",
  // A small app (written beside the conf by the test), on a prefix that leaves /api/echo to the echo route.
  "APP=app.ts",
  "APP_PATHS=/app/",
  "",
].join("\n");
const H = "Host: t\r\n";

/** BASE with the `KEY=value` lines of `extra` replacing or joining its own (a key may be set once). */
function confWith(extra: string): string {
  const lines = new Map<string, string>();
  for (const line of `${BASE}\n${extra}`.split("\n")) {
    if (line.includes("=")) lines.set(line.slice(0, line.indexOf("=")), line);
  }
  return [...lines.values()].join("\n") + "\n";
}

/** A raw client from its own loopback address (each probe its own client key), collecting all it gets. */
class Client {
  received = "";
  closed = false;
  readonly #socket: net.Socket;
  readonly #closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => this.received += d);
    socket.on("error", () => {});
    this.#closedPromise = new Promise((r) => socket.once("close", () => r(void (this.closed = true))));
  }

  static connect(port: number, source: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: source });
      s.once("connect", () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }

  /** Stops reading (the kernel's buffers fill, then the server's writes stall). */
  pause(): void {
    this.#socket.pause();
  }

  send(text: string): void {
    this.#socket.write(text, "latin1");
  }

  /** Status codes received so far. */
  statuses(): number[] {
    return [...this.received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  }

  async until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) {
        throw new Error(`${what}: not seen in ${ms} ms; received ${JSON.stringify(this.received)}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      this.#closedPromise.then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms)),
    ]).finally(() => clearTimeout(timer));
  }

  close(): void {
    this.#socket.destroy();
  }
}

let nextSource = 10;
/** A loopback address no other probe used. */
function source(): string {
  nextSource++;
  return `127.0.${Math.floor(nextSource / 250)}.${(nextSource % 250) + 2}`;
}

interface Probe {
  keys: string[];
  conf: string;
  check(vento: Vento): Promise<void>;
}

/** Connects from a fresh address, sends `text`, waits for `n` answers; returns the client (open). */
async function ask(vento: Vento, text: string, n = 1): Promise<Client> {
  const c = await Client.connect(vento.addr.port, source());
  c.send(text);
  await c.until(`${n} answer(s)`, () => c.statuses().length >= n);
  return c;
}

async function status(vento: Vento, text: string): Promise<number> {
  const c = await ask(vento, text);
  c.close();
  return c.statuses()[0];
}

const PROBES: Probe[] = [
  {
    keys: ["MAX_REQUEST_LINE_BYTES"],
    conf: "MAX_REQUEST_LINE_BYTES=256",
    check: async (v) => assert.equal(await status(v, `GET /${"a".repeat(300)} HTTP/1.1\r\n${H}\r\n`), 414),
  },
  {
    keys: ["MAX_HEADER_BYTES"], // the request line must fit in the head
    conf: "MAX_HEADER_BYTES=1024\nMAX_REQUEST_LINE_BYTES=512",
    check: async (v) =>
      assert.equal(await status(v, `GET / HTTP/1.1\r\n${H}X-A: ${"a".repeat(1100)}\r\n\r\n`), 431),
  },
  {
    keys: ["MAX_HEADER_COUNT"],
    conf: "MAX_HEADER_COUNT=4",
    check: async (v) =>
      assert.equal(await status(v, `GET / HTTP/1.1\r\n${H}A: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n`), 431),
  },
  {
    keys: ["ECHO_MAX_BODY_BYTES"],
    conf: "ECHO_MAX_BODY_BYTES=10",
    check: async (v) =>
      assert.equal(
        await status(v, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\n01234567890`),
        413,
      ),
  },
  {
    keys: ["UNREAD_BODY_MAX_BYTES"],
    conf: "UNREAD_BODY_MAX_BYTES=4",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}Content-Length: 8\r\n\r\n01234567`);
      assert.match(c.received, /\r\nConnection: close\r\n/, "a body over the new bound is not read: close");
      c.close();
    },
  },
  {
    keys: ["MAX_REQUESTS_PER_CONN"],
    conf: "MAX_REQUESTS_PER_CONN=2",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\n${H}\r\n`, 2);
      assert.equal(c.received.match(/\r\nConnection: close\r\n/g)?.length, 1, "the second answer closes");
      assert.ok(await c.closedWithin(3000));
      c.close();
    },
  },
  {
    keys: ["HEADER_TIMEOUT_MS"],
    conf: "HEADER_TIMEOUT_MS=200",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n`);
      assert.deepEqual(c.statuses(), [408]);
      c.close();
    },
  },
  {
    keys: ["IDLE_TIMEOUT_MS"],
    conf: "IDLE_TIMEOUT_MS=200",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`);
      assert.ok(await c.closedWithin(3000), "closed after 200 ms idle");
    },
  },
  {
    keys: ["IDLE_TIMEOUT_BUSY_MS", "BUSY_THRESHOLD_PERCENT"],
    conf: "IDLE_TIMEOUT_BUSY_MS=200\nBUSY_THRESHOLD_PERCENT=1\nMAX_CONNS=50\nMAX_CONNS_PER_CLIENT=50",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`);
      assert.ok(await c.closedWithin(3000), "busy from the first connection: the busy idle timeout");
    },
  },
  {
    keys: ["BODY_IDLE_TIMEOUT_MS"],
    conf: "BODY_IDLE_TIMEOUT_MS=200",
    check: async (v) => {
      const c = await ask(v, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
      assert.deepEqual(c.statuses(), [408]);
      c.close();
    },
  },
  {
    keys: ["BODY_MIN_RATE_GRACE_MS", "BODY_MIN_RATE_BYTES_PER_SEC"],
    conf: "BODY_MIN_RATE_GRACE_MS=200\nBODY_MIN_RATE_BYTES_PER_SEC=100000",
    check: async (v) => {
      const c = await Client.connect(v.addr.port, source());
      c.send(`POST /api/echo HTTP/1.1\r\n${H}Content-Length: 1000\r\n\r\n`);
      for (let i = 0; i < 30 && c.statuses().length === 0; i++) {
        c.send("a");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(c.statuses(), [408], "a trickle below the new minimum rate");
      c.close();
    },
  },
  {
    keys: ["SEND_TIMEOUT_MS", "SEND_MIN_RATE_GRACE_MS", "SEND_MIN_RATE_BYTES_PER_SEC"],
    conf: "SEND_TIMEOUT_MS=300\nSEND_MIN_RATE_GRACE_MS=300\nSEND_MIN_RATE_BYTES_PER_SEC=1000000000",
    check: async (v) => {
      // A reader that never reads a large file: the server gives up on it within the new limits.
      const c = await Client.connect(v.addr.port, source());
      c.pause();
      c.send(`GET /big.bin HTTP/1.1\r\n${H}\r\n`);
      const end = Date.now() + 5000;
      while (v.server.connections().length > 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(v.server.connections().length, 0, "the stalled send is cut");
      c.close();
    },
  },
  {
    keys: ["SHUTDOWN_TIMEOUT_MS", "ADMIN_IDLE_TIMEOUT_MS", "ADMIN_SEND_TIMEOUT_MS"],
    conf: "SHUTDOWN_TIMEOUT_MS=1234\nADMIN_IDLE_TIMEOUT_MS=4321\nADMIN_SEND_TIMEOUT_MS=2345",
    // Read where they are used: shutdown and the admin server read the live config when they act.
    check: (v) => {
      assert.equal(v.config.shutdownTimeoutMs, 1234);
      assert.equal(v.config.adminIdleTimeoutMs, 4321);
      assert.equal(v.config.adminSendTimeoutMs, 2345);
      return Promise.resolve();
    },
  },
  {
    keys: ["REQUEST_RATE_PER_SEC", "REQUEST_BURST"],
    conf: "REQUEST_RATE_PER_SEC=1\nREQUEST_BURST=2",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`.repeat(3), 3);
      assert.deepEqual(c.statuses(), [200, 200, 429]);
      c.close();
    },
  },
  {
    keys: ["CONN_RATE_PER_SEC", "CONN_BURST"],
    conf: "CONN_RATE_PER_SEC=1\nCONN_BURST=1",
    check: async (v) => {
      const from = source();
      const a = await Client.connect(v.addr.port, from);
      const b = await Client.connect(v.addr.port, from);
      await b.until("refusal", () => b.statuses().length > 0);
      assert.deepEqual(b.statuses(), [429]);
      a.close();
      b.close();
    },
  },
  {
    keys: ["BAN_AFTER_VIOLATIONS", "VIOLATION_WINDOW_MS", "BAN_MS", "BAN_MAX_MS"],
    conf: "REQUEST_RATE_PER_SEC=1\nREQUEST_BURST=1\nBAN_AFTER_VIOLATIONS=1\nVIOLATION_WINDOW_MS=60000\n" +
      "BAN_MS=77000\nBAN_MAX_MS=77000",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`.repeat(2), 2);
      c.close();
      const bans = v.guard.bans();
      assert.equal(bans.length, 1, "one violation bans");
      assert.ok(bans[0].remainingMs > 60_000 && bans[0].remainingMs <= 77_000, `${bans[0].remainingMs}`);
      v.guard.unban(bans[0].key);
    },
  },
  {
    keys: ["BAN_LIST_CAPACITY"],
    conf: "BAN_LIST_CAPACITY=1",
    check: (v) => {
      assert.ok(v.guard.ban("192.0.2.1", 60_000, "t").ok);
      assert.ok(v.guard.ban("192.0.2.2", 60_000, "t").ok);
      assert.equal(v.guard.bans().length, 1, "the list holds one");
      for (const b of v.guard.bans()) v.guard.unban(b.key);
      return Promise.resolve();
    },
  },
  {
    keys: ["LIMIT_MODE"],
    conf: "REQUEST_RATE_PER_SEC=1\nREQUEST_BURST=1\nLIMIT_MODE=dry-run",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`.repeat(3), 3);
      assert.deepEqual(c.statuses(), [200, 200, 200], "dry-run refuses nothing");
      c.close();
    },
  },
  {
    keys: ["MAX_CONNS_PER_CLIENT"],
    conf: "MAX_CONNS_PER_CLIENT=1",
    check: async (v) => {
      const from = source();
      const a = await Client.connect(v.addr.port, from);
      const b = await Client.connect(v.addr.port, from);
      await b.until("refusal", () => b.statuses().length > 0);
      assert.deepEqual(b.statuses(), [503]);
      a.close();
      b.close();
    },
  },
  {
    keys: ["MAX_CONNS"],
    conf: "MAX_CONNS=1\nMAX_CONNS_PER_CLIENT=1",
    check: async (v) => {
      const a = await Client.connect(v.addr.port, source());
      const b = await Client.connect(v.addr.port, source());
      await b.until("refusal", () => b.statuses().length > 0);
      assert.deepEqual(b.statuses(), [503]);
      a.close();
      b.close();
      await new Promise((r) => setTimeout(r, 100)); // the slot frees once the server saw the close
    },
  },
  {
    keys: ["ALLOWLIST"],
    conf: "REQUEST_RATE_PER_SEC=1\nREQUEST_BURST=1\nALLOWLIST=127.0.0.0/8",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}\r\n`.repeat(3), 3);
      assert.deepEqual(c.statuses(), [200, 200, 200], "allowlisted: no rate");
      c.close();
    },
  },
  {
    keys: ["TRUSTED_PROXIES", "CLIENT_IPV6_PREFIX_BITS"],
    conf: "TRUSTED_PROXIES=127.0.0.0/8\nCLIENT_IPV6_PREFIX_BITS=48",
    check: async (v) => {
      const c = await ask(v, `GET / HTTP/1.1\r\n${H}X-Forwarded-For: 2001:db8:1:2::9\r\n\r\n`);
      c.close();
      const keys = v.guard.clients(100).map((r) => r.key);
      assert.ok(keys.includes("2001:db8:1::/48"), `the forwarded client keyed by /48: ${keys.join(" ")}`);
    },
  },
  {
    keys: ["ECHO"],
    conf: "ECHO=off",
    check: async (v) =>
      assert.equal(await status(v, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\na`), 405),
  },
  {
    keys: ["HEALTH_PATH"],
    conf: "HEALTH_PATH=/healthz",
    check: async (v) => {
      const c = await ask(v, `GET /healthz HTTP/1.1\r\n${H}\r\n`);
      assert.deepEqual(c.statuses(), [200]);
      assert.match(c.received, /\r\n\r\nok/);
      c.close();
    },
  },
  {
    keys: ["METRICS_PATH"],
    conf: "METRICS_PATH=/metrics",
    check: async (v) => {
      const c = await ask(v, `GET /metrics HTTP/1.1\r\n${H}\r\n`);
      assert.deepEqual(c.statuses(), [200]);
      await c.until("metrics text", () => c.received.includes("vento_requests_total"));
      c.close();
    },
  },
  {
    keys: ["HEALTH_ALLOWLIST", "METRICS_ALLOWLIST"],
    conf:
      "HEALTH_PATH=/healthz\nMETRICS_PATH=/metrics\nHEALTH_ALLOWLIST=192.0.2.0/24\nMETRICS_ALLOWLIST=192.0.2.0/24",
    // Outside the new allowlists, loopback gets the ordinary paths (no such files).
    check: async (v) => {
      assert.equal(await status(v, `GET /healthz HTTP/1.1\r\n${H}\r\n`), 404);
      assert.equal(await status(v, `GET /metrics HTTP/1.1\r\n${H}\r\n`), 404);
    },
  },
  {
    keys: ["APP_PATHS"],
    conf: "APP_PATHS=/x/",
    check: async (v) => {
      const c = await ask(v, `GET /x/hi HTTP/1.1\r\n${H}\r\n`);
      await c.until("the app's answer", () => c.received.includes("app /x/hi"));
      c.close();
    },
  },
  {
    keys: ["APP_FALLBACK"],
    conf: "APP_FALLBACK=on",
    check: async (v) => {
      const c = await ask(v, `GET /no-such-file HTTP/1.1\r\n${H}\r\n`);
      await c.until("the app's answer", () => c.received.includes("app /no-such-file"));
      c.close();
    },
  },
  {
    keys: ["APP_MAX_BODY_BYTES"],
    conf: "APP_MAX_BODY_BYTES=4",
    check: async (v) =>
      assert.equal(await status(v, `POST /app/a HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n0123456789`), 413),
  },
  {
    keys: ["APP_TIMEOUT_MS"],
    conf: "APP_TIMEOUT_MS=100",
    check: async (v) => assert.equal(await status(v, `GET /app/slow HTTP/1.1\r\n${H}\r\n`), 503),
  },
];

/** The app the APP probes talk to: echoes its path; `/app/slow` answers after 2 s. */
const APP_SOURCE = `export default {
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/app/slow") await new Promise((r) => setTimeout(r, 2000));
    if (req.body !== null) await req.arrayBuffer();
    return new Response("app " + path);
  },
};
`;

Deno.test("every live setting has a wire check below", () => {
  const live = SETTINGS.filter((s) => s.reload === "live").map((s) => s.key).sort();
  const checked = PROBES.flatMap((p) => p.keys).sort();
  assert.deepEqual(checked, live);
});

Deno.test("a reload applies every live setting, each seen taking effect", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-reload-live-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>hi</h1>\n");
  await Deno.writeTextFile(`${dir}/app.ts`, APP_SOURCE);
  await Deno.writeFile(`${dir}/www/big.bin`, new Uint8Array(32 * 1024 * 1024));
  const confPath = `${dir}/vento.conf`;
  await Deno.writeTextFile(confPath, BASE);
  const loaded = await loadConfig(confPath);
  assert.ok(loaded.ok);
  const vento = await startVento(loaded.config, { configPath: confPath, logError: () => {} });
  try {
    for (const p of PROBES) {
      await Deno.writeTextFile(confPath, confWith(p.conf));
      const r = await vento.reload();
      assert.ok(!("errors" in r), `${p.keys}: ${"errors" in r ? r.errors : ""}`);
      for (const k of p.keys) assert.ok(r.applied.includes(k), `${k} applied: ${r.applied}`);
      await p.check(vento);
      await Deno.writeTextFile(confPath, BASE);
      const back = await vento.reload();
      assert.ok(!("errors" in back));
    }
  } finally {
    await vento.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
