/**
 * Load benchmark: Vento against nginx and a `Deno.serve` file server serving the same files, side by
 * side, on loopback only.
 *
 * It builds a temp document root, starts nginx (1 worker, sendfile, open_file_cache, no access log),
 * Vento (`main.ts --config <generated>`, guard allowlisting 127.0.0.0/8) and `denoserve`
 * (bench/deno_serve_baseline.ts: `Deno.serve` + `Deno.open` per request, as std's file server) as children
 * on free 127.0.0.1 ports, checks each answers 200 with the right bytes, then runs `wrk` against each in
 * turn (A B C A B C …) for every chosen scenario and prints median req/s, the Vento/nginx and
 * Vento/denoserve ratios, p99 latency and the CPU time each server process spent per request (from
 * /proc/<pid>/stat). The `bigfile` scenario (a 1 GiB file to 8 clients) instead reports MiB/s, CPU per
 * GiB sent and each server's peak RSS (VmHWM), starting fresh server processes for every round so each
 * round's peak is its own.
 *
 * The fairness scenarios (`fair500`, `fair5000`) run h2load instead of wrk against nginx, Vento and three
 * runtime baselines (bench/bare_deno.ts, bench/deno_serve_const.ts, bench/bare_node.ts), and print every
 * server's total req/s, its slowest client's rate over the mean client rate, and its slowest request: a
 * server can post a fine total while starving some of its clients.
 *
 * Must never: aim at anything but 127.0.0.1, run unbounded (duration, rounds and connection counts are
 * capped), or leave a server or temp folder behind (stopped and removed on exit, error and ctrl-c).
 * Usage and flags: bench/README.md, or `deno task bench --help`.
 */

import { parseArgs } from "node:util";
import { parseConfig } from "../src/config/config.ts";
import zlib from "node:zlib";
import { commandOutput, freePort, hasCommand, median } from "./_common.ts";
import { errorMessage } from "../src/core/errors.ts";

// --- settings and bounds -------------------------------------------------------------------------

/** Longest single wrk run; the whole bench stays in minutes, not hours. */
const MAX_DURATION_SEC = 60;
/** Most interleaved rounds. */
const MAX_ROUNDS = 10;
/** Most worker processes (nginx) / threads (Vento) per server with `--workers`. */
const MAX_BENCH_WORKERS = 16;
/** Most warm-up seconds per server. */
const MAX_WARMUP_SEC = 30;
/** How long a server may take from spawn to accepting connections. */
const READY_TIMEOUT_MS = 10_000;
/** Poll interval while waiting for a server's port. */
const READY_POLL_MS = 50;
/** After SIGTERM, how long a server may take to exit before SIGKILL. */
const STOP_TIMEOUT_MS = 3_000;
/** wrk's per-request timeout; long, so slow answers show up as latency rather than as errors. */
const WRK_TIMEOUT_SEC = 10;
/** Bytes of a child's output kept for diagnostics (the tail). */
const OUTPUT_TAIL_BYTES = 8 * 1024;
/** The benchmarked file's size. */
const FILE_BYTES = 1024;
const FILE_PATH = "/1k.bin";
/** The large file of the `bigfile` scenario: one random block repeated (written only when chosen). */
const BIG_FILE_BYTES = 1024 * 1024 * 1024;
const BIG_BLOCK_BYTES = 1024 * 1024;
const BIG_FILE_PATH = "/1g.bin";
/** wrk's per-request timeout for the large file: one download takes seconds, and wrk keeps counting. */
const BIG_WRK_TIMEOUT_SEC = 120;
/**
 * The compression scenarios' page: ~100 KiB of varied HTML. `compress` asks for PAGE_PATH, which has no
 * sidecar (nginx `gzip on` compresses every response; Vento compresses once per file version and keeps
 * the result); `compress-static` asks for PAGE_STATIC_PATH, which has `.gz` and `.br` sidecars (nginx
 * `gzip_static on` sends the `.gz`; nginx-light has no brotli module, so nginx never answers br).
 */
const PAGE_BYTES = 100 * 1024;
const PAGE_PATH = "/page.html";
const PAGE_STATIC_PATH = "/page-static.html";
/** What a browser sends. */
const ACCEPT_ENCODING = "br, gzip";
/** Loopback only: the one address either server listens on and wrk aims at. */
const BENCH_HOST = "127.0.0.1";

const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const PIPELINE_SCRIPT = `${REPO_ROOT}/bench/pipeline.lua`;
/** The hello-world app of the `app*` scenarios, run by Vento (APP) and by `deno serve`. */
const APP_SCRIPT = `${REPO_ROOT}/bench/hello_app.ts`;
/** What the app scenarios request, and what the app answers. */
const APP_PATH = "/api/hello";
const APP_BODY = '{"hello":"world"}';
/** The `Deno.serve` + `Deno.open` baseline; always one process, whatever `--workers` says. */
const DENO_SERVE_SCRIPT = `${REPO_ROOT}/bench/deno_serve_baseline.ts`;
/** The fairness baselines: a bare `Deno.listen` loop, `Deno.serve` with a constant body, bare `node:net`. */
const BARE_DENO_SCRIPT = `${REPO_ROOT}/bench/bare_deno.ts`;
const DENO_CONST_SCRIPT = `${REPO_ROOT}/bench/deno_serve_const.ts`;
const BARE_NODE_SCRIPT = `${REPO_ROOT}/bench/bare_node.ts`;
const BARE_HANDLE_SCRIPT = `${REPO_ROOT}/bench/bare_handle.ts`;
/** h2load's own warm-up in the fairness scenarios: connections are made and the first requests excluded. */
const FAIR_WARMUP_SEC = 2;
/** Open files every server and h2load get in the fairness scenarios (5,000 connections plus margin). */
const FAIR_NOFILE = 12_000;
/** nginx `worker_connections` for the fairness scenarios. */
const FAIR_NGINX_WORKER_CONNECTIONS = 10_000;
/** Past duration and warm-up, how long an h2load run may take before it is killed. */
const H2LOAD_GRACE_SEC = 30;

interface Scenario {
  key: string;
  label: string;
  conns: number;
  headers: string[];
  /** wrk Lua script and its arguments, for pipelining. */
  script: { path: string; args: string[] } | null;
  /** The file requested (without a script). */
  path: string;
  /**
   * "rate": requests per second of a small file; "transfer": bytes per second of a large one; "fairness":
   * h2load's per-client rates and slowest request (keep-alive, one request at a time per connection).
   */
  measure: "rate" | "transfer" | "fairness";
  /** Restart both servers before every round, so a round's peak RSS (VmHWM) is its own. */
  freshPerRound: boolean;
  /**
   * The hello-world app (bench/hello_app.ts) instead of a file: Vento with APP against the same module
   * under `deno serve` (in the denoserve column); nginx sits these out.
   */
  app: boolean;
}

/** Defaults of the small-file scenarios. */
const RATE = { path: FILE_PATH, measure: "rate", freshPerRound: false, app: false } as const;
/** Defaults of the app scenarios. */
const APP_RATE = { path: APP_PATH, measure: "rate", freshPerRound: false, app: true, script: null } as const;

const SCENARIOS: readonly Scenario[] = [
  { key: "keepalive", label: "keep-alive, 50 conns", conns: 50, headers: [], script: null, ...RATE },
  { key: "single", label: "keep-alive, 1 conn", conns: 1, headers: [], script: null, ...RATE },
  { key: "c500", label: "keep-alive, 500 conns", conns: 500, headers: [], script: null, ...RATE },
  {
    key: "close",
    label: "Connection: close, 50 conns",
    conns: 50,
    headers: ["Connection: close"],
    script: null,
    ...RATE,
  },
  {
    key: "pipeline",
    label: "pipelined x16, 50 conns",
    conns: 50,
    headers: [],
    script: { path: PIPELINE_SCRIPT, args: [FILE_PATH, "16"] },
    ...RATE,
  },
  {
    key: "compress",
    label: "100 KiB HTML, br/gzip on the fly, 50 conns",
    conns: 50,
    headers: [`Accept-Encoding: ${ACCEPT_ENCODING}`],
    script: null,
    path: PAGE_PATH,
    measure: "rate",
    freshPerRound: false,
    app: false,
  },
  {
    key: "compress-static",
    label: "100 KiB HTML, .br/.gz sidecars, 50 conns",
    conns: 50,
    headers: [`Accept-Encoding: ${ACCEPT_ENCODING}`],
    script: null,
    path: PAGE_STATIC_PATH,
    measure: "rate",
    freshPerRound: false,
    app: false,
  },
  {
    key: "bigfile",
    label: "1 GiB file, 8 conns",
    conns: 8,
    headers: [],
    script: null,
    path: BIG_FILE_PATH,
    measure: "transfer",
    freshPerRound: true,
    app: false,
  },
  { key: "app", label: "app JSON, keep-alive, 50 conns", conns: 50, headers: [], ...APP_RATE },
  { key: "app500", label: "app JSON, keep-alive, 500 conns", conns: 500, headers: [], ...APP_RATE },
  {
    key: "appclose",
    label: "app JSON, Connection: close, 50 conns",
    conns: 50,
    headers: ["Connection: close"],
    ...APP_RATE,
  },
  {
    key: "fair500",
    label: "fairness, 500 conns",
    conns: 500,
    headers: [],
    script: null,
    path: FILE_PATH,
    measure: "fairness",
    freshPerRound: false,
    app: false,
  },
  {
    key: "fair5000",
    label: "fairness, 5,000 conns",
    conns: 5000,
    headers: [],
    script: null,
    path: FILE_PATH,
    measure: "fairness",
    freshPerRound: false,
    app: false,
  },
];

type ServerName =
  | "nginx"
  | "nginx-plain"
  | "vento"
  | "denoserve"
  | "vento-rules"
  | "bare"
  | "denoconst"
  | "nodenet"
  | "handle";

const SERVER_NAMES: readonly ServerName[] = [
  "nginx",
  "nginx-plain",
  "vento",
  "denoserve",
  "vento-rules",
  "bare",
  "denoconst",
  "nodenet",
  "handle",
];
/** What `--servers` means when not given: every server but vento-rules and nginx-plain (comparisons of their own). */
const DEFAULT_SERVERS: readonly ServerName[] = [
  "nginx",
  "vento",
  "denoserve",
  "bare",
  "denoconst",
  "nodenet",
  "handle",
];
/** Who runs the wrk scenarios, and who the fairness ones (each from those `--servers` lists). */
const WRK_SERVERS: readonly ServerName[] = ["nginx", "nginx-plain", "vento", "denoserve", "vento-rules"];
const FAIR_SERVERS: readonly ServerName[] = [
  "nginx",
  "nginx-plain",
  "vento",
  "bare",
  "denoconst",
  "nodenet",
  "handle",
];
/** The baselines answer a fixed 1 KiB body whatever the path: checked for size, not for the file's bytes. */
const FIXED_BODY_SERVERS: readonly ServerName[] = ["bare", "denoconst", "nodenet", "handle"];

/**
 * The baselines also run the wrk scenarios that ask for the small file without a script (keep-alive,
 * close): what the runtime's bare socket paths cost per request, beside Vento's (a table of their own).
 */
function baselinesRun(sc: Scenario): boolean {
  return sc.measure === "rate" && !sc.app && sc.script === null && sc.path === FILE_PATH;
}
/** Server names padded to this width line progress lines up. */
const NAME_WIDTH = Math.max(...SERVER_NAMES.map((n) => n.length));

const HELP = `Vento load benchmark: Vento against nginx and Deno.serve on loopback, interleaved runs, medians.

Usage: deno task bench [options]

  --scenario LIST   comma-separated: ${SCENARIOS.map((s) => s.key).join(", ")}, or all (default keepalive)
  --duration SEC    seconds per wrk run (default 5, at most ${MAX_DURATION_SEC})
  --rounds N        interleaved rounds per scenario, A B C A B C … (default 3, at most ${MAX_ROUNDS})
  --warmup SEC      warm-up per server before measuring (default 2, at most ${MAX_WARMUP_SEC})
  --servers LIST    any of ${SERVER_NAMES.join(",")} (default all but vento-rules and nginx-plain);
                    ratios need vento and the other (denoserve = Deno.serve + Deno.open per request, as
                    std's file server; in the app scenarios it is bench/hello_app.ts under \`deno serve\`,
                    and nginx sits out; vento-rules = Vento serving the same files with a typical _headers
                    of 20 rules and _redirects of 50, compared with vento in a table of its own;
                    nginx-plain = nginx without gzip and gzip_static: no sidecar lookup on every request
                    to say Vary: Accept-Encoding, which nginx makes and Vento caches). The wrk scenarios
                    run nginx, vento, denoserve and vento-rules; the fairness ones (h2load) nginx, vento
                    and the baselines bare (Deno.listen loop), denoconst (Deno.serve, constant body) and
                    nodenet (node:net responder), handle (responder on the socket handles Vento's
                    transport drives); the baselines also run keepalive, single, c500 and close
  --workers LIST    comma-separated worker counts, e.g. 1,2: nginx worker_processes N and Vento WORKERS=N,
                    each count measured in turn (default 1); denoserve stays one process; with N > 1
                    nothing is pinned
  --no-pin          do not pin wrk (CPU 0) and the servers (CPU 1) with taskset
  --json            print the results as JSON on stdout (progress stays on stderr)
  --keep            keep the temp folder (configs, logs) for inspection
  --set KEY=VALUE   extra vento.conf line, repeatable, replacing the bench's own line for KEY (e.g.
                    --set STREAM_CHUNK_BYTES=1048576; --set ALLOWLIST= runs the guard's per-client
                    connection and request checks on the load, at rates it never reaches)
  --v8-flags FLAGS  run Vento with --v8-flags=FLAGS instead of those of deno.json's start task
  --help            this text

Needs wrk and nginx (Debian/Ubuntu: apt-get install wrk nginx-light); the fairness scenarios also need
h2load (apt-get install nghttp2-client) and prlimit (util-linux).`;

interface Options {
  scenarios: Scenario[];
  durationSec: number;
  rounds: number;
  warmupSec: number;
  servers: ServerName[];
  /** Worker counts to measure, in turn (nginx worker_processes, Vento WORKERS). */
  workers: number[];
  pin: boolean;
  json: boolean;
  keep: boolean;
  /** Extra vento.conf lines (`KEY=VALUE`), appended after the bench's own. */
  ventoSettings: string[];
  /** `--v8-flags=` value for Vento, replacing the start task's; null keeps the task's. */
  v8Flags: string | null;
}

function parseOptions(args: string[]): Options | { help: true } | { error: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      options: {
        scenario: { type: "string", default: "keepalive" },
        duration: { type: "string", default: "5" },
        rounds: { type: "string", default: "3" },
        warmup: { type: "string", default: "2" },
        servers: { type: "string", default: DEFAULT_SERVERS.join(",") },
        workers: { type: "string", default: "1" },
        "no-pin": { type: "boolean", default: false },
        set: { type: "string", multiple: true, default: [] },
        "v8-flags": { type: "string" },
        json: { type: "boolean", default: false },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    return { error: errorMessage(e) };
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  const int = (name: string, raw: string, min: number, max: number): number | string => {
    const n = Number(raw);
    return /^\d+$/.test(raw) && n >= min && n <= max
      ? n
      : `--${name} must be a whole number from ${min} to ${max}`;
  };
  const durationSec = int("duration", v.duration, 1, MAX_DURATION_SEC);
  const rounds = int("rounds", v.rounds, 1, MAX_ROUNDS);
  const warmupSec = int("warmup", v.warmup, 0, MAX_WARMUP_SEC);
  for (const x of [durationSec, rounds, warmupSec]) if (typeof x === "string") return { error: x };
  const keys = v.scenario === "all"
    ? SCENARIOS.map((s) => s.key)
    : v.scenario.split(",").map((s) => s.trim());
  const scenarios: Scenario[] = [];
  for (const k of keys) {
    const s = SCENARIOS.find((x) => x.key === k);
    if (s === undefined) {
      return { error: `unknown scenario "${k}" (${SCENARIOS.map((x) => x.key).join(", ")})` };
    }
    if (!scenarios.includes(s)) scenarios.push(s);
  }
  const servers: ServerName[] = [];
  for (const name of v.servers.split(",").map((s) => s.trim())) {
    const known = SERVER_NAMES.find((n) => n === name);
    if (known === undefined) return { error: `unknown server "${name}" (${SERVER_NAMES.join(", ")})` };
    if (!servers.includes(known)) servers.push(known);
  }
  const workers: number[] = [];
  for (const raw of v.workers.split(",").map((s) => s.trim())) {
    const n = int("workers", raw, 1, MAX_BENCH_WORKERS);
    if (typeof n === "string") return { error: n };
    if (!workers.includes(n)) workers.push(n);
  }
  return {
    scenarios,
    workers,
    durationSec: durationSec as number,
    rounds: rounds as number,
    warmupSec: warmupSec as number,
    servers,
    pin: !v["no-pin"],
    json: v.json,
    keep: v.keep,
    ventoSettings: v.set,
    v8Flags: v["v8-flags"] ?? null,
  };
}

// --- small helpers -------------------------------------------------------------------------------

const progress = (msg: string): void => console.error(msg);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- CPU accounting from /proc -------------------------------------------------------------------

/** utime + stime (clock ticks) and parent pid of one process, or null when unreadable. */
function readStat(pid: number): { ticks: number; ppid: number } | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** `pid` and its descendants (nginx's master and worker). */
function processTree(pid: number): number[] {
  const parentOf = new Map<number, number>();
  try {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      const st = readStat(Number(e.name));
      if (st !== null) parentOf.set(Number(e.name), st.ppid);
    }
  } catch {
    return [pid];
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parentOf) if (parent === tree[i] && !tree.includes(child)) tree.push(child);
  }
  return tree;
}

/** CPU ticks used so far by `pid` and its descendants, or null without /proc. */
function treeCpuTicks(pid: number): number | null {
  let total = 0;
  let any = false;
  for (const p of processTree(pid)) {
    const st = readStat(p);
    if (st !== null) {
      total += st.ticks;
      any = true;
    }
  }
  return any ? total : null;
}

/** Peak resident set size (VmHWM, KiB) summed over `pid` and its descendants, or null without /proc. */
function treePeakRssKiB(pid: number): number | null {
  let total = 0;
  let any = false;
  for (const p of processTree(pid)) {
    try {
      const m = Deno.readTextFileSync(`/proc/${p}/status`).match(/^VmHWM:\s+(\d+) kB/m);
      if (m !== null) {
        total += Number(m[1]);
        any = true;
      }
    } catch {
      // Gone or unreadable: not counted.
    }
  }
  return any ? total : null;
}

// --- child processes -----------------------------------------------------------------------------

/** A spawned server: its process, the tail of its output, and whether it has exited. */
class ServerProcess {
  readonly name: ServerName;
  readonly port: number;
  readonly proc: Deno.ChildProcess;
  #tail = "";
  #exited = false;
  #sawListening = false;
  readonly exited: Promise<Deno.CommandStatus>;

  constructor(name: ServerName, port: number, cmd: string, args: string[], cwd: string) {
    this.name = name;
    this.port = port;
    this.proc = new Deno.Command(cmd, { args, cwd, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    this.exited = this.proc.status.then((s) => {
      this.#exited = true;
      return s;
    });
    void this.#collect(this.proc.stdout);
    void this.#collect(this.proc.stderr);
  }

  get pid(): number {
    return this.proc.pid;
  }
  get hasExited(): boolean {
    return this.#exited;
  }
  get output(): string {
    return this.#tail.trim();
  }

  /** Drains a pipe to the end (a full pipe would stall the server), keeping only a bounded tail. */
  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this.#tail = (this.#tail + dec.decode(chunk, { stream: true })).slice(-OUTPUT_TAIL_BYTES);
        if (!this.#sawListening && this.#tail.includes("listening on")) this.#sawListening = true;
      }
    } catch {
      // The process went away; nothing more to read.
    }
  }

  /** Resolves once the port accepts a connection; throws if the process exits or the timeout passes. */
  async waitReady(): Promise<void> {
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (this.#exited) throw new Error(`${this.name} exited during start-up:\n${this.output}`);
      try {
        const c = await Deno.connect({ hostname: BENCH_HOST, port: this.port });
        c.close();
        return;
      } catch {
        await sleep(READY_POLL_MS);
      }
    }
    const hint = this.#sawListening ? " (it printed 'listening on')" : "";
    throw new Error(
      `${this.name} did not accept connections within ${READY_TIMEOUT_MS} ms${hint}:\n${this.output}`,
    );
  }

  /** SIGTERM, then SIGKILL for it and any descendant still alive after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    const tree = processTree(this.pid);
    try {
      this.proc.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const p of tree) {
        try {
          Deno.kill(p, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      await this.exited;
    }
  }
}

/** Everything the bench must undo: servers, the running wrk, the temp folder. */
class Janitor {
  servers: ServerProcess[] = [];
  wrk: Deno.ChildProcess | null = null;
  tempDir: string | null = null;
  keepTemp = false;
  #done: Promise<void> | null = null;

  cleanup(): Promise<void> {
    this.#done ??= (async () => {
      try {
        this.wrk?.kill("SIGKILL");
      } catch {
        // wrk already finished.
      }
      await Promise.all(this.servers.map((s) => s.stop()));
      if (this.tempDir !== null) {
        if (this.keepTemp) progress(`kept ${this.tempDir}`);
        else await Deno.remove(this.tempDir, { recursive: true }).catch(() => {});
      }
    })();
    return this.#done;
  }
}

// --- the three servers ---------------------------------------------------------------------------

/** nginx as the file-serving baseline (also used by bench/idle.ts, which needs more connections per worker). */
export function nginxConfig(
  dir: string,
  docroot: string,
  port: number,
  workers: number,
  workerConnections = 4096,
  compression = true,
): string {
  return `# Generated by bench/load.ts: nginx tuned as a fair static-file baseline.
worker_processes ${workers};
pid ${dir}/${compression ? "nginx" : "nginx-plain"}.pid;
error_log ${dir}/nginx-error.log warn;
events {
  worker_connections ${workerConnections};
}
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  open_file_cache max=1000 inactive=60s;
  keepalive_requests 100000;
  keepalive_timeout 65s;
  server_tokens off;
  client_body_temp_path ${dir}/nginx-tmp/body;
  proxy_temp_path ${dir}/nginx-tmp/proxy;
  fastcgi_temp_path ${dir}/nginx-tmp/fastcgi;
  uwsgi_temp_path ${dir}/nginx-tmp/uwsgi;
  scgi_temp_path ${dir}/nginx-tmp/scgi;
  # Compression as a site would turn it on (the compress scenarios; wrk and h2load send no Accept-Encoding
  # elsewhere, but gzip_vary makes nginx look for the .gz sidecar on every request to say Vary).
  ${compression ? "gzip on;\n  gzip_static on;\n  gzip_vary on;" : "gzip off;"}
  types {
    text/html html;
    application/octet-stream bin;
  }
  default_type application/octet-stream;
  server {
    listen ${BENCH_HOST}:${port} backlog=4096;
    root ${docroot};
    index index.html;
  }
}
`;
}

/**
 * `deno` arguments that start Vento as `deno task start` does (deno.json), so the bench measures the
 * runtime flags users get (e.g. `--v8-flags`); `v8Flags` replaces the task's V8 flags for experiments.
 */
export async function ventoRunArgs(v8Flags: string | null): Promise<string[]> {
  let args = ["run", "-A", "main.ts"];
  try {
    const task = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`))?.tasks?.start;
    const words = typeof task === "string" ? task.trim().split(/\s+/) : [];
    if (words[0] === "deno" && words[1] === "run" && words.at(-1) === "main.ts") args = words.slice(1);
  } catch {
    // No readable deno.json: the plain command.
  }
  if (v8Flags !== null) {
    args = args.filter((a) => !a.startsWith("--v8-flags"));
    args.splice(1, 0, `--v8-flags=${v8Flags}`);
  }
  return args;
}

/**
 * `deno` arguments that start the `Deno.serve` baseline with just the permissions it needs, one process:
 * it has no worker setting, and std's file server has none either.
 */
function denoServeArgs(docroot: string, port: number): string[] {
  return ["run", "--allow-net", "--allow-read", DENO_SERVE_SCRIPT, "--port", String(port), "--root", docroot];
}

/** Vento with logging off and the guard out of the way of the load (also used by bench/idle.ts). */
export function ventoConfig(docroot: string, port: number, extra: string[], workers: number): string {
  const own = [
    `WORKERS=${workers}`,
    `PORT=${port}`,
    `HOST=${BENCH_HOST}`,
    `DOCUMENT_ROOT=${docroot}`,
    "ACCESS_LOG=off",
    "ADMIN_SOCKET=off",
    "ALLOWLIST=127.0.0.0/8",
    "REQUEST_RATE_PER_SEC=10000000",
    "REQUEST_BURST=10000000",
    "CONN_RATE_PER_SEC=10000000",
    "CONN_BURST=10000000",
    "MAX_REQUESTS_PER_CONN=10000000",
    "MAX_CONNS_PER_CLIENT=100000",
    "MAX_CONNS=100000",
  ];
  // An extra line replaces the bench's own line for its key (`--set ALLOWLIST=` puts the load
  // generator under the guard's per-client checks, at the bench's generous rates).
  const keyOf = (line: string) => line.slice(0, line.indexOf("="));
  const overridden = new Set(extra.map(keyOf));
  const lines = [...own.filter((line) => !overridden.has(keyOf(line))), ...extra];
  return "# Generated by bench/load.ts: Vento with logging off and the guard out of the way of the load.\n" +
    lines.map((line) => `${line}\n`).join("");
}

/** Asks the app for its JSON, so a benchmark of errors cannot pass as one of the app. */
async function checkServesApp(port: number): Promise<string | null> {
  try {
    const res = await fetch(`http://${BENCH_HOST}:${port}${APP_PATH}`, { headers: { connection: "close" } });
    const body = await res.text();
    if (res.status !== 200) return `status ${res.status}`;
    return body === APP_BODY ? null : `wrong body ${JSON.stringify(body.slice(0, 100))}`;
  } catch (e) {
    return errorMessage(e);
  }
}

/** `deno` arguments that run the app under `deno serve` (one process) on `port`. */
function appServeArgs(port: number): string[] {
  return ["serve", "--quiet", "--allow-net", "--host", BENCH_HOST, "--port", String(port), APP_SCRIPT];
}

/** Sends one GET and checks for 200 and the exact file, so a benchmark of errors cannot pass as one of files. */
async function checkServes(port: number, expected: Uint8Array): Promise<string | null> {
  try {
    const res = await fetch(`http://${BENCH_HOST}:${port}${FILE_PATH}`, { headers: { connection: "close" } });
    const body = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) return `status ${res.status}`;
    if (body.length !== expected.length || !body.every((b, i) => b === expected[i])) {
      return `wrong body (${body.length} bytes)`;
    }
    return null;
  } catch (e) {
    return errorMessage(e);
  }
}

/** Sends one GET and checks for 200 and a 1 KiB body (the baselines' fixed answer). */
async function checkServesFixed(port: number): Promise<string | null> {
  try {
    const res = await fetch(`http://${BENCH_HOST}:${port}${FILE_PATH}`, { headers: { connection: "close" } });
    const body = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) return `status ${res.status}`;
    return body.length === FILE_BYTES ? null : `wrong body (${body.length} bytes)`;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * Downloads the large file once and checks every byte against the repeated block, streaming (never
 * holding the body), so the transfer scenario measures correct bytes.
 */
async function checkServesBig(port: number, block: Uint8Array): Promise<string | null> {
  try {
    const res = await fetch(`http://${BENCH_HOST}:${port}${BIG_FILE_PATH}`, {
      headers: { connection: "close" },
    });
    if (res.status !== 200 || res.body === null) {
      await res.body?.cancel();
      return `status ${res.status}`;
    }
    let offset = 0;
    for await (const chunk of res.body) {
      for (let i = 0; i < chunk.length; i++) {
        if (chunk[i] !== block[(offset + i) % BIG_BLOCK_BYTES]) return `wrong byte at offset ${offset + i}`;
      }
      offset += chunk.length;
    }
    return offset === BIG_FILE_BYTES ? null : `short body (${offset} bytes)`;
  } catch (e) {
    return errorMessage(e);
  }
}

/** ~`bytes` of HTML that compresses like a real page (varied rows, not one line repeated). */
function makePage(bytes: number): string {
  const words = ["static", "server", "vento", "deno", "cache", "brotli", "gzip", "request", "header", "file"];
  let html = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>bench page</title>' +
    '<link rel="stylesheet" href="/style.css"></head>\n<body><main>\n<table>\n';
  let x = 12345;
  for (let i = 0; html.length < bytes - 40; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const a = words[x % words.length];
    const b = words[(x >> 8) % words.length];
    html += `<tr id="r${i}"><td class="n">${i}</td><td><a href="/items/${x % 100000}">${a} ${b}</a></td>` +
      `<td class="v">${(x % 1000000) / 100}</td></tr>\n`;
  }
  return html + "</table>\n</main></body></html>\n";
}

/**
 * Fetches `path` with Accept-Encoding as the benchmark does (curl, which decompresses what it gets) and
 * checks the decoded page; returns the coding and the body bytes on the wire, or the problem.
 */
async function checkServesCompressed(
  port: number,
  path: string,
  page: string,
): Promise<{ coding: string; wireBytes: number } | string> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--compressed",
      "-H",
      `Accept-Encoding: ${ACCEPT_ENCODING}`,
      "-w",
      "\n%{http_code} %{size_download} %header{content-encoding}",
      `http://${BENCH_HOST}:${port}${path}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) return `curl failed: ${new TextDecoder().decode(out.stderr)}`;
  const nl = text.lastIndexOf("\n");
  const [status, size, coding = ""] = text.slice(nl + 1).split(" ");
  if (status !== "200") return `status ${status}`;
  if (text.slice(0, nl) !== page) return "the decompressed body differs from the page";
  return { coding: coding === "" ? "identity" : coding, wireBytes: Number(size) };
}

/** Writes the large file as `block` repeated (real bytes on disk, no holes), one block at a time. */
async function writeBigFile(path: string, block: Uint8Array): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o644 });
  for (let done = 0; done < BIG_FILE_BYTES; done += block.length) {
    for (let off = 0; off < block.length;) off += await file.write(block.subarray(off));
  }
}

// --- wrk -----------------------------------------------------------------------------------------

interface RunResult {
  rps: number;
  /** wrk's `Transfer/sec` in bytes: every byte read, also of downloads still running at the end. */
  bytesPerSec: number;
  /** wrk's total bytes read ("… requests in 5.05s, 5.79GB read"). */
  bytesRead: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx/3xx answers plus socket errors; a run with errors is flagged in the table. */
  errors: number;
  /** CPU time of the server (process tree) per request, or null without /proc. */
  cpuUsPerReq: number | null;
  /** CPU time of the server (process tree) per GiB wrk read, or null without /proc. */
  cpuMsPerGiB: number | null;
  /**
   * The server's peak RSS (VmHWM, KiB, summed over its process tree) read after the run: that run's
   * own peak when the scenario restarts servers per round, else the peak since start. Null without /proc.
   */
  peakRssKiB: number | null;
}

/** wrk prints sizes in binary units ("1.15GB" is 1.15 GiB). */
const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

function toMs(value: string, unit: string): number {
  const v = Number(value);
  return unit === "us" ? v / 1000 : unit === "s" ? v * 1000 : unit === "m" ? v * 60_000 : v;
}

/** Extracts the numbers this bench reports from wrk's text output. */
export function parseWrk(
  text: string,
): Omit<RunResult, "cpuUsPerReq" | "cpuMsPerGiB" | "peakRssKiB"> | null {
  const rps = text.match(/Requests\/sec:\s+([\d.]+)/);
  const total = text.match(/(\d+) requests in /);
  const transfer = text.match(/Transfer\/sec:\s+([\d.]+)([KMGT]?B)/);
  const read = text.match(/requests in [\d.]+\w+, ([\d.]+)([KMGT]?B) read/);
  const bytes = (m: RegExpMatchArray | null) => (m === null ? Number.NaN : Number(m[1]) * SIZE_UNITS[m[2]]);
  if (rps === null || total === null) return null;
  const pct = (p: string): number => {
    const m = text.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m"));
    return m === null ? Number.NaN : toMs(m[1], m[2]);
  };
  const non2xx = text.match(/Non-2xx or 3xx responses:\s+(\d+)/);
  const sock = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = sock === null ? 0 : sock.slice(1, 5).reduce((a, b) => a + Number(b), 0);
  const p50Ms = pct("50");
  let p99Ms = pct("99");
  // wrk 4.1 sometimes prints "99% 0.00us" under pipelining (a histogram quirk): unknown, not zero.
  if (!(p99Ms >= p50Ms) || p99Ms === 0) p99Ms = Number.NaN;
  return {
    rps: Number(rps[1]),
    bytesPerSec: bytes(transfer),
    bytesRead: bytes(read),
    requests: Number(total[1]),
    p50Ms,
    p99Ms,
    errors: (non2xx === null ? 0 : Number(non2xx[1])) + socketErrors,
  };
}

/** What every wrk run needs besides its target. */
interface RunContext {
  janitor: Janitor;
  /** Pin wrk to CPU 0 with taskset. */
  pin: boolean;
  /** Kernel clock ticks per second (`getconf CLK_TCK`), to turn /proc tick counts into time. */
  ticksPerSec: number;
}

async function runWrk(
  ctx: RunContext,
  server: ServerProcess,
  sc: Scenario,
  durationSec: number,
): Promise<RunResult> {
  const { janitor, pin } = ctx;
  const base = `http://${BENCH_HOST}:${server.port}`;
  const timeoutSec = sc.measure === "transfer" ? BIG_WRK_TIMEOUT_SEC : WRK_TIMEOUT_SEC;
  const args = ["-t1", `-c${sc.conns}`, `-d${durationSec}s`, "--latency", "--timeout", `${timeoutSec}s`];
  for (const h of sc.headers) args.push("-H", h);
  if (sc.script !== null) args.push("-s", sc.script.path, base, "--", ...sc.script.args);
  else args.push(base + sc.path);
  const [cmd, cmdArgs] = pin ? ["taskset", ["-c", "0", "wrk", ...args]] : ["wrk", args];

  const before = treeCpuTicks(server.pid);
  const child = new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped" }).spawn();
  janitor.wrk = child;
  const out = await child.output();
  janitor.wrk = null;
  const after = treeCpuTicks(server.pid);
  const peakRssKiB = treePeakRssKiB(server.pid);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const parsed = parseWrk(text);
  if (!out.success || parsed === null) throw new Error(`wrk failed (exit ${out.code}):\n${text}`);
  const cpuMs = before !== null && after !== null ? (after - before) * (1e3 / ctx.ticksPerSec) : null;
  const cpuUsPerReq = cpuMs !== null && parsed.requests > 0 ? (cpuMs * 1e3) / parsed.requests : null;
  const gib = parsed.bytesRead / 1024 ** 3;
  const cpuMsPerGiB = cpuMs !== null && gib > 0 ? cpuMs / gib : null;
  return { ...parsed, cpuUsPerReq, cpuMsPerGiB, peakRssKiB };
}

// --- h2load (fairness) ----------------------------------------------------------------------------

interface FairRun {
  /** h2load's overall req/s (after its warm-up). */
  rps: number;
  /** Every client's own rate: the slowest and the mean (req/s). */
  clientMinRps: number;
  clientMeanRps: number;
  /** The slowest single request (ms). */
  maxRequestMs: number;
  meanRequestMs: number;
  requests: number;
  /** Failed, errored and timed-out requests plus non-2xx answers. */
  errors: number;
  cpuUsPerReq: number | null;
}

function h2Ms(value: string): number {
  const m = value.match(/^([\d.]+)(us|ms|s)$/);
  if (m === null) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

/** Extracts the fairness figures from h2load's text output (null when it has none). */
export function parseH2load(text: string): Omit<FairRun, "cpuUsPerReq"> | null {
  const fin = text.match(/finished in [\d.]+\w*, ([\d.]+) req\/s/);
  const reqs = text.match(
    /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/,
  );
  const codes = text.match(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const time = text.match(/^time for request:\s+(\S+)\s+(\S+)\s+(\S+)/m);
  const rate = text.match(/^req\/s\s+:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/m);
  if (fin === null || reqs === null || time === null || rate === null) return null;
  const non2xx = codes === null ? 0 : Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  return {
    rps: Number(fin[1]),
    clientMinRps: Number(rate[1]),
    clientMeanRps: Number(rate[3]),
    maxRequestMs: h2Ms(time[2]),
    meanRequestMs: h2Ms(time[3]),
    requests: Number(reqs[2]),
    errors: Number(reqs[3]) + Number(reqs[4]) + Number(reqs[5]) + non2xx,
  };
}

async function runH2load(
  ctx: RunContext,
  server: ServerProcess,
  sc: Scenario,
  durationSec: number,
): Promise<FairRun> {
  const { janitor, pin } = ctx;
  const args = [
    "--h1",
    `-c${sc.conns}`,
    "-t1",
    "-D",
    String(durationSec),
    `--warm-up-time=${FAIR_WARMUP_SEC}`,
    `http://${BENCH_HOST}:${server.port}${sc.path}`,
  ];
  const h2 = ["prlimit", `--nofile=${FAIR_NOFILE}`, "h2load", ...args];
  const [cmd, cmdArgs] = pin ? ["taskset", ["-c", "0", ...h2]] : [h2[0], h2.slice(1)];
  const before = treeCpuTicks(server.pid);
  const child = new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped" }).spawn();
  janitor.wrk = child;
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // finished meanwhile
    }
  }, (durationSec + FAIR_WARMUP_SEC + H2LOAD_GRACE_SEC) * 1000);
  const out = await child.output();
  clearTimeout(killer);
  janitor.wrk = null;
  const after = treeCpuTicks(server.pid);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const parsed = parseH2load(text);
  if (!out.success || parsed === null) throw new Error(`h2load failed (exit ${out.code}):\n${text}`);
  const cpuMs = before !== null && after !== null ? (after - before) * (1e3 / ctx.ticksPerSec) : null;
  // CPU over the whole run (warm-up included) against the requests counted after it: an upper bound.
  const cpuUsPerReq = cpuMs !== null && parsed.requests > 0 ? (cpuMs * 1e3) / parsed.requests : null;
  return { ...parsed, cpuUsPerReq };
}

interface FairReport {
  scenario: string;
  label: string;
  workers: number;
  conns: number;
  /** Per server: every round, and the figures the table shows. */
  servers: Partial<Record<ServerName, ReturnType<typeof summarizeFair>>>;
}

/** Median total req/s; the worst round's fairness and slowest request (a starved client in any round counts). */
function summarizeFair(runs: FairRun[]) {
  const fairness = runs.map((r) => (r.clientMeanRps > 0 ? r.clientMinRps / r.clientMeanRps : 0));
  return {
    runs,
    medianRps: median(runs.map((r) => r.rps)),
    worstFairness: Math.min(...fairness),
    medianFairness: median(fairness),
    worstMaxRequestMs: Math.max(...runs.map((r) => r.maxRequestMs)),
    medianMaxRequestMs: median(runs.map((r) => r.maxRequestMs)),
    medianCpuUsPerReq: runs.every((r) => r.cpuUsPerReq !== null)
      ? median(runs.map((r) => r.cpuUsPerReq as number))
      : null,
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}

function printFairTable(reports: FairReport[]): void {
  const header = [
    "scenario",
    "server",
    "req/s",
    "vs nginx",
    "slowest client / mean",
    "slowest request",
    "CPU µs/req",
    "errors",
  ];
  const rows: string[][] = [];
  for (const r of reports) {
    const nginx = r.servers.nginx;
    for (const name of FAIR_SERVERS) {
      const x = r.servers[name];
      if (x === undefined) continue;
      rows.push([
        r.label,
        name,
        fmtInt(x.medianRps),
        nginx ? fmtRatio(x.medianRps / nginx.medianRps) : "-",
        `${x.worstFairness.toFixed(2)} (median ${x.medianFairness.toFixed(2)})`,
        `${fmtMs(x.worstMaxRequestMs)} (median ${fmtMs(x.medianMaxRequestMs)})`,
        fmtCpu(x.medianCpuUsPerReq),
        String(x.errors),
      ]);
    }
  }
  printRows(header, rows);
}

// --- report --------------------------------------------------------------------------------------

interface ScenarioReport {
  scenario: string;
  label: string;
  /** nginx worker_processes and Vento WORKERS of this row. */
  workers: number;
  conns: number;
  measure: Scenario["measure"];
  servers: Partial<Record<ServerName, ReturnType<typeof summarize>>>;
  /** Vento's median over nginx's (req/s, or MiB/s for a transfer scenario); null unless both ran. */
  ratio: number | null;
  /** Vento's median over the `Deno.serve` baseline's, likewise; null unless both ran. */
  ratioDenoServe: number | null;
  /** Vento with `_headers` + `_redirects` over Vento without, likewise; null unless both ran. */
  ratioRules: number | null;
}

const MIB = 1024 * 1024;

function summarize(runs: RunResult[]) {
  const known = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);
  const cpus = known(runs.map((r) => r.cpuUsPerReq));
  const cpuGiB = known(runs.map((r) => r.cpuMsPerGiB));
  const rss = known(runs.map((r) => r.peakRssKiB));
  return {
    runs,
    medianRps: median(runs.map((r) => r.rps)),
    medianMiBps: median(runs.map((r) => r.bytesPerSec / MIB)),
    medianP99Ms: median(runs.map((r) => r.p99Ms)),
    medianCpuUsPerReq: cpus.length === runs.length ? median(cpus) : null,
    medianCpuMsPerGiB: cpuGiB.length === runs.length ? median(cpuGiB) : null,
    /** The highest peak RSS of any run (KiB); null without /proc. */
    maxPeakRssKiB: rss.length > 0 ? Math.max(...rss) : null,
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}

function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-";
}

function fmtRatio(x: number | null): string {
  return x === null || !Number.isFinite(x) ? "-" : `${x.toFixed(2)}x`;
}

/** CPU µs per request, one decimal; "-" when not measured. */
function fmtCpu(x: number | null | undefined): string {
  return x === null || x === undefined ? "-" : x.toFixed(1);
}

function fmtMs(n: number): string {
  return !Number.isFinite(n) ? "-" : n < 10 ? `${n.toFixed(2)} ms` : `${Math.round(n)} ms`;
}

/** Prints `rows` under `header`, the first column left-aligned and the rest right-aligned. */
function printRows(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])));
  console.log(line(header).join("  "));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r).join("  "));
}

/** The small-file scenarios (req/s) in one table, the transfer scenarios (MiB/s, peak RSS) in another. */
function printTables(reports: ScenarioReport[]): void {
  const rate = reports.filter((r) => r.measure === "rate");
  const transfer = reports.filter((r) => r.measure === "transfer");
  if (rate.length > 0) printRateTable(rate);
  if (rate.some((r) => FIXED_BODY_SERVERS.some((b) => r.servers[b] !== undefined))) {
    console.log("");
    printBaselineTable(rate);
  }
  if (rate.some((r) => r.ratioRules !== null)) {
    console.log("");
    printRulesTable(rate);
  }
  if (rate.length > 0 && transfer.length > 0) console.log("");
  if (transfer.length > 0) printTransferTable(transfer);
}

function printTransferTable(reports: ScenarioReport[]): void {
  const header = [
    "scenario",
    "nginx MiB/s",
    "vento MiB/s",
    "vento/nginx",
    "denoserve MiB/s",
    "vento/denoserve",
    "nginx CPU ms/GiB",
    "vento CPU ms/GiB",
    "nginx peak RSS",
    "vento peak RSS",
    "denoserve peak RSS",
    "errors n/v",
  ];
  const rss = (kib: number | null | undefined) =>
    kib === null || kib === undefined ? "-" : `${(kib / 1024).toFixed(1)} MiB`;
  const rows = reports.map((r) => {
    const n = r.servers.nginx;
    const v = r.servers.vento;
    const d = r.servers.denoserve;
    const cpu = (x: number | null | undefined) => (x === null || x === undefined ? "-" : fmtInt(x));
    return [
      r.label,
      n ? fmtInt(n.medianMiBps) : "-",
      v ? fmtInt(v.medianMiBps) : "-",
      fmtRatio(r.ratio),
      d ? fmtInt(d.medianMiBps) : "-",
      fmtRatio(r.ratioDenoServe),
      cpu(n?.medianCpuMsPerGiB),
      cpu(v?.medianCpuMsPerGiB),
      rss(n?.maxPeakRssKiB),
      rss(v?.maxPeakRssKiB),
      rss(d?.maxPeakRssKiB),
      `${n ? n.errors : "-"}/${v ? v.errors : "-"}`,
    ];
  });
  printRows(header, rows);
}

function printRateTable(reports: ScenarioReport[]): void {
  const header = [
    "scenario",
    "nginx req/s",
    "vento req/s",
    "vento/nginx",
    "denoserve req/s",
    "vento/denoserve",
    "nginx CPU µs/req",
    "vento CPU µs/req",
    "nginx p99",
    "vento p99",
    "errors n/v",
  ];
  const rows = reports.map((r) => {
    const n = r.servers.nginx;
    const v = r.servers.vento;
    const d = r.servers.denoserve;
    return [
      r.label,
      n ? fmtInt(n.medianRps) : "-",
      v ? fmtInt(v.medianRps) : "-",
      fmtRatio(r.ratio),
      d ? fmtInt(d.medianRps) : "-",
      fmtRatio(r.ratioDenoServe),
      fmtCpu(n?.medianCpuUsPerReq),
      fmtCpu(v?.medianCpuUsPerReq),
      n ? fmtMs(n.medianP99Ms) : "-",
      v ? fmtMs(v.medianP99Ms) : "-",
      `${n ? n.errors : "-"}/${v ? v.errors : "-"}`,
    ];
  });
  printRows(header, rows);
}

/** The runtime baselines beside Vento and nginx: req/s and CPU per request, and Vento's ratio to each. */
function printBaselineTable(reports: ScenarioReport[]): void {
  const names = FIXED_BODY_SERVERS.filter((b) => reports.some((r) => r.servers[b] !== undefined));
  const header = ["scenario", ...names.flatMap((b) => [`${b} req/s`, `${b} CPU µs/req`, `vento/${b}`])];
  const rows = reports.filter((r) => names.some((b) => r.servers[b] !== undefined)).map((r) => {
    const v = r.servers.vento;
    return [
      r.label,
      ...names.flatMap((b) => {
        const x = r.servers[b];
        if (x === undefined) return ["-", "-", "-"];
        const cpu = x.medianCpuUsPerReq;
        return [
          fmtInt(x.medianRps),
          fmtCpu(cpu),
          fmtRatio(v ? v.medianRps / x.medianRps : null),
        ];
      }),
    ];
  });
  printRows(header, rows);
}

/** Vento with the site rules against Vento without, per scenario. */
function printRulesTable(reports: ScenarioReport[]): void {
  const header = [
    "scenario",
    "vento req/s",
    "vento-rules req/s",
    "rules/vento",
    "vento CPU µs/req",
    "rules CPU µs/req",
    "errors v/r",
  ];
  const rows = reports.filter((r) => r.ratioRules !== null).map((r) => {
    const v = r.servers.vento!;
    const w = r.servers["vento-rules"]!;
    return [
      r.label,
      fmtInt(v.medianRps),
      fmtInt(w.medianRps),
      fmtRatio(r.ratioRules),
      fmtCpu(v.medianCpuUsPerReq),
      fmtCpu(w.medianCpuUsPerReq),
      `${v.errors}/${w.errors}`,
    ];
  });
  printRows(header, rows);
}

/**
 * A typical site's rule files: `_headers` with 20 rules (security headers for every page, long caching for
 * assets, CORS for an API, one rule naming the benchmarked file) and `_redirects` with 50 (old URLs,
 * placeholders, a splat, an SPA fallback), none of which redirects the benchmarked file.
 */
export function benchRules(): { headers: string; redirects: string } {
  const h: string[] = [
    "/*",
    "  Strict-Transport-Security: max-age=63072000; includeSubDomains; preload",
    "  X-Frame-Options: DENY",
    "  Referrer-Policy: strict-origin-when-cross-origin",
    "  Permissions-Policy: camera=(), microphone=(), geolocation=()",
    "  Content-Security-Policy: default-src 'self'; img-src 'self' data:; object-src 'none'",
    `${FILE_PATH}`,
    "  Cache-Control: public, max-age=86400",
    "/assets/*",
    "  Cache-Control: public, max-age=31536000, immutable",
    "/api/*",
    "  Access-Control-Allow-Origin: *",
    "  Access-Control-Allow-Methods: GET, OPTIONS",
  ];
  for (let i = 0; i < 16; i++) h.push(`/section-${i}/*`, `  X-Section: ${i}`);
  const r: string[] = [
    "/blog/:year/:slug   /posts/:year/:slug   301",
    "/docs/*             /documentation/:splat 302",
    "/app/*              /app/index.html      200",
  ];
  for (let i = 0; i < 47; i++) r.push(`/old-page-${i}   /new-page-${i}   301`);
  return { headers: h.join("\n") + "\n", redirects: r.join("\n") + "\n" };
}

/** One fairness scenario: h2load against each server in turn, `opts.rounds` interleaved rounds. */
async function runFairScenario(
  ctx: RunContext,
  sc: Scenario,
  started: ServerProcess[],
  opts: Options,
  workers: number,
): Promise<FairReport> {
  const servers = started.filter((s) => FAIR_SERVERS.includes(s.name));
  const runs = new Map<ServerName, FairRun[]>(servers.map((s) => [s.name, []]));
  for (let round = 1; round <= opts.rounds; round++) {
    for (const s of servers) {
      const r = await runH2load(ctx, s, sc, opts.durationSec);
      runs.get(s.name)!.push(r);
      const err = r.errors > 0 ? `, ${r.errors} ERRORS` : "";
      progress(
        `  ${sc.key} round ${round} ${s.name.padEnd(NAME_WIDTH)}: ${fmtInt(r.rps)} req/s, clients ${
          r.clientMinRps.toFixed(1)
        } / ${r.clientMeanRps.toFixed(1)} req/s (min / mean), slowest ${fmtMs(r.maxRequestMs)}${err}`,
      );
      if (s.hasExited) throw new Error(`${s.name} exited during the run:\n${s.output}`);
    }
  }
  const out: FairReport["servers"] = {};
  for (const [name, rs] of runs) out[name] = summarizeFair(rs);
  return {
    scenario: sc.key,
    label: workers > 1 || opts.workers.length > 1
      ? `${sc.label}, ${workers} worker${workers > 1 ? "s" : ""}`
      : sc.label,
    workers,
    conns: sc.conns,
    servers: out,
  };
}

// --- main ----------------------------------------------------------------------------------------

async function main(args: string[]): Promise<number> {
  const opts = parseOptions(args);
  if ("help" in opts) {
    console.log(HELP);
    return 0;
  }
  if ("error" in opts) {
    console.error(`bench: ${opts.error}\nTry --help.`);
    return 2;
  }

  const missing: string[] = [];
  if (!(await hasCommand("wrk", ["-v"]))) missing.push("wrk");
  const nginxAsked = opts.servers.includes("nginx") || opts.servers.includes("nginx-plain");
  if (nginxAsked && !(await hasCommand("nginx", ["-v"]))) missing.push("nginx");
  const fair = opts.scenarios.some((sc) => sc.measure === "fairness");
  if (fair && !(await hasCommand("h2load", ["--version"]))) missing.push("h2load");
  if (fair && !(await hasCommand("prlimit", ["--version"]))) missing.push("prlimit");
  if (missing.length > 0) {
    console.error(
      `bench: ${missing.join(" and ")} not found. Install with:\n` +
        `  sudo apt-get install ${
          missing.map((m) =>
            m === "nginx"
              ? "nginx-light"
              : m === "h2load"
              ? "nghttp2-client"
              : m === "prlimit"
              ? "util-linux"
              : m
          ).join(" ")
        }\n` +
        `(or run with --servers vento,denoserve to skip nginx)`,
    );
    return 1;
  }
  if (opts.servers.includes("vento") && !(await Deno.stat(`${REPO_ROOT}/main.ts`).catch(() => null))) {
    console.error(
      `bench: ${REPO_ROOT}/main.ts not found; run with --servers nginx,denoserve to bench without Vento`,
    );
    return 1;
  }
  const pin = opts.pin && navigator.hardwareConcurrency >= 2 && (await hasCommand("taskset", ["-V"]));
  const ticksPerSec = Number(await commandOutput("getconf", ["CLK_TCK"]) ?? "") || 100;

  const janitor = new Janitor();
  janitor.keepTemp = opts.keep;
  const ctx: RunContext = { janitor, pin, ticksPerSec };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    progress("\nbench: interrupted; stopping servers");
    janitor.cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const dir = await Deno.makeTempDir({ prefix: "vento_bench_" });
    janitor.tempDir = dir;
    // nginx's worker may run as an unprivileged user when started as root: it must read the docroot.
    await Deno.chmod(dir, 0o755);
    const docroot = `${dir}/www`;
    await Deno.mkdir(docroot, { mode: 0o755 });
    await Deno.mkdir(`${dir}/nginx-tmp`);
    const fileBytes = crypto.getRandomValues(new Uint8Array(FILE_BYTES));
    await Deno.writeFile(`${docroot}${FILE_PATH}`, fileBytes, { mode: 0o644 });
    await Deno.writeTextFile(`${docroot}/index.html`, "<!doctype html><title>bench</title><p>bench</p>\n", {
      mode: 0o644,
    });

    const page = makePage(PAGE_BYTES);
    const compressing = opts.scenarios.some((sc) => sc.path === PAGE_PATH || sc.path === PAGE_STATIC_PATH);
    if (compressing) {
      await Deno.writeTextFile(`${docroot}${PAGE_PATH}`, page, { mode: 0o644 });
      await Deno.writeTextFile(`${docroot}${PAGE_STATIC_PATH}`, page, { mode: 0o644 });
      const bytes = new TextEncoder().encode(page);
      await Deno.writeFile(`${docroot}${PAGE_STATIC_PATH}.gz`, zlib.gzipSync(bytes, { level: 9 }), {
        mode: 0o644,
      });
      const br = zlib.brotliCompressSync(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } });
      await Deno.writeFile(`${docroot}${PAGE_STATIC_PATH}.br`, br, { mode: 0o644 });
    }
    /** Per server and compress scenario path: the coding and body bytes it answers with. */
    const wire = new Map<string, { coding: string; wireBytes: number }>();

    const big = opts.scenarios.some((sc) => sc.path === BIG_FILE_PATH);
    const bigBlock = new Uint8Array(BIG_BLOCK_BYTES);
    // getRandomValues fills at most 64 KiB per call.
    for (let off = 0; off < BIG_BLOCK_BYTES; off += 65536) {
      crypto.getRandomValues(bigBlock.subarray(off, off + 65536));
    }
    if (big) {
      progress(`writing ${BIG_FILE_BYTES / MIB} MiB ${BIG_FILE_PATH}`);
      await writeBigFile(`${docroot}${BIG_FILE_PATH}`, bigBlock);
    }

    // The same files (hard links) beside a typical _headers and _redirects, for `vento-rules`.
    const rulesDocroot = `${dir}/www-rules`;
    if (opts.servers.includes("vento-rules")) {
      await Deno.mkdir(rulesDocroot, { mode: 0o755 });
      for (const f of [FILE_PATH, "/index.html", ...(big ? [BIG_FILE_PATH] : [])]) {
        await Deno.link(`${docroot}${f}`, `${rulesDocroot}${f}`);
      }
      const rules = benchRules();
      await Deno.writeTextFile(`${rulesDocroot}/_headers`, rules.headers);
      await Deno.writeTextFile(`${rulesDocroot}/_redirects`, rules.redirects);
    }

    const withApp = opts.scenarios.some((sc) => sc.app);
    const reports: ScenarioReport[] = [];
    const fairReports: FairReport[] = [];
    for (const workers of opts.workers) {
      // Several workers need every core: pinning the servers to CPU 1 would measure one core twice.
      const pinNow = pin && workers === 1;
      const wctx: RunContext = { ...ctx, pin: pinNow };
      const pinServer = (cmd: string, a: string[]): [string, string[]] => {
        // 5,000 connections need more descriptors than the usual soft limit of 1,024.
        const [c, rest] = fair ? ["prlimit", [`--nofile=${FAIR_NOFILE}`, cmd, ...a]] : [cmd, a];
        return pinNow ? ["taskset", ["-c", "1", c, ...rest]] : [c, rest];
      };
      /** Starts one server on a fresh port and waits until it accepts connections. */
      const startServer = async (name: ServerName): Promise<ServerProcess> => {
        const port = freePort(BENCH_HOST);
        let server: ServerProcess;
        if (name === "nginx" || name === "nginx-plain") {
          const conf = `${dir}/${name}.conf`;
          await Deno.writeTextFile(
            conf,
            nginxConfig(
              dir,
              docroot,
              port,
              workers,
              fair ? FAIR_NGINX_WORKER_CONNECTIONS : undefined,
              name === "nginx",
            ),
          );
          const [cmd, a] = pinServer("nginx", [
            "-p",
            dir,
            "-c",
            conf,
            "-e",
            `${dir}/nginx-error.log`,
            "-g",
            "daemon off;",
          ]);
          server = new ServerProcess(name, port, cmd, a, dir);
        } else if (name === "denoserve") {
          const [cmd, a] = pinServer(Deno.execPath(), denoServeArgs(docroot, port));
          server = new ServerProcess(name, port, cmd, a, REPO_ROOT);
        } else if (name !== "vento" && name !== "vento-rules") {
          const script = name === "bare"
            ? BARE_DENO_SCRIPT
            : name === "denoconst"
            ? DENO_CONST_SCRIPT
            : name === "handle"
            ? BARE_HANDLE_SCRIPT
            : BARE_NODE_SCRIPT;
          const [cmd, a] = pinServer(Deno.execPath(), ["run", "--allow-net", script, "--port", String(port)]);
          server = new ServerProcess(name, port, cmd, a, REPO_ROOT);
        } else {
          const conf = `${dir}/${name}.conf`;
          const root = name === "vento-rules" ? rulesDocroot : docroot;
          // The app scenarios add the app; file scenarios run Vento exactly as before.
          const appLines = withApp ? [`APP=${APP_SCRIPT}`, "APP_PATHS=/api/"] : [];
          const text = ventoConfig(root, port, [...appLines, ...opts.ventoSettings], workers);
          const check = parseConfig(text);
          if (!check.ok) throw new Error(`generated vento.conf is invalid: ${JSON.stringify(check.errors)}`);
          await Deno.writeTextFile(conf, text);
          const runArgs = await ventoRunArgs(opts.v8Flags);
          const [cmd, a] = pinServer(Deno.execPath(), [...runArgs, "--config", conf]);
          server = new ServerProcess(name, port, cmd, a, REPO_ROOT);
        }
        janitor.servers.push(server);
        await server.waitReady();
        return server;
      };
      /** Stops `old` and starts a fresh process of the same server in its place (new peak RSS). */
      const restartServer = async (old: ServerProcess): Promise<ServerProcess> => {
        await old.stop();
        janitor.servers = janitor.servers.filter((s) => s !== old);
        return await startServer(old.name);
      };

      const started: ServerProcess[] = [];
      const wanted = opts.servers.filter((name) =>
        opts.scenarios.some((sc) =>
          (sc.measure === "fairness" ? FAIR_SERVERS : WRK_SERVERS).includes(name) ||
          (baselinesRun(sc) && FIXED_BODY_SERVERS.includes(name))
        )
      );
      for (const name of wanted) {
        const server = await startServer(name);
        const problem = FIXED_BODY_SERVERS.includes(name)
          ? await checkServesFixed(server.port)
          : await checkServes(server.port, fileBytes);
        if (problem !== null) {
          throw new Error(`${name} does not serve ${FILE_PATH} correctly: ${problem}\n${server.output}`);
        }
        for (const path of compressing ? [PAGE_PATH, PAGE_STATIC_PATH] : []) {
          const got = await checkServesCompressed(server.port, path, page);
          if (typeof got === "string") throw new Error(`${name} does not serve ${path} correctly: ${got}`);
          wire.set(`${name} ${path}`, got);
          progress(`${name} answers ${path} with ${got.coding}, ${fmtInt(got.wireBytes)} body bytes`);
        }
        const bigProblem = big ? await checkServesBig(server.port, bigBlock) : null;
        if (bigProblem !== null) {
          throw new Error(
            `${name} does not serve ${BIG_FILE_PATH} correctly: ${bigProblem}\n${server.output}`,
          );
        }
        const shape = name === "nginx" || name === "nginx-plain" || name === "vento"
          ? `${workers} worker${workers > 1 ? "s" : ""}`
          : "1 process";
        progress(`${name} (${shape}) ready on ${BENCH_HOST}:${server.port} (pid ${server.pid})`);
        started.push(server);
      }

      // The app scenarios' baseline: the same module under `deno serve` (reported as denoserve).
      let appServe: ServerProcess | null = null;
      const vento = started.find((s) => s.name === "vento");
      if (withApp && vento !== undefined) {
        const problem = await checkServesApp(vento.port);
        if (problem !== null) {
          throw new Error(`vento does not serve ${APP_PATH} correctly: ${problem}\n${vento.output}`);
        }
      }
      if (withApp && opts.servers.includes("denoserve")) {
        const port = freePort(BENCH_HOST);
        const [cmd, a] = pinServer(Deno.execPath(), appServeArgs(port));
        appServe = new ServerProcess("denoserve", port, cmd, a, REPO_ROOT);
        janitor.servers.push(appServe);
        await appServe.waitReady();
        const problem = await checkServesApp(port);
        if (problem !== null) {
          throw new Error(`deno serve does not serve ${APP_PATH} correctly: ${problem}\n${appServe.output}`);
        }
        progress(`deno serve ${APP_SCRIPT} ready on ${BENCH_HOST}:${port} (pid ${appServe.pid})`);
      }
      /** The servers a scenario measures: the app scenarios pit Vento's app against `deno serve`'s. */
      const targetsOf = (sc: Scenario): ServerProcess[] =>
        sc.app
          ? [...started.filter((s) => s.name === "vento"), ...(appServe === null ? [] : [appServe])]
          : started;

      const perRun = opts.durationSec + 0.5;
      const estimateSec = Math.ceil(
        opts.warmupSec * started.length + opts.scenarios.length * opts.rounds * started.length * perRun,
      );
      progress(
        `running ${
          opts.scenarios.map((s) => s.key).join(", ")
        }: ${opts.rounds} rounds x ${opts.durationSec} s, ` +
          `pinned: ${pinNow ? "wrk CPU 0, servers CPU 1" : "no"}; about ${estimateSec} s`,
      );

      if (opts.warmupSec > 0) {
        for (const s of started) {
          progress(`warming up ${s.name} for ${opts.warmupSec} s`);
          await runWrk(wctx, s, SCENARIOS[0], opts.warmupSec);
        }
        const appScenario = opts.scenarios.find((sc) => sc.app);
        if (appScenario !== undefined) {
          for (const s of targetsOf(appScenario)) {
            progress(`warming up ${s.name} (app) for ${opts.warmupSec} s`);
            await runWrk(wctx, s, appScenario, opts.warmupSec);
          }
        }
      }

      for (const sc of opts.scenarios) {
        if (sc.measure === "fairness") {
          fairReports.push(await runFairScenario(wctx, sc, started, opts, workers));
          continue;
        }
        const targets = targetsOf(sc).filter((s) =>
          WRK_SERVERS.includes(s.name) || s === appServe ||
          (baselinesRun(sc) && FIXED_BODY_SERVERS.includes(s.name))
        );
        const runs = new Map<ServerName, RunResult[]>(targets.map((s) => [s.name, []]));
        for (let round = 1; round <= opts.rounds; round++) {
          for (let i = 0; i < targets.length; i++) {
            if (sc.freshPerRound) {
              const at = started.indexOf(targets[i]);
              targets[i] = await restartServer(targets[i]);
              if (at >= 0) started[at] = targets[i];
            }
            const s = targets[i];
            const r = await runWrk(wctx, s, sc, opts.durationSec);
            runs.get(s.name)!.push(r);
            const err = r.errors > 0 ? `, ${r.errors} ERRORS` : "";
            if (sc.measure === "transfer") {
              const cpu = r.cpuMsPerGiB === null ? "" : `, ${fmtInt(r.cpuMsPerGiB)} ms CPU/GiB`;
              const rss = r.peakRssKiB === null ? "" : `, peak RSS ${(r.peakRssKiB / 1024).toFixed(1)} MiB`;
              progress(
                `  ${sc.key} round ${round} ${s.name.padEnd(NAME_WIDTH)}: ${
                  fmtInt(r.bytesPerSec / MIB)
                } MiB/s${cpu}${rss}${err}`,
              );
            } else {
              const cpu = r.cpuUsPerReq === null ? "" : `, ${r.cpuUsPerReq.toFixed(1)} µs CPU/req`;
              progress(
                `  ${sc.key} round ${round} ${s.name.padEnd(NAME_WIDTH)}: ${fmtInt(r.rps)} req/s, p99 ${
                  fmtMs(r.p99Ms)
                }${cpu}${err}`,
              );
            }
            if (s.hasExited) throw new Error(`${s.name} exited during the run:\n${s.output}`);
          }
        }
        const servers: ScenarioReport["servers"] = {};
        for (const [name, rs] of runs) servers[name] = summarize(rs);
        const pick = (
          x: ReturnType<typeof summarize>,
        ) => (sc.measure === "transfer" ? x.medianMiBps : x.medianRps);
        const ratio = servers.nginx && servers.vento ? pick(servers.vento) / pick(servers.nginx) : null;
        const ratioDenoServe = servers.denoserve && servers.vento
          ? pick(servers.vento) / pick(servers.denoserve)
          : null;
        const ratioRules = servers["vento-rules"] && servers.vento
          ? pick(servers["vento-rules"]) / pick(servers.vento)
          : null;
        reports.push({
          ratioRules,
          scenario: sc.key,
          label: opts.workers.length > 1 || workers > 1
            ? `${sc.label}, ${workers} worker${workers > 1 ? "s" : ""}`
            : sc.label,
          workers,
          conns: sc.conns,
          measure: sc.measure,
          servers,
          ratio,
          ratioDenoServe,
        });
      }

      // This worker count is done: its servers make way for the next count's.
      for (const s of started) await s.stop();
      await appServe?.stop();
      janitor.servers = janitor.servers.filter((s) => !started.includes(s) && s !== appServe);
    }

    if (opts.json) {
      const env = {
        nginx: (await commandOutput("nginx", ["-v"])) ?? "",
        wrk: ((await commandOutput("wrk", ["-v"])) ?? "").split("\n")[0],
        deno: Deno.version.deno,
        cpus: navigator.hardwareConcurrency,
        pinned: pin,
        workers: opts.workers,
        durationSec: opts.durationSec,
        rounds: opts.rounds,
        fileBytes: FILE_BYTES,
        bigFileBytes: BIG_FILE_BYTES,
        ventoArgs: await ventoRunArgs(opts.v8Flags),
        // Without the per-run `--port N --root DIR`.
        denoServeArgs: denoServeArgs("", 0).slice(0, -4),
        ventoSettings: opts.ventoSettings,
      };
      console.log(JSON.stringify({ env, results: reports, fairness: fairReports }, null, 2));
    } else {
      console.log("");
      printTables(reports);
      if (fairReports.length > 0) {
        if (reports.length > 0) console.log("");
        printFairTable(fairReports);
        console.log(
          `\nfairness: h2load --h1 -cN -t1 -D ${opts.durationSec} --warm-up-time=${FAIR_WARMUP_SEC}, ` +
            `${opts.rounds} interleaved rounds; req/s is the median; "slowest client / mean" (each ` +
            `client's own req/s) and "slowest request" are the worst round's, with the median beside them.`,
        );
      }
      console.log(
        `\nmedians of ${opts.rounds} interleaved rounds of ${opts.durationSec} s; ${FILE_BYTES} B file; ` +
          `CPU = server process tree utime+stime per request.`,
      );
      const compressRows = reports.filter((r) => r.scenario.startsWith("compress"));
      if (compressRows.length > 0) {
        const path = (key: string) => (key === "compress" ? PAGE_PATH : PAGE_STATIC_PATH);
        const what = [...new Set(compressRows.map((r) => r.scenario))].map((key) =>
          `${key} (${path(key)}): ` + opts.servers.map((n) => {
            const w = wire.get(`${n} ${path(key)}`);
            return w === undefined ? `${n} -` : `${n} ${w.coding} ${fmtInt(w.wireBytes)} B`;
          }).join(", ")
        );
        console.log(
          `Compression: a ${fmtInt(page.length)} B page with Accept-Encoding: ${ACCEPT_ENCODING}; ` +
            `answers on the wire: ${what.join("; ")}.`,
        );
      }
      if (reports.some((r) => r.measure === "transfer")) {
        console.log(
          `Transfer: ${BIG_FILE_BYTES / MIB} MiB file, wrk Transfer/sec in MiB/s (bytes read, also of ` +
            `unfinished downloads); CPU per GiB read; peak RSS = highest VmHWM of the rounds, each round on ` +
            `fresh server processes (nginx: master + worker summed).`,
        );
      }
      if (reports.some((r) => r.scenario.startsWith("app"))) {
        console.log(
          `App rows: ${APP_PATH} of bench/hello_app.ts; denoserve = the same module under \`deno serve\`.`,
        );
      }
      const withErrors = [...reports, ...fairReports].flatMap((r) =>
        SERVER_NAMES.filter((n) => (r.servers[n]?.errors ?? 0) > 0).map((n) => `${n} in ${r.label}`)
      );
      if (withErrors.length > 0) {
        console.log(
          `WARNING: some runs had errors (non-2xx answers or socket errors); their req/s is suspect: ` +
            `${withErrors.join("; ")}.`,
        );
      }
    }
    return 0;
  } catch (e) {
    if (!interrupted) console.error(`bench: ${errorMessage(e)}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await janitor.cleanup();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
