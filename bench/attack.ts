/**
 * Attack benchmark (issue 4): does one abusive client hurt anyone else?
 *
 * For each scenario it starts a fresh Vento (`deno run -A main.ts --config <generated>`, loopback, free
 * port, small temp document root, default guard limits except where noted), starts a well-behaved
 * bystander on 127.0.0.9 doing one keep-alive GET every 20 ms and timing it, then runs one attack:
 * - `slowhttptest` in slowloris (-H), slow-body (-B, POST /api/echo) and slow-read (-X) modes, each in
 *   two profiles: `per-ip` (default limits: the attack comes from one address, 127.0.0.1, as
 *   slowhttptest cannot bind another) and `spread` (127.0.0.1 allowlisted, so no rate, ban or
 *   per-client cap applies to it, as if the connections came from many addresses: only the deadlines
 *   and the global cap defend);
 * - a keep-alive request flood from 127.0.0.5: a child process (this file with `--flood-child`) whose
 *   connections pipeline GETs as fast as they are answered and reconnect when refused.
 * It prints a table (scenario, bystander ok/total, p50, p99, verdict) and writes it to bench/ATTACK.md.
 *
 * Settings changed from the defaults, for every scenario: REQUEST_RATE_PER_SEC=100 (the bystander's own
 * 50 req/s must be within the per-client rate; the default is 20/s). ACCESS_LOG and ADMIN_SOCKET off.
 *
 * Must never: aim at anything but loopback, run unbounded (every attack ≤ MAX_ATTACK_SEC, every child
 * killed on a deadline), or leave a process or temp folder behind (stopped on exit, error and ctrl-c).
 * Usage: `deno task bench:attack [--help]`.
 */

import { parseArgs } from "node:util";
import { parseConfig } from "../src/config/config.ts";
import { NodeClient } from "../tests/_helpers/node_client.ts";
import { commandOutput, freePort } from "./_common.ts";
import { SOAK_MARKER } from "./soak.ts";
import { errorMessage } from "../src/core/errors.ts";

// --- settings and bounds -------------------------------------------------------------------------

/** Longest single attack (slowhttptest `-l` or the flood). */
const MAX_ATTACK_SEC = 30;
/** Most slowhttptest connections (`-c`) and connection rate (`-r`) accepted. */
const MAX_SLOW_CONNS = 4000;
const MAX_SLOW_RATE = 1000;
/** Most flood connections. */
const MAX_FLOOD_CONNS = 256;
/** The bystander's request period (the brief: one GET every 20 ms). */
const BYSTANDER_PERIOD_MS = 20;
/** A bystander request slower than this counts as failed (and its connection is replaced). */
const BYSTANDER_TIMEOUT_MS = 2_000;
/** How long the bystander runs before the attack starts (its figures are not counted). */
const WARMUP_MS = 1_000;
/** Baseline: the bystander alone, for comparison. */
const BASELINE_MS = 5_000;
/** Target from the issue: the bystander's p99 during the flood. */
const FLOOD_P99_TARGET_MS = 50;
/** Requests pipelined per write by each flood connection. */
const FLOOD_PIPELINE_DEPTH = 16;
/** Pause of a flood connection after it was refused, so the loop stays bounded in sockets. */
const FLOOD_BACKOFF_MS = 5;
/** Slack after an attack's own length before its process is killed. */
const KILL_SLACK_MS = 15_000;
/** Server start-up: spawn to accepting. */
const READY_TIMEOUT_MS = 15_000;
const READY_POLL_MS = 50;
/** After SIGTERM, how long a child may take to exit before SIGKILL. */
const STOP_TIMEOUT_MS = 3_000;
/** Tail of a child's output kept for diagnostics. */
const OUTPUT_TAIL_BYTES = 8 * 1024;
/** The big file of the slow-read attack: above the file cache, so it is streamed. */
const BIG_FILE_BYTES = 1024 * 1024;

/** Loopback only: where Vento listens, and the clients' source addresses. */
const HOST = "127.0.0.1";
const BYSTANDER_IP = "127.0.0.9";
const FLOODER_IP = "127.0.0.5";
/** The per-client request rate every scenario uses (see the module comment) and the default burst. */
const REQUEST_RATE_PER_SEC = 100;
const REQUEST_BURST = 100;

const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const REPORT_PATH = `${REPO_ROOT}/bench/ATTACK.md`;
const SELF = decodeURIComponent(new URL(import.meta.url).pathname);

type Profile = "per-ip" | "spread";
type SlowMode = "slowloris" | "slow-body" | "slow-read";

const PROFILE_CONFIG: Record<Profile, string> = {
  // Loopback is allowlisted by default (a same-host proxy); every client here is on loopback, so none is.
  "per-ip": "ALLOWLIST=\n",
  // The attacker's address is exempt from every per-client rule (rates, bans, caps), as each address of
  // a botnet would stay under them: only the deadlines and the global cap defend.
  spread: "ALLOWLIST=127.0.0.1/32\n",
};

const SLOW_MODES: readonly SlowMode[] = ["slowloris", "slow-body", "slow-read"];

interface Options {
  attackSec: number;
  floodSec: number;
  slowConns: number;
  slowRate: number;
  floodConns: number;
  profiles: Profile[];
  only: Set<string> | null;
  write: boolean;
}

const HELP = `deno task bench:attack [options]

Runs slowhttptest (slowloris, slow body, slow read) and a keep-alive request flood against a fresh Vento
on 127.0.0.1 while a bystander on ${BYSTANDER_IP} times one GET every ${BYSTANDER_PERIOD_MS} ms.

  --attack-sec N    length of each slowhttptest run, 1..${MAX_ATTACK_SEC} (default 20)
  --flood-sec N     length of the flood, 1..${MAX_ATTACK_SEC} (default 10)
  --slow-conns N    slowhttptest -c, 1..${MAX_SLOW_CONNS} (default 1000)
  --slow-rate N     slowhttptest -r (connections per second), 1..${MAX_SLOW_RATE} (default 200)
  --flood-conns N   flood connections from ${FLOODER_IP}, 1..${MAX_FLOOD_CONNS} (default 32)
  --profiles LIST   slowhttptest profiles: per-ip,spread (default both)
  --only LIST       run only these scenarios: baseline,slowloris,slow-body,slow-read,flood
  --no-write        do not write bench/ATTACK.md
  -h, --help        this text`;

function parseOptions(args: string[]): Options | { help: true } | { error: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      options: {
        "attack-sec": { type: "string", default: "20" },
        "flood-sec": { type: "string", default: "10" },
        "slow-conns": { type: "string", default: "1000" },
        "slow-rate": { type: "string", default: "200" },
        "flood-conns": { type: "string", default: "32" },
        profiles: { type: "string", default: "per-ip,spread" },
        only: { type: "string" },
        "no-write": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    return { error: errorMessage(e) };
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  const int = (name: string, raw: string, min: number, max: number): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      throw new Error(`--${name} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
  try {
    const profiles: Profile[] = [];
    for (const p of v.profiles.split(",").map((s) => s.trim())) {
      if (p !== "per-ip" && p !== "spread") throw new Error(`unknown profile "${p}" (per-ip, spread)`);
      if (!profiles.includes(p)) profiles.push(p);
    }
    let only: Set<string> | null = null;
    if (v.only !== undefined) {
      only = new Set(v.only.split(",").map((s) => s.trim()));
      for (const s of only) {
        if (!["baseline", "flood", ...SLOW_MODES].includes(s)) throw new Error(`unknown scenario "${s}"`);
      }
    }
    return {
      attackSec: int("attack-sec", v["attack-sec"], 1, MAX_ATTACK_SEC),
      floodSec: int("flood-sec", v["flood-sec"], 1, MAX_ATTACK_SEC),
      slowConns: int("slow-conns", v["slow-conns"], 1, MAX_SLOW_CONNS),
      slowRate: int("slow-rate", v["slow-rate"], 1, MAX_SLOW_RATE),
      floodConns: int("flood-conns", v["flood-conns"], 1, MAX_FLOOD_CONNS),
      profiles,
      only,
      write: !v["no-write"],
    };
  } catch (e) {
    return { error: errorMessage(e) };
  }
}

// --- small helpers -------------------------------------------------------------------------------

const progress = (msg: string): void => console.error(msg);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

/** The q-quantile (0..1) of `xs` by nearest rank; NaN when empty. */
function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

const fmtMs = (n: number): string => Number.isFinite(n) ? `${n.toFixed(1)} ms` : "–";

/** Keeps the last OUTPUT_TAIL_BYTES of a stream (draining it so the child never blocks on a full pipe). */
function tail(stream: ReadableStream<Uint8Array>): { text(): string; done: Promise<void> } {
  let buf = "";
  const done = (async () => {
    for await (const chunk of stream) {
      buf = (buf + decoder.decode(chunk, { stream: true })).slice(-OUTPUT_TAIL_BYTES);
    }
  })().catch(() => {});
  return { text: () => buf, done };
}

/** Every child process still running, so ctrl-c and errors can stop them. */
const children = new Set<Deno.ChildProcess>();

async function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already exited
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    child.status.then(() => true),
    new Promise<false>((r) => timer = setTimeout(() => r(false), STOP_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (!exited) {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await child.status;
  }
  children.delete(child);
}

// --- the server ------------------------------------------------------------------------------------

interface VentoProcess {
  child: Deno.ChildProcess;
  port: number;
  output: { text(): string };
}

function ventoConfig(docroot: string, port: number, profile: Profile): string {
  return `# Generated by bench/attack.ts: default guard limits except the lines below.
PORT=${port}
HOST=${HOST}
DOCUMENT_ROOT=${docroot}
ACCESS_LOG=off
ADMIN_SOCKET=off
# The bystander's 50 req/s must fit the per-client rate.
REQUEST_RATE_PER_SEC=${REQUEST_RATE_PER_SEC}
REQUEST_BURST=${REQUEST_BURST}
${PROFILE_CONFIG[profile]}`;
}

async function startVento(dir: string, profile: Profile): Promise<VentoProcess> {
  const port = freePort(HOST);
  const text = ventoConfig(`${dir}/www`, port, profile);
  const checked = parseConfig(text);
  if (!checked.ok) throw new Error(`bad generated config: ${JSON.stringify(checked.errors)}`);
  const conf = `${dir}/vento-${profile}.conf`;
  await Deno.writeTextFile(conf, text);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/main.ts`, "--config", conf],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const out = tail(child.stdout);
  const err = tail(child.stderr);
  const output = { text: () => out.text() + err.text() };
  const start = performance.now();
  for (;;) {
    try {
      const c = await Deno.connect({ hostname: HOST, port });
      c.close();
      return { child, port, output };
    } catch {
      if (performance.now() - start > READY_TIMEOUT_MS) {
        await stopChild(child);
        throw new Error(`Vento did not start within ${READY_TIMEOUT_MS} ms:\n${output.text()}`);
      }
      await sleep(READY_POLL_MS);
    }
  }
}

/** Peak resident memory of a process so far (VmHWM), in MiB; NaN when unknown. */
function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m === null ? Number.NaN : Number(m[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

// --- the bystander ---------------------------------------------------------------------------------

interface BystanderResult {
  total: number;
  ok: number;
  latenciesMs: number[];
  failures: string[];
}

/** One keep-alive GET every BYSTANDER_PERIOD_MS from BYSTANDER_IP until `stop()`; only measured ones count. */
class Bystander {
  #port: number;
  #client: NodeClient | null = null;
  #running = true;
  #measuring = false;
  #loop: Promise<void>;
  result: BystanderResult = { total: 0, ok: 0, latenciesMs: [], failures: [] };

  constructor(port: number) {
    this.#port = port;
    this.#loop = this.#run();
  }

  /** Starts counting (after the warm-up). */
  measure(): void {
    this.#measuring = true;
  }

  async stop(): Promise<BystanderResult> {
    this.#running = false;
    await this.#loop;
    await this.#client?.close();
    return this.result;
  }

  async #run(): Promise<void> {
    let next = performance.now();
    while (this.#running) {
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      next = Math.max(next + BYSTANDER_PERIOD_MS, performance.now());
      if (!this.#running) break;
      const measuring = this.#measuring;
      const t0 = performance.now();
      const outcome = await this.#once();
      const ms = performance.now() - t0;
      if (!measuring) continue;
      this.result.total++;
      if (outcome === null) {
        this.result.ok++;
        this.result.latenciesMs.push(ms);
      } else if (this.result.failures.length < 10) this.result.failures.push(outcome);
    }
  }

  /** One request; null when it got a 200, else why not. */
  async #once(): Promise<string | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      this.#client ??= await NodeClient.connect(this.#port, { host: HOST, localAddress: BYSTANDER_IP });
      const c = this.#client;
      const answer = (async () => {
        await c.send(`GET / HTTP/1.1\r\nHost: bystander\r\n\r\n`);
        return await c.read();
      })();
      const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), BYSTANDER_TIMEOUT_MS));
      const r = await Promise.race([answer, timeout]);
      if (r === null) {
        await this.#drop();
        await answer.catch(() => {});
        return `timeout after ${BYSTANDER_TIMEOUT_MS} ms`;
      }
      if (r.status !== 200) {
        await this.#drop();
        return `status ${r.status}`;
      }
      if (r.headers.get("connection") === "close") await this.#drop();
      return null;
    } catch (e) {
      await this.#drop();
      return errorMessage(e);
    } finally {
      clearTimeout(timer);
    }
  }

  async #drop(): Promise<void> {
    const c = this.#client;
    this.#client = null;
    await c?.close();
  }
}

// --- slowhttptest ------------------------------------------------------------------------------------

interface SlowResult {
  /** slowhttptest's own verdict: the probe was answered in every second. */
  availableThroughout: boolean;
  /** Seconds in which slowhttptest reported the service unavailable. */
  unavailableSeconds: number[];
  maxConnected: number;
  finalClosed: number;
  exitStatus: string;
}

function slowArgs(mode: SlowMode, o: Options, port: number, prefix: string): string[] {
  const base = ["-c", String(o.slowConns), "-r", String(o.slowRate), "-l", String(o.attackSec)];
  const stats = ["-g", "-o", prefix, "-p", "3"];
  const url = (path: string) => ["-u", `http://${HOST}:${port}${path}`];
  switch (mode) {
    case "slowloris":
      return ["-H", ...base, "-i", "5", ...url("/"), ...stats];
    case "slow-body":
      return ["-B", ...base, "-i", "5", "-s", "8192", ...url("/api/echo"), ...stats];
    case "slow-read":
      return [
        "-X",
        ...base,
        "-k",
        "3",
        "-n",
        "1",
        "-w",
        "512",
        "-y",
        "1024",
        "-z",
        "32",
        ...url("/big.bin"),
        ...stats,
      ];
  }
}

/** Terminal colour sequences slowhttptest writes even into a pipe. */
const ANSI_ESCAPE = new RegExp(String.fromCharCode(0x1b) + "\\[[0-9;]*[A-Za-z]", "g");

/** Parses slowhttptest's CSV (`Seconds,Closed,Pending,Connected,Service Available`) and its exit line. */
export function parseSlowResult(csv: string, stdout: string): SlowResult {
  const unavailableSeconds: number[] = [];
  let maxConnected = 0;
  let finalClosed = 0;
  let rows = 0;
  const lines = csv.trim().split("\n");
  const header = (lines.shift() ?? "").split(",").map((s) => s.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const [iSec, iClosed, iConn, iAvail] = [
    col("seconds"),
    col("closed"),
    col("connected"),
    col("service available"),
  ];
  for (const line of lines) {
    const f = line.split(",").map(Number);
    if (f.length < header.length || f.some((x) => !Number.isFinite(x))) continue;
    rows++;
    if (iAvail >= 0 && f[iAvail] === 0) unavailableSeconds.push(f[iSec]);
    if (iConn >= 0) maxConnected = Math.max(maxConnected, f[iConn]);
    if (iClosed >= 0) finalClosed = f[iClosed];
  }
  // Without a CSV, fall back to the "service available: YES/NO" status lines.
  const plain = stdout.replace(ANSI_ESCAPE, "");
  const statusNo = [...plain.matchAll(/service available:\s*(YES|NO)/g)].filter((m) => m[1] === "NO").length;
  const exit = /Exit status:\s*(.+)/.exec(plain);
  return {
    availableThroughout: rows > 0 ? unavailableSeconds.length === 0 && statusNo === 0 : /YES/.test(plain) &&
      statusNo === 0,
    unavailableSeconds,
    maxConnected,
    finalClosed,
    exitStatus: exit === null ? "?" : exit[1].trim(),
  };
}

async function runSlowhttptest(mode: SlowMode, o: Options, port: number, dir: string): Promise<SlowResult> {
  const prefix = `${dir}/slow-${mode}-${port}`;
  const child = new Deno.Command("slowhttptest", {
    args: slowArgs(mode, o, port, prefix),
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const out = tail(child.stdout);
  const err = tail(child.stderr);
  const killer = setTimeout(() => stopChild(child), o.attackSec * 1000 + KILL_SLACK_MS);
  await child.status;
  clearTimeout(killer);
  children.delete(child);
  await Promise.all([out.done, err.done]);
  let csv = "";
  try {
    csv = await Deno.readTextFile(`${prefix}.csv`);
  } catch {
    // no CSV: parse the status lines instead
  }
  return parseSlowResult(csv, out.text() + err.text());
}

// --- the flood (child process) -----------------------------------------------------------------------

interface FloodResult {
  connects: number;
  /** Connections closed before a single byte came back (banned at accept). */
  refusedAtAccept: number;
  requestsSent: number;
  status: Record<string, number>;
  /** Milliseconds from the flood's start to its last 200 (the limiter's bound grows with it). */
  lastOkMs: number;
  errors: number;
}

/** Runs in the child: `connections` keep-alive connections from `FLOODER_IP` pipelining GETs for `seconds`. */
async function floodChild(port: number, seconds: number, connections: number): Promise<FloodResult> {
  const r: FloodResult = {
    connects: 0,
    refusedAtAccept: 0,
    requestsSent: 0,
    status: {},
    lastOkMs: 0,
    errors: 0,
  };
  const start = performance.now();
  const end = start + seconds * 1000;
  const live = new Set<NodeClient>();
  const batch = `GET / HTTP/1.1\r\nHost: flood\r\n\r\n`.repeat(FLOOD_PIPELINE_DEPTH);
  const worker = async () => {
    while (performance.now() < end) {
      let c: NodeClient;
      try {
        c = await NodeClient.connect(port, { host: HOST, localAddress: FLOODER_IP });
      } catch {
        r.errors++;
        await sleep(FLOOD_BACKOFF_MS);
        continue;
      }
      r.connects++;
      live.add(c);
      let answered = 0;
      try {
        conn: while (performance.now() < end) {
          await c.send(batch);
          r.requestsSent += FLOOD_PIPELINE_DEPTH;
          for (let i = 0; i < FLOOD_PIPELINE_DEPTH; i++) {
            const res = await c.read();
            answered++;
            r.status[res.status] = (r.status[res.status] ?? 0) + 1;
            if (res.status === 200) r.lastOkMs = performance.now() - start;
            if (res.status !== 200) break conn; // refused: the server closes this connection
          }
        }
      } catch {
        if (answered === 0 && c.bytesReceived === 0) r.refusedAtAccept++;
        else r.errors++;
      }
      live.delete(c);
      await c.close();
      if (performance.now() < end) await sleep(FLOOD_BACKOFF_MS);
    }
  };
  // Bounded: at the end every socket is destroyed, which ends any read still waiting.
  const stopper = setTimeout(() => {
    for (const c of live) c.close();
  }, seconds * 1000 + 1000);
  await Promise.all(Array.from({ length: connections }, worker));
  clearTimeout(stopper);
  return r;
}

async function runFlood(o: Options, port: number): Promise<FloodResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, "--flood-child", String(port), String(o.floodSec), String(o.floodConns)],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const out = tail(child.stdout);
  const err = tail(child.stderr);
  const killer = setTimeout(() => stopChild(child), o.floodSec * 1000 + KILL_SLACK_MS);
  const status = await child.status;
  clearTimeout(killer);
  children.delete(child);
  await Promise.all([out.done, err.done]);
  const line = out.text().trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as FloodResult;
  } catch {
    throw new Error(`flood child failed (exit ${status.code}):\n${err.text()}`);
  }
}

// --- scenarios -----------------------------------------------------------------------------------------

interface Row {
  scenario: string;
  attack: string;
  bystander: BystanderResult;
  peakRssMiB: number;
  verdict: "PASS" | "FAIL" | "SKIPPED";
  notes: string;
}

/** Starts a server and a bystander, warms up, runs `attack` while measuring, and tears everything down. */
async function scenario(
  dir: string,
  profile: Profile,
  attack: (port: number) => Promise<void>,
): Promise<{ bystander: BystanderResult; peakRssMiB: number }> {
  const vento = await startVento(dir, profile);
  let bystander: Bystander | null = null;
  try {
    bystander = new Bystander(vento.port);
    await sleep(WARMUP_MS);
    bystander.measure();
    await attack(vento.port);
    const result = await bystander.stop();
    bystander = null;
    return { bystander: result, peakRssMiB: peakRssMiB(vento.child.pid) };
  } finally {
    await bystander?.stop();
    await stopChild(vento.child);
  }
}

function bystanderOk(b: BystanderResult): boolean {
  return b.total > 0 && b.ok === b.total;
}

async function runAll(o: Options, dir: string, haveSlow: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const wants = (s: string) => o.only === null || o.only.has(s);

  if (wants("baseline")) {
    progress(`baseline: bystander alone for ${BASELINE_MS / 1000} s`);
    const r = await scenario(dir, "per-ip", () => sleep(BASELINE_MS));
    rows.push({
      scenario: "baseline (no attack)",
      attack: "–",
      ...r,
      verdict: bystanderOk(r.bystander) ? "PASS" : "FAIL",
      notes: "",
    });
  }

  for (const mode of SLOW_MODES) {
    if (!wants(mode)) continue;
    for (const profile of o.profiles) {
      const name = `slowhttptest ${mode}, ${profile}`;
      if (!haveSlow) {
        rows.push({
          scenario: name,
          attack: "not installed",
          bystander: { total: 0, ok: 0, latenciesMs: [], failures: [] },
          peakRssMiB: Number.NaN,
          verdict: "SKIPPED",
          notes: "",
        });
        continue;
      }
      progress(`${name}: -c ${o.slowConns} -r ${o.slowRate} -l ${o.attackSec}`);
      let slow: SlowResult | null = null;
      const r = await scenario(dir, profile, async (port) => {
        slow = await runSlowhttptest(mode, o, port, dir);
      });
      const s = slow! as SlowResult;
      rows.push({
        scenario: name,
        attack:
          `service available: ${
            s.availableThroughout ? "YES throughout" : `NO at s ${s.unavailableSeconds.join(",")}`
          }` +
          ` (max connected ${s.maxConnected}, closed ${s.finalClosed})`,
        ...r,
        verdict: s.availableThroughout && bystanderOk(r.bystander) ? "PASS" : "FAIL",
        notes: s.exitStatus,
      });
    }
  }

  if (wants("flood")) {
    progress(`flood: ${o.floodConns} keep-alive connections from ${FLOODER_IP} for ${o.floodSec} s`);
    let flood: FloodResult | null = null;
    const r = await scenario(dir, "per-ip", async (port) => {
      flood = await runFlood(o, port);
    });
    const f = flood! as FloodResult;
    const ok = f.status["200"] ?? 0;
    // GCRA's bound at any time t: the burst at once, then the rate (a ban only lowers it). Checked at the
    // last 200, plus one for a request in flight when its answer was timed.
    const bound = Math.floor(REQUEST_BURST + REQUEST_RATE_PER_SEC * f.lastOkMs / 1000) + 1;
    const p99 = quantile(r.bystander.latenciesMs, 0.99);
    const limited = ok <= bound;
    rows.push({
      scenario: `request flood from ${FLOODER_IP}, ${o.floodConns} conns × ${FLOOD_PIPELINE_DEPTH} pipelined`,
      attack: `sent ${f.requestsSent} requests: 200×${ok} (the last at ${Math.round(f.lastOkMs)} ms), ` +
        `429×${f.status["429"] ?? 0}, 503×${f.status["503"] ?? 0}, refused at accept ${f.refusedAtAccept}` +
        ` of ${f.connects} connects`,
      ...r,
      verdict: limited && bystanderOk(r.bystander) && p99 < FLOOD_P99_TARGET_MS ? "PASS" : "FAIL",
      notes: `target p99 < ${FLOOD_P99_TARGET_MS} ms; burst + rate × time allows ≤ ${bound} 200s`,
    });
  }
  return rows;
}

// --- report ------------------------------------------------------------------------------------------

function table(rows: Row[]): string {
  const head = [
    "scenario",
    "bystander ok/total",
    "p50",
    "p99",
    "max",
    "server peak RSS",
    "verdict",
    "attack",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const b = r.bystander;
    lines.push(
      `| ${
        [
          r.scenario,
          `${b.ok}/${b.total}`,
          fmtMs(quantile(b.latenciesMs, 0.5)),
          fmtMs(quantile(b.latenciesMs, 0.99)),
          fmtMs(b.latenciesMs.length > 0 ? Math.max(...b.latenciesMs) : Number.NaN),
          Number.isFinite(r.peakRssMiB) ? `${r.peakRssMiB.toFixed(0)} MiB` : "–",
          r.verdict,
          r.attack + (r.notes ? `; ${r.notes}` : ""),
        ].join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}

async function report(o: Options, args: string[], rows: Row[]): Promise<string> {
  const deno = Deno.version.deno;
  const slow = ((await commandOutput("slowhttptest", ["-h"])) ?? "").match(/version ([\d.]+)/)?.[1] ??
    "absent";
  const failures = rows.flatMap((r) => r.bystander.failures.map((f) => `- ${r.scenario}: ${f}`));
  return `# Attack benchmark

Command: \`deno task bench:attack${args.length > 0 ? " " + args.join(" ") : ""}\`
(${
    new Date().toISOString()
  }, Deno ${deno}, slowhttptest ${slow}, ${navigator.hardwareConcurrency} CPUs, loopback)

Each scenario runs against a fresh Vento (\`main.ts --config <generated>\`, HOST=${HOST}) with the default
guard limits except REQUEST_RATE_PER_SEC=${REQUEST_RATE_PER_SEC} (so the bystander's own 50 req/s fits);
the \`spread\` profile also allowlists the attacker's 127.0.0.1 (no rate, ban or per-client cap applies to
it), as if the attack's connections came from many addresses: only the deadlines and the global cap defend.
slowhttptest's verdict: its probe (one GET every 3 s, from the attacker's own address) got any answer
within 3 s. In \`per-ip\` that answer is usually the fast 503/429 refusal meant for the attacker, and an
address banned at accept gets no bytes at all (slowhttptest then says NO): the bystander column is what
shows whether *others* were served. A bystander on
${BYSTANDER_IP} does one keep-alive GET / every ${BYSTANDER_PERIOD_MS} ms; its figures cover the attack only.
slowhttptest: -c ${o.slowConns} -r ${o.slowRate} -l ${o.attackSec}, probe timeout 3 s, from 127.0.0.1
(its probe shares the attacker's address). Flood: ${o.floodConns} connections from ${FLOODER_IP}, ${FLOOD_PIPELINE_DEPTH}
GETs pipelined per write, for ${o.floodSec} s, reconnecting ${FLOOD_BACKOFF_MS} ms after each refusal.

${table(rows)}
${failures.length > 0 ? `\nBystander failures (first few):\n${failures.join("\n")}\n` : ""}`;
}

// --- main ----------------------------------------------------------------------------------------------

async function main(args: string[]): Promise<number> {
  if (args[0] === "--flood-child") {
    const [port, seconds, conns] = args.slice(1).map(Number);
    const r = await floodChild(port, Math.min(seconds, MAX_ATTACK_SEC), Math.min(conns, MAX_FLOOD_CONNS));
    console.log(JSON.stringify(r));
    return 0;
  }
  const o = parseOptions(args);
  if ("help" in o) {
    console.log(HELP);
    return 0;
  }
  if ("error" in o) {
    console.error(`bench:attack: ${o.error}\n\n${HELP}`);
    return 2;
  }
  const haveSlow = (await commandOutput("slowhttptest", ["-h"])) !== null;
  if (!haveSlow) {
    progress(
      "slowhttptest is not installed: its scenarios are SKIPPED (install: sudo apt-get install slowhttptest)",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "vento-attack-" });
  const cleanup = async () => {
    for (const c of [...children]) await stopChild(c);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const onSignal = () => {
    progress("interrupted: stopping children");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/www/index.html`, "<!doctype html><title>bench</title><p>hello</p>\n");
    await Deno.writeTextFile(`${dir}/www/404.html`, "<!doctype html><title>404</title>\n");
    await Deno.writeFile(`${dir}/www/big.bin`, new Uint8Array(BIG_FILE_BYTES).fill(0x61));
    const rows = await runAll(o, dir, haveSlow);
    const md = await report(o, args, rows);
    console.log(`\n${table(rows)}`);
    if (o.write) {
      // The soak's section (bench/soak.ts) follows this report in the same file: keep it.
      const current = await Deno.readTextFile(REPORT_PATH).catch(() => "");
      const soak = current.indexOf(SOAK_MARKER);
      await Deno.writeTextFile(REPORT_PATH, soak >= 0 ? `${md.trimEnd()}\n\n${current.slice(soak)}` : md);
      progress(`\nwritten to ${REPORT_PATH}`);
    }
    return rows.every((r) => r.verdict !== "FAIL") ? 0 : 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await cleanup();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
