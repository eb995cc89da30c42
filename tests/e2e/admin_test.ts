/**
 * The admin channel against the REAL server: `startVento` with a temp vento.conf (read through
 * `loadConfig`, so `reload` re-reads the same file), the admin socket spoken in raw NDJSON, HTTP clients
 * bound to chosen loopback sources (127.0.0.5, 127.0.0.9) with node:net's `localAddress` so one of them
 * can be banned while the others keep being served. Also `vento-admin` as a subprocess, and the metrics
 * text checked by a small Prometheus text-format (0.0.4) parser written here, not borrowed from the server.
 * Last, `vento-admin top` driven in a private tmux server against live traffic (skipped, saying why,
 * when tmux is absent): the screen shows the connection, `b` bans it, `q` restores the terminal.
 *
 * Never: sleeps to wait for an effect (every wait polls a condition with a deadline), or talks to
 * anything but 127.0.0.0/8 and the temp socket.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config/config.ts";
import { startVento, type Vento } from "../../src/app/vento.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ADMIN_MAIN = `${ROOT}cli/main.ts`;
/** How long any single expected effect may take before the test fails. */
const EFFECT_TIMEOUT_MS = 5_000;
/** How long `vento-admin top` may take to start and draw (a cold `deno run` on a busy machine). */
const TOP_START_TIMEOUT_MS = 20_000;
const BODY = "<!doctype html><title>admin e2e</title><h1>hello</h1>\n";

const BASE_CONF = `# written by tests/e2e/admin_test.ts
PORT=0
HOST=127.0.0.1
DOCUMENT_ROOT=www
ACCESS_LOG=off
ADMIN_SOCKET=vento.sock
REQUEST_RATE_PER_SEC=100000
REQUEST_BURST=100000
CONN_RATE_PER_SEC=100000
CONN_BURST=100000
ALLOWLIST=
`;

// --- a real server from a real conf file -------------------------------------------------------------

interface Site {
  dir: string;
  confPath: string;
  socket: string;
  vento: Vento;
  port: number;
  errors: string[];
  stop(): Promise<void>;
}

async function startSite(extraConf = "", base = BASE_CONF): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "vento-admin-e2e-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.mkdir(`${dir}/logs`);
  await Deno.writeTextFile(`${dir}/www/index.html`, BODY);
  const confPath = `${dir}/vento.conf`;
  // A test's own ALLOWLIST replaces the base one (a key may be set once).
  const conf = /^ALLOWLIST=/m.test(extraConf) ? base.replace("ALLOWLIST=\n", "") : base;
  await Deno.writeTextFile(confPath, conf + extraConf);
  const loaded = await loadConfig(confPath);
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.messages.join("\n"));
  const errors: string[] = [];
  const vento = await startVento(loaded.config, { configPath: confPath, logError: (m) => errors.push(m) });
  return {
    dir,
    confPath,
    socket: loaded.config.adminSocket,
    vento,
    port: vento.addr.port,
    errors,
    async stop() {
      await vento.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function withSite(extraConf: string, fn: (site: Site) => Promise<void>): Promise<void> {
  const site = await startSite(extraConf);
  try {
    await fn(site);
  } finally {
    await site.stop();
  }
}

/** Polls `check` until it returns a value other than undefined/false, or fails after the deadline. */
async function eventually<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = EFFECT_TIMEOUT_MS,
): Promise<Exclude<T, false | undefined>> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as Exclude<T, false | undefined>;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// --- raw NDJSON admin client -----------------------------------------------------------------------

interface Reply {
  v: number;
  id: number | null;
  ok: boolean;
  data?: unknown;
  event?: string;
  error?: { code: string; message: string; details?: string[] };
}

/** The admin socket spoken by hand: one JSON object per line out, replies matched by id. */
class RawAdmin {
  #conn: Deno.UnixConn;
  #buf = "";
  #lines: Reply[] = [];
  #nextId = 1;
  #dec = new TextDecoder();

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async connect(path: string): Promise<RawAdmin> {
    return new RawAdmin(await Deno.connect({ transport: "unix", path }));
  }

  async sendLine(line: string): Promise<void> {
    const bytes = new TextEncoder().encode(line + "\n");
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** Next line from the server (null at EOF). */
  async next(): Promise<Reply | null> {
    const chunk = new Uint8Array(64 * 1024);
    while (this.#lines.length === 0) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        this.#lines.push(JSON.parse(this.#buf.slice(0, nl)));
        this.#buf = this.#buf.slice(nl + 1);
        continue;
      }
      const n = await this.#conn.read(chunk);
      if (n === null) return null;
      this.#buf += this.#dec.decode(chunk.subarray(0, n), { stream: true });
    }
    return this.#lines.shift()!;
  }

  /** Sends `{"v":1,"id":…,"op":op,"args":args}` and returns the reply carrying that id. */
  async call(op: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.#nextId++;
    await this.sendLine(JSON.stringify({ v: 1, id, op, args }));
    for (;;) {
      const r = await this.next();
      if (r === null) throw new Error(`admin socket closed before the reply to ${op}`);
      if (r.id === id && r.event === undefined) return r;
    }
  }

  /** Like `call`, asserting success, returning the data. */
  async ok<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const r = await this.call(op, args);
    assert.equal(r.ok, true, `${op} failed: ${JSON.stringify(r.error)}`);
    assert.equal(r.v, 1);
    return r.data as T;
  }

  close(): void {
    this.#conn.close();
  }
}

async function withAdmin(site: Site, fn: (a: RawAdmin) => Promise<void>): Promise<void> {
  const admin = await RawAdmin.connect(site.socket);
  try {
    await fn(admin);
  } finally {
    admin.close();
  }
}

interface ConnRow {
  id: number;
  remote: string;
  remotePort: number;
  key: string;
  state: string;
  ageMs: number;
  requests: number;
  bytesIn: number;
  bytesOut: number;
  request: string;
}

// --- HTTP from a chosen loopback source --------------------------------------------------------------

/**
 * A raw TCP client bound to `source` (Deno.connect cannot choose a source address; node:net can).
 * Records every byte received and when the peer closed, so "refused with no bytes" is observable.
 */
class SourcedClient {
  readonly socket: net.Socket;
  received = "";
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (this.received += d));
    // Resets after a kick are expected; the test looks at `closed`, not at the error.
    socket.on("error", () => {});
    this.closedPromise = new Promise((r) =>
      socket.once("close", () => {
        this.closed = true;
        r();
      })
    );
  }

  static connect(port: number, source: string): Promise<SourcedClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: source });
      const c = new SourcedClient(s);
      s.once("connect", () => resolve(c));
      s.once("error", reject);
    });
  }

  get localPort(): number {
    return this.socket.localPort!;
  }

  /** Sends a keep-alive GET and resolves with the status code of its complete response. */
  async get(path = "/"): Promise<number> {
    const from = this.received.length;
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`);
    return await eventually(`a response to GET ${path}`, () => {
      if (this.closed && this.received.length === from) throw new Error("closed with no response");
      const text = this.received.slice(from);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length < end + 4 + len) return undefined;
      return Number(text.slice(9, 12));
    });
  }

  /** Waits for the peer to close; fails if it does not within the deadline. */
  async waitClosed(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.closedPromise,
        new Promise((_, reject) =>
          timer = setTimeout(() => reject(new Error("the server did not close")), EFFECT_TIMEOUT_MS)
        ),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.socket.destroy();
    await this.closedPromise;
  }
}

// --- a Prometheus text exposition format (0.0.4) parser ------------------------------------------------

interface MetricFamily {
  type: string;
  help: string | null;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*,?)?\})? ([^ ]+)(?: (-?\d+))?$/;
const VALUE = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/**
 * Parses Prometheus text exposition 0.0.4 strictly: every line a HELP, TYPE, comment or sample of the
 * grammar; TYPE before a family's samples and at most once; a family's lines contiguous; label names
 * unique per sample and label sets unique per family; the text ends with a newline. Throws naming the line.
 */
function parsePrometheus(text: string): Map<string, MetricFamily> {
  assert.ok(text.endsWith("\n"), "exposition must end with a newline");
  const families = new Map<string, MetricFamily>();
  const finished = new Set<string>();
  let current: string | null = null;
  const enter = (name: string, lineNo: number): MetricFamily => {
    if (current !== name) {
      if (current !== null) finished.add(current);
      if (finished.has(name)) throw new Error(`line ${lineNo}: lines of ${name} are not contiguous`);
      current = name;
    }
    let f = families.get(name);
    if (f === undefined) families.set(name, f = { type: "untyped", help: null, samples: [] });
    return f;
  };
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, i) => {
    const n = i + 1;
    if (line === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // an ordinary comment
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`line ${n}: bad metric name ${name}`);
      const f = enter(name, n);
      if (kind === "HELP") {
        if (f.help !== null) throw new Error(`line ${n}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new Error(`line ${n}: bad escape in HELP`);
        f.help = rest;
      } else {
        if (!TYPES.has(rest)) throw new Error(`line ${n}: unknown type ${rest}`);
        if (f.samples.length > 0 || f.type !== "untyped") throw new Error(`line ${n}: TYPE after samples`);
        f.type = rest;
      }
      return;
    }
    const m = SAMPLE_LINE.exec(line);
    if (m === null) throw new Error(`line ${n}: not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText, value] = m;
    if (!VALUE.test(value)) throw new Error(`line ${n}: bad value ${value}`);
    const labels: Record<string, string> = {};
    if (labelText !== undefined) {
      for (const lm of labelText.slice(1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        if (!LABEL_NAME.test(lm[1])) throw new Error(`line ${n}: bad label name ${lm[1]}`);
        if (lm[1] in labels) throw new Error(`line ${n}: label ${lm[1]} repeated`);
        labels[lm[1]] = lm[2];
      }
    }
    const f = enter(name, n);
    const set = JSON.stringify(Object.entries(labels).sort());
    if (f.samples.some((s) => JSON.stringify(Object.entries(s.labels).sort()) === set)) {
      throw new Error(`line ${n}: duplicate sample ${name}${labelText ?? ""}`);
    }
    f.samples.push({ name, labels, value: Number(value.replace("Inf", "Infinity")) });
  });
  return families;
}

// --- the CLI ---------------------------------------------------------------------------------------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[]): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `--config=${ROOT}deno.json`, ADMIN_MAIN, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

// --- tests -----------------------------------------------------------------------------------------

Deno.test("admin hello, stats and conns describe the real server and a live raw TCP connection", async () => {
  await withSite("", async (site) => {
    const client = await SourcedClient.connect(site.port, "127.0.0.5");
    try {
      assert.equal(await client.get("/"), 200);
      await withAdmin(site, async (admin) => {
        const hello = await admin.ok<{ pid: number; listen: string[]; configPath: string; protocol: number }>(
          "hello",
        );
        assert.equal(hello.pid, Deno.pid);
        assert.deepEqual(hello.listen, [`127.0.0.1:${site.port}`]);
        assert.equal(hello.configPath, site.confPath);
        assert.equal(hello.protocol, 1);

        const stats = await admin.ok<{ snapshot: { open: number; requests: number }; maxConns: number }>(
          "stats",
        );
        assert.ok(stats.snapshot.open >= 1, JSON.stringify(stats.snapshot));
        assert.ok(stats.snapshot.requests >= 1);
        assert.equal(stats.maxConns, site.vento.config.maxConns);

        const conns = await admin.ok<ConnRow[]>("conns");
        const mine = conns.find((c) => c.remotePort === client.localPort);
        assert.ok(mine !== undefined, JSON.stringify(conns));
        assert.equal(mine.remote, "127.0.0.5");
        assert.equal(mine.key, "127.0.0.5");
        assert.equal(mine.requests, 1);
        assert.equal(mine.state, "idle");
        assert.ok(mine.bytesOut > BODY.length && mine.bytesIn > 0);

        // Protocol errors from the real server keep the connection usable.
        await admin.sendLine("{not json");
        assert.equal((await admin.next())?.error?.code, "BAD_JSON");
        assert.equal((await admin.call("nope")).error?.code, "UNKNOWN_OP");
        assert.equal((await admin.ok<{ pid: number }>("hello")).pid, Deno.pid);
      });
    } finally {
      await client.close();
    }
  });
});

Deno.test("admin ban kicks the client's open connections and refuses its next one; unban serves it again", async () => {
  await withSite("", async (site) => {
    const victim = await SourcedClient.connect(site.port, "127.0.0.5");
    const bystander = await SourcedClient.connect(site.port, "127.0.0.6");
    const late: SourcedClient[] = [];
    try {
      assert.equal(await victim.get("/"), 200);
      assert.equal(await bystander.get("/"), 200);
      await withAdmin(site, async (admin) => {
        const banned = await admin.ok<{ target: string; ms: number }>("ban", {
          target: "127.0.0.5",
          ms: 60_000,
          reason: "e2e",
        });
        assert.deepEqual(banned, { target: "127.0.0.5", ms: 60_000 });
        await victim.waitClosed();

        const bans = await admin.ok<{ key: string; reason: string; remainingMs: number }[]>("bans");
        const ban = bans.find((b) => b.key === "127.0.0.5");
        assert.ok(ban !== undefined, JSON.stringify(bans));
        assert.equal(ban.reason, "e2e");
        assert.ok(ban.remainingMs > 50_000 && ban.remainingMs <= 60_000);

        // The next connection is accepted by the kernel and closed at once: not one byte, not even a 403.
        const refused = await SourcedClient.connect(site.port, "127.0.0.5");
        late.push(refused);
        await refused.waitClosed();
        assert.equal(refused.received, "");
        const stats = await admin.ok<{ snapshot: { refused: Record<string, number> } }>("stats");
        assert.ok(stats.snapshot.refused.banned >= 1, JSON.stringify(stats.snapshot.refused));

        // Another client is untouched.
        assert.equal(bystander.closed, false);
        assert.equal(await bystander.get("/"), 200);

        assert.deepEqual(await admin.ok("unban", { target: "127.0.0.5" }), { target: "127.0.0.5" });
        assert.deepEqual(await admin.ok("bans"), []);
        const back = await SourcedClient.connect(site.port, "127.0.0.5");
        late.push(back);
        assert.equal(await back.get("/"), 200);

        // Unbanning what is not banned is NOT_FOUND.
        assert.equal((await admin.call("unban", { target: "127.0.0.5" })).error?.code, "NOT_FOUND");
      });
    } finally {
      await Promise.all([victim, bystander, ...late].map((c) => c.close()));
    }
  });
});

Deno.test("admin ban of a CIDR kicks every open connection inside it and none outside", async () => {
  await withSite("", async (site) => {
    const inside = await SourcedClient.connect(site.port, "127.0.0.9");
    const outside = await SourcedClient.connect(site.port, "127.0.0.5");
    const late: SourcedClient[] = [];
    try {
      assert.equal(await inside.get("/"), 200);
      assert.equal(await outside.get("/"), 200);
      await withAdmin(site, async (admin) => {
        await admin.ok("ban", { target: "127.0.0.8/30", ms: 60_000 });
        await inside.waitClosed();
        const refused = await SourcedClient.connect(site.port, "127.0.0.10");
        late.push(refused);
        await refused.waitClosed();
        assert.equal(refused.received, "");
        assert.equal(await outside.get("/"), 200);
        assert.equal(outside.closed, false);
        await admin.ok("unban", { target: "127.0.0.8/30" });
        const back = await SourcedClient.connect(site.port, "127.0.0.9");
        late.push(back);
        assert.equal(await back.get("/"), 200);
      });
    } finally {
      await Promise.all([inside, outside, ...late].map((c) => c.close()));
    }
  });
});

Deno.test("admin kick closes exactly the named connection; an unknown id is NOT_FOUND", async () => {
  await withSite("", async (site) => {
    const a = await SourcedClient.connect(site.port, "127.0.0.5");
    const b = await SourcedClient.connect(site.port, "127.0.0.5");
    try {
      assert.equal(await a.get("/"), 200);
      assert.equal(await b.get("/"), 200);
      await withAdmin(site, async (admin) => {
        const conns = await admin.ok<ConnRow[]>("conns");
        const target = conns.find((c) => c.remotePort === a.localPort);
        assert.ok(target !== undefined);
        assert.deepEqual(await admin.ok("kick", { id: target.id }), { id: target.id });
        await a.waitClosed();
        assert.equal(await b.get("/"), 200);
        const after = await eventually("the kicked connection to leave conns", async () => {
          const rows = await admin.ok<ConnRow[]>("conns");
          return rows.every((c) => c.id !== target.id) && rows;
        });
        assert.ok(after.some((c) => c.remotePort === b.localPort));
        const missing = await admin.call("kick", { id: 987_654 });
        assert.equal(missing.ok, false);
        assert.equal(missing.error?.code, "NOT_FOUND");
        assert.equal((await admin.call("kick", { id: "7" })).error?.code, "BAD_ARGS");
      });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

Deno.test("admin reload applies a changed vento.conf live and refuses a bad one whole", async () => {
  await withSite("", async (site) => {
    await withAdmin(site, async (admin) => {
      // Nothing changed: nothing applied.
      assert.deepEqual(await admin.ok("reload"), { applied: [], needsRestart: [] });

      // Lines 11-13 change two live limits and a ban setting; PORT (line 2) needs a restart.
      const changed = "MAX_REQUEST_LINE_BYTES=1024\nMAX_HEADER_BYTES=2048\nBAN_MS=120000\n";
      await Deno.writeTextFile(site.confPath, BASE_CONF.replace("PORT=0", "PORT=8081") + changed);
      const r = await admin.ok<{ applied: string[]; needsRestart: string[] }>("reload");
      assert.deepEqual(r.applied.sort(), ["BAN_MS", "MAX_HEADER_BYTES", "MAX_REQUEST_LINE_BYTES"]);
      assert.deepEqual(r.needsRestart, ["PORT"]);
      assert.equal(site.vento.config.maxHeaderBytes, 2048);
      assert.equal(site.vento.config.banMs, 120_000);
      assert.equal(site.vento.config.port, 0, "PORT is not applied live");

      // The new limit is in force on the data path: a 3 KiB header is now too large.
      const c = await SourcedClient.connect(site.port, "127.0.0.5");
      try {
        c.socket.write(`GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ${"a".repeat(3072)}\r\n\r\n`);
        await c.waitClosed();
        assert.match(c.received, /^HTTP\/1\.1 431 /);
      } finally {
        await c.close();
      }

      // A bad file: every error with its line, and nothing applied (not even the valid change on line 12).
      const bad = "MAX_REQUEST_LINE_BYTES=1024\nMAX_HEADER_BYTES=4096\nBAN_MS=60000\nMAX_HEADER_BYTES_X=1\n" +
        "BAN_MAX_MS=oops\n";
      await Deno.writeTextFile(site.confPath, BASE_CONF + bad);
      const refused = await admin.call("reload");
      assert.equal(refused.ok, false);
      assert.equal(refused.error?.code, "REFUSED");
      const details = refused.error?.details ?? [];
      assert.ok(
        details.some((d) => /vento\.conf:15: unknown key "MAX_HEADER_BYTES_X"/.test(d)),
        details.join(),
      );
      assert.ok(details.some((d) => /vento\.conf:16: .*BAN_MAX_MS/.test(d)), details.join());
      assert.equal(site.vento.config.maxHeaderBytes, 2048);
      assert.equal(site.vento.config.banMs, 120_000);
    });
  });
});

Deno.test("a reload that cannot reopen the access log applies nothing and says so", async () => {
  const base = BASE_CONF.replace("ACCESS_LOG=off", "ACCESS_LOG=logs/vento.log");
  const site = await startSite("", base);
  try {
    await withAdmin(site, async (admin) => {
      // The log's folder disappears (a botched rotation), and the file changes a live limit meanwhile.
      await Deno.remove(`${site.dir}/logs`, { recursive: true });
      await Deno.writeTextFile(
        site.confPath,
        base.replace("REQUEST_RATE_PER_SEC=100000", "REQUEST_RATE_PER_SEC=7") + "MAX_HEADER_BYTES=12288\n",
      );
      const refused = await admin.call("reload");
      assert.equal(refused.ok, false);
      assert.equal(refused.error?.code, "REFUSED");
      assert.equal(site.vento.config.requestRatePerSec, 100_000, "a refused reload applied a limit");
      assert.equal(site.vento.config.maxHeaderBytes, 16 * 1024, "a refused reload applied a limit");
      // The start-up checks a reload runs first name the setting and the fix.
      assert.match(
        (refused.error?.details ?? []).join(),
        /ACCESS_LOG "[^"]*vento\.log": the folder .* does not exist/,
      );
      // The folder is back: the same reload now applies whole, and says what took effect.
      await Deno.mkdir(`${site.dir}/logs`);
      const r = await admin.ok<{ applied: string[]; needsRestart: string[] }>("reload");
      assert.deepEqual(r.applied.sort(), ["MAX_HEADER_BYTES", "REQUEST_RATE_PER_SEC"]);
      assert.equal(site.vento.config.requestRatePerSec, 7);
      const c = await SourcedClient.connect(site.port, "127.0.0.5");
      try {
        assert.equal(await c.get("/"), 200);
      } finally {
        await c.close();
      }
      await eventually("the request is logged to the reopened file", async () => {
        const text = await Deno.readTextFile(`${site.dir}/logs/vento.log`).catch(() => "");
        return text.includes('"GET / HTTP/1.1" 200');
      });
    });
  } finally {
    await site.stop();
  }
});

Deno.test("admin metrics is Prometheus text that a strict parser accepts, with live values", async () => {
  await withSite("", async (site) => {
    const c = await SourcedClient.connect(site.port, "127.0.0.5");
    try {
      assert.equal(await c.get("/"), 200);
      assert.equal(await c.get("/missing"), 404);
      await withAdmin(site, async (admin) => {
        const text = await admin.ok<string>("metrics");
        const families = parsePrometheus(text);
        assert.ok(families.size >= 10, `only ${families.size} families`);
        for (const [name, f] of families) {
          assert.ok(f.help !== null && f.help.length > 0, `${name} has no HELP`);
          assert.notEqual(f.type, "untyped", `${name} has no TYPE`);
          assert.ok(f.samples.length > 0, `${name} has no samples`);
          assert.ok(name.startsWith("vento_"), name);
          if (f.type === "counter") {
            assert.match(name, /_total$/, `counter ${name} must end in _total`);
            for (const s of f.samples) assert.ok(s.value >= 0 && Number.isFinite(s.value), name);
          } else {
            assert.doesNotMatch(name, /_total$/, `gauge ${name} must not end in _total`);
          }
        }
        const sample = (name: string, labels: Record<string, string> = {}) =>
          families.get(name)?.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))
            ?.value;
        assert.ok(sample("vento_requests_total")! >= 2);
        assert.ok(sample("vento_responses_total", { class: "2xx" })! >= 1);
        assert.ok(sample("vento_responses_total", { class: "4xx" })! >= 1);
        assert.ok(sample("vento_connections_open")! >= 1);
        assert.equal(sample("vento_connections_max"), site.vento.config.maxConns);
        assert.ok(
          families.get("vento_connections_refused_total")!.samples.some((s) => s.labels.reason === "banned"),
        );
      });
    } finally {
      await c.close();
    }
  });
});

Deno.test("the Prometheus parser of this test rejects what the format forbids", () => {
  const bad = [
    "# TYPE a_total counter\na_total 1", // no final newline
    "# TYPE a_total counter\na-total 1\n", // bad metric name
    '# TYPE a counter\na{1x="y"} 1\n', // bad label name
    '# TYPE a gauge\na{x="y} 1\n', // unterminated label value
    "# TYPE a gauge\na one\n", // bad value
    "# TYPE a gauge\na 1\n# TYPE a gauge\n", // TYPE after samples
    "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", // not contiguous
    '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n', // duplicate label set
    "# TYPE a wobbly\na 1\n", // unknown type
  ];
  for (const text of bad) assert.throws(() => parsePrometheus(text), Error, JSON.stringify(text));
  const good = parsePrometheus(
    '# HELP a_total A.\n# TYPE a_total counter\na_total{k="v\\"q"} 1e3 1700000000\n',
  );
  assert.equal(good.get("a_total")?.samples[0].value, 1000);
});

Deno.test("vento-admin stats, conns, bans, ban, unban and kick work against the real server", async () => {
  await withSite("", async (site) => {
    const client = await SourcedClient.connect(site.port, "127.0.0.5");
    const late: SourcedClient[] = [];
    const s = ["--socket", site.socket];
    try {
      assert.equal(await client.get("/"), 200);

      const stats = await cli([...s, "stats"]);
      assert.equal(stats.code, 0, stats.stderr);
      assert.match(stats.stdout, new RegExp(`^listen +127\\.0\\.0\\.1:${site.port}$`, "m"));
      assert.match(stats.stdout, /^connections +open [1-9]\d*\/\d+ /m);

      const conns = await cli([...s, "conns"]);
      assert.equal(conns.code, 0, conns.stderr);
      const row = conns.stdout.split("\n").find((l) => l.includes(`127.0.0.5:${client.localPort}`));
      assert.ok(row !== undefined, conns.stdout);
      assert.match(row, /^ *\d+ {2}127\.0\.0\.5:\d+ +idle /);
      const id = Number(row.trim().split(/\s+/)[0]);

      const json = JSON.parse((await cli([...s, "--json", "conns"])).stdout) as ConnRow[];
      assert.ok(json.some((c) => c.id === id && c.remote === "127.0.0.5"));

      const kick = await cli([...s, "kick", String(id)]);
      assert.equal(kick.code, 0, kick.stderr);
      assert.equal(kick.stdout, `closed connection ${id}\n`);
      await client.waitClosed();
      const kickAgain = await cli([...s, "kick", String(id)]);
      assert.equal(kickAgain.code, 1);
      assert.match(kickAgain.stderr, /NOT_FOUND/);

      const ban = await cli([...s, "ban", "127.0.0.5", "--for", "2m", "--reason", "cli test"]);
      assert.equal(ban.code, 0, ban.stderr);
      assert.equal(ban.stdout, "banned 127.0.0.5 for 2m00s\n");
      const bans = await cli([...s, "bans"]);
      assert.equal(bans.code, 0, bans.stderr);
      assert.match(bans.stdout, /^TARGET +LEFT +OFFENCES +REASON$/m);
      assert.match(bans.stdout, /^127\.0\.0\.5 +1m5\ds +\d+ +cli test$/m);
      const refused = await SourcedClient.connect(site.port, "127.0.0.5");
      late.push(refused);
      await refused.waitClosed();
      assert.equal(refused.received, "");

      const unban = await cli([...s, "unban", "127.0.0.5"]);
      assert.equal(unban.code, 0, unban.stderr);
      assert.equal(unban.stdout, "unbanned 127.0.0.5\n");
      const unbanAgain = await cli([...s, "unban", "127.0.0.5"]);
      assert.equal(unbanAgain.code, 1);
      assert.match(unbanAgain.stderr, /NOT_FOUND/);
      assert.equal((await cli([...s, "bans"])).stdout, "no bans\n");
      const back = await SourcedClient.connect(site.port, "127.0.0.5");
      late.push(back);
      assert.equal(await back.get("/"), 200);

      // Usage errors are 2 and never reach the server.
      const usage = await cli([...s, "ban", "not-an-ip"]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /IP address or CIDR/);
      assert.equal((await cli([...s, "kick"])).code, 2);
      assert.equal(site.vento.guard.bans().length, 0);

      // A ban shorter than the protocol's minimum is a usage error caught by the CLI: exit 2, no ban.
      assert.equal((await cli([...s, "ban", "127.0.0.5", "--for", "10ms"])).code, 2);
      assert.equal(site.vento.guard.bans().length, 0);
    } finally {
      await Promise.all([client, ...late].map((c) => c.close()));
    }
  });
});

Deno.test("vento-admin finds no server: one sentence naming the path, exit 3", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-admin-e2e-" });
  try {
    const r = await cli(["--socket", `${dir}/none.sock`, "stats"]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, new RegExp(`no Vento server is listening on ${dir}/none\\.sock`));
    assert.equal(r.stderr.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vento-admin ban is refused by the server for an allowlisted client: exit 1", async () => {
  await withSite("ALLOWLIST=127.0.0.7/32\n", async (site) => {
    const r = await cli(["--socket", site.socket, "ban", "127.0.0.7"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /REFUSED: .*allowlisted/);
    assert.equal(site.vento.guard.bans().length, 0);
  });
});

// --- vento-admin top in tmux ---------------------------------------------------------------------------

/** Whether tmux can be run here; the top test is skipped (with a printed reason) when it cannot. */
function tmuxAvailable(): boolean {
  try {
    return new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const HAS_TMUX = tmuxAvailable();
if (!HAS_TMUX) {
  console.warn("tests/e2e/admin_test.ts: tmux is not installed; skipping the `top` test (apt install tmux)");
}

/**
 * A tmux server of our own whose socket lives in the test's temp folder (`-S`), so the test never
 * touches the user's sessions and leaves no socket behind in /tmp/tmux-UID.
 */
class Tmux {
  constructor(readonly socketPath: string) {}

  async run(...args: string[]): Promise<string> {
    const out = await new Deno.Command("tmux", {
      args: ["-S", this.socketPath, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const d = new TextDecoder();
    if (!out.success) throw new Error(`tmux ${args.join(" ")}: ${d.decode(out.stderr)}`);
    return d.decode(out.stdout);
  }

  /** The last screen captured, for failure messages. */
  last = "";

  async screen(): Promise<string> {
    this.last = await this.run("capture-pane", "-p", "-t", "t");
    return this.last;
  }

  async flag(name: string): Promise<string> {
    return (await this.run("display-message", "-p", "-t", "t", `#{${name}}`)).trim();
  }

  keys(...keys: string[]): Promise<string> {
    return this.run("send-keys", "-t", "t", ...keys);
  }

  async kill(): Promise<void> {
    await this.run("kill-server").catch(() => "");
  }
}

Deno.test({
  name: "vento-admin top in tmux shows a live connection, bans it with b, and q restores the terminal",
  ignore: !HAS_TMUX,
  async fn() {
    await withSite("", async (site) => {
      // Live traffic: one keep-alive client on 127.0.0.5 requesting every 100 ms, reconnecting when closed.
      let traffic = true;
      let client: SourcedClient | null = null;
      const clients: SourcedClient[] = [];
      const loop = (async () => {
        while (traffic) {
          try {
            if (client === null || client.closed) {
              client = await SourcedClient.connect(site.port, "127.0.0.5");
              clients.push(client);
            }
            await client.get("/");
          } catch {
            // banned: refused at accept; keep trying, as a real client would
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const tmux = new Tmux(`${site.dir}/tmux.sock`);
      const stty = (file: string) => `stty -g > ${site.dir}/${file}`;
      try {
        await tmux.run(
          "new-session",
          "-d",
          "-s",
          "t",
          "-x",
          "120",
          "-y",
          "36",
          "--",
          "bash",
          "--norc",
          "--noprofile",
        );
        await tmux.keys(`${stty("before")}; clear`, "Enter");
        await eventually(
          "the shell to record the terminal modes",
          () => Deno.stat(`${site.dir}/before`).then(() => true, () => false),
        );
        const cmd =
          `${Deno.execPath()} run -A --quiet --config=${ROOT}deno.json ${ADMIN_MAIN} --socket ${site.socket} top`;
        await tmux.keys(cmd, "Enter");

        // The dashboard is up, full screen, and lists the live connection, selected (`>`): it is the only one.
        const shown = await eventually("top to show the 127.0.0.5 connection", async () => {
          const s = await tmux.screen();
          return /^> +\d+ 127\.0\.0\.5:\d+ +(idle|active|new) /m.test(s) && s;
        }, TOP_START_TIMEOUT_MS);
        assert.match(shown, /^Vento \S+ {2}up \S+ {2}127\.0\.0\.1:\d+ {2}pid \d+/m);
        assert.match(shown, /Top talkers/);
        assert.equal(await tmux.flag("alternate_on"), "1");
        assert.equal(await tmux.flag("cursor_flag"), "0");

        await tmux.keys("b");
        await eventually("top to ask before banning", async () => {
          const s = await tmux.screen();
          return /ban 127\.0\.0\.5 for 10m and close its connections\? y to confirm/.test(s) && s;
        });
        await tmux.keys("y");
        await eventually(
          "the ban to reach the server",
          () => site.vento.guard.bans().some((b) => b.key === "127.0.0.5"),
        );
        const after = await eventually("top to show the ban", async () => {
          const s = await tmux.screen();
          return /banned 127\.0\.0\.5 for 10m/.test(s) && /^(>| )127\.0\.0\.5 +\d+m\d\ds top/m.test(s) && s;
        });
        assert.match(after, /─ Bans 1 ─/);
        const ban = site.vento.guard.bans().find((b) => b.key === "127.0.0.5");
        assert.equal(ban?.reason, "top");
        const bans = await cli(["--socket", site.socket, "bans"]);
        assert.match(bans.stdout, /^127\.0\.0\.5 +(9m5\d|10m00)s +\d+ +top$/m);

        await tmux.keys("q");
        await eventually(
          "top to leave the alternate screen",
          async () => (await tmux.flag("alternate_on")) === "0",
        );
        assert.equal(await tmux.flag("cursor_flag"), "1");
        await tmux.keys(stty("after"), "Enter");
        const restored = await eventually(
          "the shell to record the terminal modes again",
          () => Deno.readTextFile(`${site.dir}/after`).then((t) => t !== "" && t, () => false),
        );
        assert.equal(restored, await Deno.readTextFile(`${site.dir}/before`), "stty modes differ after q");
        const screen = await tmux.screen();
        assert.doesNotMatch(screen, /Top talkers/);
      } catch (e) {
        throw new Error(`${e instanceof Error ? e.message : e}; the screen was:\n${tmux.last}`);
      } finally {
        await tmux.kill();
        traffic = false;
        await loop;
        await Promise.all(clients.map((c) => c.close()));
      }
    });
  },
});
