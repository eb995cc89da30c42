/**
 * Soak benchmark: does Vento stay flat under hours of mixed traffic? Starts one Vento (`main.ts --config
 * <generated>`, loopback, free port, temp document root, access log and admin socket on) and, for
 * `--minutes` (default 10), runs at once:
 * - legitimate traffic, each kind from its own loopback address: keep-alive GETs (127.0.0.2),
 *   `Connection: close` GETs (127.0.0.3), 8-deep pipelined GETs (127.0.0.4), a 4 MiB file streamed
 *   (127.0.0.6) and 1 MiB `POST /api/echo` bodies checked byte for byte (127.0.0.7);
 * - attacks: a pipelined request flood (127.0.0.50, limited then banned by the guard) and slowloris
 *   connections trickling a header byte at a time (127.0.0.60, cut by the header deadline);
 * - operations: a reload every 30 s (the access log renamed first, as logrotate does, and a live setting
 *   changed, so every reload applies something and reopens the log), and an admin subscriber (`top`'s
 *   subscription: stats, connections, bans, clients every second).
 * Every `--sample-sec` (default 30) it prints the server's RSS and open descriptors and the
 * answered/errored counts. It fails (exit 1) when any legitimate request errs (a wrong status, a short
 * or wrong body, a reset, no answer within LEGIT_TIMEOUT_MS), a reload is refused, the subscription
 * breaks, or RSS or descriptors keep growing after the warm-up (the first 2 minutes, or half of a shorter
 * run): the last sample more than the tolerance above the first after the warm-up, and the highest yet.
 * The run is written to bench/ATTACK.md (its soak section) unless `--no-write`.
 *
 * Must never: aim at anything but loopback (every client binds a 127.0.0.0/8 source address), run
 * unbounded (every loop stops at the deadline, the server is stopped on exit, error and ctrl-c), or
 * leave a process or temp folder behind. Usage: `deno task bench:soak [--minutes N] [--help]`.
 */

import net from "node:net";
import { parseArgs } from "node:util";
import { parseConfig } from "../src/config/config.ts";
import { freePort } from "./_common.ts";
import { errorMessage } from "../src/core/errors.ts";

// --- settings and bounds -------------------------------------------------------------------------

const MAX_MINUTES = 240;
/** Warm-up before growth is judged (capped at half the run). */
const WARMUP_MS = 120_000;
/** RSS may end this far above its first sample after the warm-up (allocator and cache noise). */
const RSS_TOLERANCE_MIB = 24;
/** Descriptors may end this many above their first sample after the warm-up (slowloris churn). */
const FD_TOLERANCE = 64;
/** A legitimate request with no complete answer within this long is an error. */
const LEGIT_TIMEOUT_MS = 10_000;
const RELOAD_EVERY_MS = 30_000;
const SUBSCRIBE_INTERVAL_MS = 1_000;
const BIG_FILE_BYTES = 4 * 1024 * 1024;
const ECHO_BODY_BYTES = 1024 * 1024;
const FLOOD_CONNS = 4;
const FLOOD_DEPTH = 16;
const SLOWLORIS_CONNS = 64;
/** Pause between a slowloris connection's header bytes. */
const SLOWLORIS_BYTE_MS = 2_000;
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

const HOST = "127.0.0.1";
const IP = {
  keepAlive: "127.0.0.2",
  close: "127.0.0.3",
  pipelined: "127.0.0.4",
  big: "127.0.0.6",
  echo: "127.0.0.7",
  flood: "127.0.0.50",
  slowloris: "127.0.0.60",
} as const;

const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const REPORT_PATH = `${REPO_ROOT}/bench/ATTACK.md`;
/** The soak's section of bench/ATTACK.md starts at this line (bench/attack.ts keeps it when it rewrites). */
export const SOAK_MARKER = "<!-- soak: written by bench/soak.ts -->";

const HELP = `deno task bench:soak [options]

Mixed legitimate traffic, a flood, slowloris, a reload every 30 s and an admin subscriber against one
Vento on ${HOST}; prints RSS, descriptors and answered/errored counts; fails on any legitimate error or on
RSS/descriptors that keep growing after the warm-up.

  --minutes N      length of the run, 1..${MAX_MINUTES} (default 10)
  --sample-sec N   seconds between samples, 5..300 (default 30)
  --no-write       do not write the soak section of bench/ATTACK.md
  -h, --help       this text`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const progress = (m: string): void => console.error(m);

// --- a small client: streams bodies (counted and checked, never kept) ----------------------------

interface Answer {
  status: number;
  headers: Map<string, string>;
  bodyBytes: number;
  /** FNV-1a over the body, to compare an echo with what was sent. */
  bodyHash: number;
}

function fnv(hash: number, bytes: Uint8Array): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
  return h;
}
const FNV_START = 2166136261;

/** One keep-alive connection from a chosen loopback address; reads answers without keeping bodies. */
class Conn {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #wake: (() => void) | null = null;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on("data", (c: Uint8Array) => {
      this.#chunks.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      this.#queued += c.byteLength;
      this.#notify();
    });
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    sock.on("end", end);
    sock.on("close", end);
    sock.on("error", end);
  }

  static open(port: number, localAddress: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: HOST, port, localAddress });
      sock.setNoDelay(true);
      sock.once("error", reject);
      sock.once("connect", () => {
        sock.off("error", reject);
        resolve(new Conn(sock));
      });
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async #more(): Promise<void> {
    if (this.#ended) throw new Error("connection closed by the server");
    await new Promise<void>((r) => this.#wake = r);
  }

  send(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#sock.destroyed) return reject(new Error("socket destroyed"));
      this.#sock.write(data, (e?: Error | null) => e ? reject(e) : resolve());
    });
  }

  /** Reads one answer's head and counts its Content-Length body. */
  async read(): Promise<Answer> {
    let head = "";
    for (;;) {
      // Heads are small: gather chunks until the blank line, then keep what follows for the body.
      while (this.#chunks.length > 0) {
        const c = this.#chunks.shift()!;
        this.#queued -= c.length;
        const text = head + new TextDecoder("latin1").decode(c);
        const end = text.indexOf("\r\n\r\n");
        if (end < 0) {
          head = text;
          continue;
        }
        const rest = c.subarray(c.length - (text.length - end - 4));
        if (rest.length > 0) {
          this.#chunks.unshift(rest);
          this.#queued += rest.length;
        }
        return await this.#body(text.slice(0, end));
      }
      if (head.length > 64 * 1024) throw new Error("answer head too large");
      await this.#more();
    }
  }

  async #body(head: string): Promise<Answer> {
    const lines = head.split("\r\n");
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
    if (m === null) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
    }
    let left = Number(headers.get("content-length") ?? "0");
    const total = left;
    let hash = FNV_START;
    while (left > 0) {
      if (this.#chunks.length === 0) {
        await this.#more();
        continue;
      }
      const c = this.#chunks[0];
      const take = Math.min(left, c.length);
      hash = fnv(hash, c.subarray(0, take));
      left -= take;
      this.#queued -= take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    return { status: Number(m[1]), headers, bodyBytes: total, bodyHash: hash };
  }

  close(): void {
    this.#sock.destroy();
  }
}

/** Rejects after `ms` (so a request with no answer is an error, not a hang). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)
    ),
  ]).finally(() => clearTimeout(timer));
}

// --- counters ----------------------------------------------------------------------------------------

interface Kind {
  answered: number;
  errored: number;
  firstErrors: string[];
}

class Tally {
  kinds = new Map<string, Kind>();
  flood = { requests: 0, status: {} as Record<number, number>, refusedAtAccept: 0 };
  slowloris = { connections: 0, closedByServer: 0, status408: 0 };
  reloads = { ok: 0, refused: 0, errors: [] as string[] };
  subscriber = { events: 0, broken: 0, lastError: "" };

  kind(name: string): Kind {
    let k = this.kinds.get(name);
    if (k === undefined) this.kinds.set(name, k = { answered: 0, errored: 0, firstErrors: [] });
    return k;
  }
  ok(name: string): void {
    this.kind(name).answered++;
  }
  err(name: string, why: string): void {
    const k = this.kind(name);
    k.errored++;
    if (k.firstErrors.length < 5) k.firstErrors.push(why);
  }
  get answered(): number {
    return [...this.kinds.values()].reduce((n, k) => n + k.answered, 0);
  }
  get errored(): number {
    return [...this.kinds.values()].reduce((n, k) => n + k.errored, 0);
  }
}

// --- legitimate traffic --------------------------------------------------------------------------------

const GET = (path: string, close = false) =>
  `GET ${path} HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak${close ? "\r\nConnection: close" : ""}\r\n\r\n`;

/**
 * Runs `exchange` on a kept connection until `endMs`, reconnecting when the server closes it as HTTP
 * allows (a `Connection: close` answer, the per-connection request cap); every error counts.
 */
async function keptLoop(
  t: Tally,
  name: string,
  port: number,
  ip: string,
  endMs: number,
  pauseMs: number,
  exchange: (c: Conn) => Promise<boolean>,
): Promise<void> {
  let c: Conn | null = null;
  while (Date.now() < endMs) {
    try {
      c ??= await within(Conn.open(port, ip), LEGIT_TIMEOUT_MS, `${name} connect`);
      const keep = await within(exchange(c), LEGIT_TIMEOUT_MS, name);
      if (!keep) {
        c.close();
        c = null;
      }
    } catch (e) {
      t.err(name, errorMessage(e));
      c?.close();
      c = null;
    }
    await sleep(pauseMs);
  }
  c?.close();
}

function expect(t: Tally, name: string, a: Answer, bytes: number, hash?: number): boolean {
  if (a.status !== 200) throw new Error(`status ${a.status}`);
  if (a.bodyBytes !== bytes) throw new Error(`body ${a.bodyBytes} bytes, expected ${bytes}`);
  if (hash !== undefined && a.bodyHash !== hash) throw new Error("echo body differs from what was sent");
  t.ok(name);
  return a.headers.get("connection")?.toLowerCase() !== "close";
}

function legitimate(
  t: Tally,
  port: number,
  endMs: number,
  index: Uint8Array,
  echoBody: Uint8Array,
): Promise<void>[] {
  const echoHash = fnv(FNV_START, echoBody);
  const echoHead = `POST /api/echo HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${echoBody.length}\r\n\r\n`;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < 4; i++) {
    loops.push(keptLoop(t, "keep-alive", port, IP.keepAlive, endMs, 20, async (c) => {
      await c.send(GET("/"));
      return expect(t, "keep-alive", await c.read(), index.length);
    }));
  }
  for (let i = 0; i < 2; i++) {
    loops.push(keptLoop(t, "close", port, IP.close, endMs, 25, async (c) => {
      await c.send(GET("/", true));
      expect(t, "close", await c.read(), index.length);
      return false;
    }));
  }
  loops.push(keptLoop(t, "pipelined", port, IP.pipelined, endMs, 50, async (c) => {
    await c.send(GET("/").repeat(8));
    let keep = true;
    for (let i = 0; i < 8; i++) keep = expect(t, "pipelined", await c.read(), index.length) && keep;
    return keep;
  }));
  loops.push(keptLoop(t, "large file", port, IP.big, endMs, 200, async (c) => {
    await c.send(GET("/big.bin"));
    return expect(t, "large file", await c.read(), BIG_FILE_BYTES);
  }));
  loops.push(keptLoop(t, "1 MiB echo", port, IP.echo, endMs, 200, async (c) => {
    await c.send(echoHead);
    await c.send(echoBody);
    return expect(t, "1 MiB echo", await c.read(), echoBody.length, echoHash);
  }));
  return loops;
}

// --- attacks ---------------------------------------------------------------------------------------------

async function flood(t: Tally, port: number, endMs: number): Promise<void> {
  const batch = GET("/").repeat(FLOOD_DEPTH);
  const one = async () => {
    while (Date.now() < endMs) {
      let c: Conn;
      try {
        c = await Conn.open(port, IP.flood);
      } catch {
        await sleep(20);
        continue;
      }
      let answered = 0;
      try {
        while (Date.now() < endMs) {
          await c.send(batch);
          t.flood.requests += FLOOD_DEPTH;
          for (let i = 0; i < FLOOD_DEPTH; i++) {
            const a = await within(c.read(), 5_000, "flood");
            answered++;
            t.flood.status[a.status] = (t.flood.status[a.status] ?? 0) + 1;
          }
        }
      } catch {
        if (answered === 0) t.flood.refusedAtAccept++;
      }
      c.close();
      // Refused or banned: come back soon, as a flooder does (bounded: one socket per loop at a time).
      await sleep(20);
    }
  };
  await Promise.all(Array.from({ length: FLOOD_CONNS }, one));
}

async function slowloris(t: Tally, port: number, endMs: number): Promise<void> {
  const one = async (i: number) => {
    await sleep(i * 50);
    while (Date.now() < endMs) {
      let c: Conn;
      try {
        c = await Conn.open(port, IP.slowloris);
      } catch {
        await sleep(200);
        continue;
      }
      t.slowloris.connections++;
      try {
        await c.send("GET / HTTP/1.1\r\nHost: soak\r\nX-Slow: ");
        // Reading in the background tells whether the server cut us (408, or a 503 at the cap).
        const answer = c.read().then((a) => a.status, () => 0);
        while (Date.now() < endMs && !c.ended) {
          await sleep(SLOWLORIS_BYTE_MS);
          await c.send("a").catch(() => {});
        }
        if (c.ended) {
          t.slowloris.closedByServer++;
          if ((await answer) === 408) t.slowloris.status408++;
        }
      } catch {
        // the server cut it
      }
      c.close();
      await sleep(200);
    }
  };
  await Promise.all(Array.from({ length: SLOWLORIS_CONNS }, (_, i) => one(i)));
}

// --- operations: admin subscriber and reloads ----------------------------------------------------------

class AdminLine {
  #conn: Deno.UnixConn;
  #buf = "";
  #dec = new TextDecoder();
  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }
  static async open(path: string): Promise<AdminLine> {
    return new AdminLine(await Deno.connect({ transport: "unix", path }));
  }
  async send(o: unknown): Promise<void> {
    const b = new TextEncoder().encode(JSON.stringify(o) + "\n");
    let off = 0;
    while (off < b.length) off += await this.#conn.write(b.subarray(off));
  }
  // deno-lint-ignore no-explicit-any
  async next(): Promise<any | null> {
    const chunk = new Uint8Array(256 * 1024);
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
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed
    }
  }
}

async function subscriber(t: Tally, socket: string, endMs: number): Promise<void> {
  while (Date.now() < endMs) {
    let a: AdminLine | null = null;
    try {
      a = await AdminLine.open(socket);
      await a.send({
        v: 1,
        id: 1,
        op: "subscribe",
        args: { intervalMs: SUBSCRIBE_INTERVAL_MS, conns: true, bans: true, clients: 20 },
      });
      while (Date.now() < endMs) {
        const ev = await within(a.next(), SUBSCRIBE_INTERVAL_MS * 10, "admin subscription");
        if (ev === null) throw new Error("the server closed the subscription");
        if (ev.ok !== true) throw new Error(`subscription error: ${JSON.stringify(ev.error)}`);
        t.subscriber.events++;
      }
    } catch (e) {
      if (Date.now() < endMs) {
        t.subscriber.broken++;
        t.subscriber.lastError = errorMessage(e);
      }
    } finally {
      a?.close();
    }
  }
}

async function reloads(
  t: Tally,
  dir: string,
  confText: string,
  socket: string,
  endMs: number,
): Promise<void> {
  let n = 0;
  while (Date.now() + RELOAD_EVERY_MS < endMs) {
    await sleep(RELOAD_EVERY_MS);
    n++;
    // logrotate's way: rename the log, then reload (which opens a new one); and change a live setting.
    await Deno.rename(`${dir}/access.log`, `${dir}/access.log.${n}`).catch(() => {});
    await Deno.remove(`${dir}/access.log.${n - 1}`).catch(() => {});
    await Deno.writeTextFile(`${dir}/vento.conf`, confText + `IDLE_TIMEOUT_MS=${15_000 + (n % 2)}\n`);
    let a: AdminLine | null = null;
    try {
      a = await AdminLine.open(socket);
      await a.send({ v: 1, id: n, op: "reload" });
      const r = await within(a.next(), 10_000, "reload");
      if (r?.ok === true && r.data.applied.includes("IDLE_TIMEOUT_MS")) t.reloads.ok++;
      else {
        t.reloads.refused++;
        t.reloads.errors.push(JSON.stringify(r));
      }
    } catch (e) {
      t.reloads.refused++;
      t.reloads.errors.push(errorMessage(e));
    } finally {
      a?.close();
    }
  }
}

// --- the server ----------------------------------------------------------------------------------------

function confText(dir: string, port: number): string {
  return `# Generated by bench/soak.ts
PORT=${port}
HOST=${HOST}
DOCUMENT_ROOT=${dir}/www
ACCESS_LOG=${dir}/access.log
ADMIN_SOCKET=${dir}/vento.sock
# Each legitimate kind comes from its own address and must fit the per-client limits; the flood must not.
# Loopback is allowlisted by default (a same-host proxy): every client here is on loopback, so none is.
ALLOWLIST=
REQUEST_RATE_PER_SEC=500
REQUEST_BURST=1000
CONN_RATE_PER_SEC=200
CONN_BURST=400
ECHO_MAX_BODY_BYTES=${ECHO_BODY_BYTES}
HEADER_TIMEOUT_MS=5000
`;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

interface Sample {
  atSec: number;
  rssMiB: number;
  fds: number;
  answered: number;
  errored: number;
  line: string;
}

/** Growth verdict for one series after the warm-up: the last sample is beyond the tolerance and the peak. */
export function keepsGrowing(values: readonly number[], tolerance: number): boolean {
  if (values.length < 3) return false;
  const last = values[values.length - 1];
  return last > values[0] + tolerance && last >= Math.max(...values);
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      options: {
        minutes: { type: "string", default: "10" },
        "sample-sec": { type: "string", default: "30" },
        "no-write": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`bench:soak: ${errorMessage(e)}\n\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(HELP);
    return 0;
  }
  const minutes = Number(parsed.values.minutes);
  const sampleSec = Number(parsed.values["sample-sec"]);
  if (!(minutes >= 1 && minutes <= MAX_MINUTES) || !(sampleSec >= 5 && sampleSec <= 300)) {
    console.error(`bench:soak: --minutes must be 1..${MAX_MINUTES} and --sample-sec 5..300\n\n${HELP}`);
    return 2;
  }
  const runMs = minutes * 60_000;
  const warmupMs = Math.min(WARMUP_MS, runMs / 2);

  const dir = await Deno.makeTempDir({ prefix: "vento-soak-" });
  let child: Deno.ChildProcess | null = null;
  const stop = async () => {
    if (child === null) return;
    const c = child;
    child = null;
    try {
      c.kill("SIGTERM");
    } catch {
      // exited
    }
    const timer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch {
        // exited
      }
    }, STOP_TIMEOUT_MS);
    await c.status;
    clearTimeout(timer);
  };
  const onSignal = () => {
    progress("interrupted: stopping the server");
    stop().finally(() => Deno.remove(dir, { recursive: true }).catch(() => {})).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    await Deno.mkdir(`${dir}/www`);
    const index = new TextEncoder().encode("<!doctype html><title>soak</title><p>hello</p>\n");
    await Deno.writeFile(`${dir}/www/index.html`, index);
    const big = new Uint8Array(BIG_FILE_BYTES);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    await Deno.writeFile(`${dir}/www/big.bin`, big);
    const echoBody = new Uint8Array(ECHO_BODY_BYTES);
    for (let i = 0; i < echoBody.length; i += 65536) crypto.getRandomValues(echoBody.subarray(i, i + 65536));

    const port = freePort(HOST);
    const text = confText(dir, port);
    const checked = parseConfig(text + "IDLE_TIMEOUT_MS=15000\n");
    if (!checked.ok) throw new Error(`bad generated config: ${JSON.stringify(checked.errors)}`);
    await Deno.writeTextFile(`${dir}/vento.conf`, text + "IDLE_TIMEOUT_MS=15000\n");
    const proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/main.ts`, "--config", `${dir}/vento.conf`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    child = proc;
    const serverErrors: string[] = [];
    const errDone = (async () => {
      let buf = "";
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          serverErrors.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
    })();
    const ready = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        (await Deno.connect({ hostname: HOST, port })).close();
        await Deno.lstat(`${dir}/vento.sock`);
        break;
      } catch {
        if (Date.now() > ready) throw new Error(`Vento did not start:\n${serverErrors.join("\n")}`);
        await sleep(50);
      }
    }
    progress(
      `soak: ${minutes} min against pid ${proc.pid} on ${HOST}:${port}; a sample every ${sampleSec} s, ` +
        `growth judged after ${Math.round(warmupMs / 1000)} s`,
    );

    const t = new Tally();
    let start = Date.now();
    const samples: Sample[] = [];
    const takeSample = (label?: string): Sample => {
      const atSec = Math.round((Date.now() - start) / 1000);
      const s = {
        atSec,
        rssMiB: rssMiB(proc.pid),
        fds: fdCount(proc.pid),
        answered: t.answered,
        errored: t.errored,
        line: "",
      };
      s.line =
        `| ${label ?? `${atSec} s`} | ${
          s.rssMiB.toFixed(1)
        } MiB | ${s.fds} | ${s.answered} | ${s.errored} | ` +
        `${t.flood.requests} sent, ${t.flood.status[200] ?? 0}×200 ${t.flood.status[429] ?? 0}×429, ` +
        `${t.flood.refusedAtAccept} conns refused | ${t.slowloris.connections} opened, ` +
        `${t.slowloris.closedByServer} cut | ${t.reloads.ok}/${t.reloads.ok + t.reloads.refused} | ` +
        `${t.subscriber.events} |`;
      if (label === undefined) samples.push(s);
      progress(
        (label === undefined ? "" : `${label}: `) +
          `t=${atSec}s rss=${
            s.rssMiB.toFixed(1)
          }MiB fds=${s.fds} answered=${s.answered} errored=${s.errored} ` +
          `reloads=${t.reloads.ok}/${
            t.reloads.ok + t.reloads.refused
          } subscriber events=${t.subscriber.events}`,
      );
      return s;
    };
    const initial = takeSample("before the traffic");
    start = Date.now();
    const endMs = start + runMs;
    const socket = `${dir}/vento.sock`;
    const work = Promise.all([
      ...legitimate(t, port, endMs, index, echoBody),
      flood(t, port, endMs),
      slowloris(t, port, endMs),
      subscriber(t, socket, endMs),
      reloads(t, dir, text, socket, endMs),
    ]);
    const sampler = setInterval(() => takeSample(), sampleSec * 1000);
    await work;
    clearInterval(sampler);
    // Every client gone: what the server holds now should be what it held before the traffic.
    await sleep(1_000);
    const settled = takeSample("after, clients gone");
    await stop();
    await errDone;

    // --- verdict ---
    const after = samples.filter((s) => s.atSec * 1000 >= warmupMs);
    const problems: string[] = [];
    for (const [name, k] of t.kinds) {
      if (k.errored > 0) problems.push(`${name}: ${k.errored} errors (${k.firstErrors.join("; ")})`);
      if (k.answered === 0) problems.push(`${name}: nothing answered`);
    }
    if (t.reloads.refused > 0) problems.push(`reloads refused: ${t.reloads.errors.slice(0, 3).join("; ")}`);
    if (t.subscriber.broken > 0) {
      problems.push(`admin subscription broke ${t.subscriber.broken}×: ${t.subscriber.lastError}`);
    }
    if (keepsGrowing(after.map((s) => s.rssMiB), RSS_TOLERANCE_MIB)) problems.push("RSS keeps growing");
    if (keepsGrowing(after.map((s) => s.fds), FD_TOLERANCE)) problems.push("descriptors keep growing");
    const pass = problems.length === 0;

    const kinds = [...t.kinds].map(([n, k]) => `${n} ${k.answered}/${k.answered + k.errored}`).join(", ");
    const md = `${SOAK_MARKER}
## Soak

Command: \`deno task bench:soak${args.length > 0 ? " " + args.join(" ") : ""}\` (${
      new Date(start).toISOString()
    }, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, loopback; one run)

One Vento with its access log and admin socket on, for ${minutes} min: keep-alive GETs (4 connections),
\`Connection: close\` GETs (2 loops), 8-deep pipelined GETs, a ${BIG_FILE_BYTES / 1048576} MiB file and
${ECHO_BODY_BYTES / 1048576} MiB \`POST /api/echo\` bodies (checked byte for byte), each from its own
loopback address; a flood of ${FLOOD_CONNS} connections pipelining ${FLOOD_DEPTH} GETs from ${IP.flood};
${SLOWLORIS_CONNS} slowloris connections from ${IP.slowloris} sending a header byte every
${SLOWLORIS_BYTE_MS / 1000} s; a reload every ${RELOAD_EVERY_MS / 1000} s (log renamed first, a live setting
changed); an admin subscriber (stats, connections, bans, top clients every ${SUBSCRIBE_INTERVAL_MS} ms).
Growth is judged after ${Math.round(warmupMs / 1000)} s: fail when the last sample is more than
${RSS_TOLERANCE_MIB} MiB (RSS) or ${FD_TOLERANCE} (descriptors) above the first after the warm-up and the
highest yet.

| time | RSS | descriptors | legit answered | legit errored | flood | slowloris | reloads ok | subscriber events |
| ---- | --- | ----------- | -------------- | ------------- | ----- | --------- | ---------- | ----------------- |
${[initial, ...samples, settled].map((s) => s.line).join("\n")}

Legitimate requests by kind (answered/total): ${kinds}. Slowloris connections answered 408: ${t.slowloris.status408}.
Server error-log lines: ${serverErrors.length}${
      serverErrors.length > 0 ? ` (first: \`${serverErrors[0].replaceAll("`", "'")}\`)` : ""
    }.

Verdict: **${pass ? "PASS" : "FAIL"}**${pass ? "" : `: ${problems.join("; ")}`}
`;
    console.log(md);
    if (!parsed.values["no-write"]) {
      const current = await Deno.readTextFile(REPORT_PATH).catch(() => "");
      const i = current.indexOf(SOAK_MARKER);
      const before = (i >= 0 ? current.slice(0, i) : current).trimEnd();
      await Deno.writeTextFile(REPORT_PATH, `${before}\n\n${md}`);
      // Aligned as `deno fmt --check` (part of `deno task ok`) wants it.
      await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", REPORT_PATH] }).output();
      progress(`written to ${REPORT_PATH}`);
    }
    return pass ? 0 : 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
