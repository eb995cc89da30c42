/**
 * Admin overhead benchmark: does a live `subscribe` client slow the data path? Issue 5's target is that
 * req/s with a 10 Hz subscriber attached stays within 3 % of req/s without one.
 *
 * It starts ONE Vento child (`main.ts --config <generated>`, guard allowlisting 127.0.0.0/8 so it never
 * limits wrk, admin socket in the temp folder), then runs `wrk -t1 -c50` on a 1 KiB file in interleaved
 * conditions (off on, on off, …: order alternates so warm-up drift and thermal noise hit both), toggling
 * a subscriber in this process that asks what `vento-admin top` asks (stats + conns + bans + 10 clients)
 * at 10 Hz. Prints median req/s per condition, the ratio and the server's CPU per request.
 *
 * `--top-cpu SEC` instead measures `vento-admin top` itself: it runs top at 1 Hz in a detached tmux
 * against the idle server and reports its CPU use (main-thread schedstat from /proc) over SEC seconds.
 *
 * Must never: aim at anything but 127.0.0.1, run unbounded (duration and rounds are capped), or leave
 * a server, tmux or temp folder behind (all stopped and removed on exit, error and ctrl-c).
 */

import { parseArgs } from "node:util";
import { AdminClient } from "../cli/client.ts";
import { parseWrk } from "./load.ts";
import { freePort, hasCommand, median } from "./_common.ts";
import { errorMessage } from "../src/core/errors.ts";

/** Longest single wrk run. */
const MAX_DURATION_SEC = 60;
/** Most interleaved rounds. */
const MAX_ROUNDS = 10;
/** Longest `--top-cpu` measurement. */
const MAX_TOP_CPU_SEC = 300;
/** How long the server may take from spawn to answering on its admin socket. */
const READY_TIMEOUT_MS = 10_000;
/** After SIGTERM, how long the server may take to exit before SIGKILL. */
const STOP_TIMEOUT_MS = 3_000;
/** The subscriber's period: 10 Hz, as the issue states. */
const DEFAULT_SUBSCRIBE_INTERVAL_MS = 100;
/** Rows of top talkers the subscriber asks for (what `top` asks for). */
const SUBSCRIBE_CLIENTS = 10;
/** wrk connections (the guide's reference scenario). */
const WRK_CONNS = 50;
const FILE_BYTES = 1024;
const FILE_PATH = "/1k.bin";
/** Loopback only. */
const BENCH_HOST = "127.0.0.1";
/** `top`'s refresh period for `--top-cpu`. */
const TOP_INTERVAL_SEC = 1;

const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

const HELP = `Vento admin overhead benchmark: req/s with and without a 10 Hz subscribe client.

Usage: deno task bench:admin [options]

  --duration SEC    seconds per wrk run (default 5, at most ${MAX_DURATION_SEC})
  --rounds N        interleaved rounds, each one run per condition (default 3, at most ${MAX_ROUNDS})
  --warmup SEC      one unmeasured wrk run first (default 2)
  --interval MS     subscriber period in ms (default ${DEFAULT_SUBSCRIBE_INTERVAL_MS}, i.e. 10 Hz)
  --no-pin          do not pin wrk to CPU 0 and the server to CPU 1 with taskset
  --top-cpu SEC     instead: CPU use of \`vento-admin top\` at 1 Hz on an idle server (needs tmux)
  --help            this text

Needs wrk (apt-get install wrk); --top-cpu needs tmux.`;

interface Options {
  durationSec: number;
  rounds: number;
  warmupSec: number;
  intervalMs: number;
  pin: boolean;
  topCpuSec: number;
}

function parseOptions(args: string[]): Options | { help: true } | { error: string } {
  let v;
  try {
    v = parseArgs({
      args,
      strict: true,
      options: {
        duration: { type: "string", default: "5" },
        rounds: { type: "string", default: "3" },
        warmup: { type: "string", default: "2" },
        interval: { type: "string", default: String(DEFAULT_SUBSCRIBE_INTERVAL_MS) },
        "no-pin": { type: "boolean", default: false },
        "top-cpu": { type: "string", default: "0" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    return { error: errorMessage(e) };
  }
  if (v.help) return { help: true };
  const int = (name: string, raw: string, min: number, max: number): number => {
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      throw new RangeError(`--${name} must be a whole number from ${min} to ${max}`);
    }
    return Number(raw);
  };
  try {
    return {
      durationSec: int("duration", v.duration, 1, MAX_DURATION_SEC),
      rounds: int("rounds", v.rounds, 1, MAX_ROUNDS),
      warmupSec: int("warmup", v.warmup, 0, MAX_DURATION_SEC),
      intervalMs: int("interval", v.interval, 100, 60_000),
      pin: !v["no-pin"],
      topCpuSec: int("top-cpu", v["top-cpu"], 0, MAX_TOP_CPU_SEC),
    };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

const progress = (msg: string): void => console.error(msg);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * CPU time used so far by the main thread of `pid`, in milliseconds, or null when /proc cannot say.
 * From `/proc/<pid>/schedstat` (nanoseconds): Deno runs JavaScript and its I/O event loop on the main
 * thread, which is what a subscriber competes for. utime+stime in /proc/<pid>/stat count 10 ms ticks,
 * too coarse for a cost of a few milliseconds a second; summing every thread's schedstat is not
 * monotonic (short-lived blocking-pool threads take their time with them when they exit).
 */
function cpuMs(pid: number): number | null {
  try {
    return Number(Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ")[0]) / 1e6;
  } catch {
    return null;
  }
}

function ventoConfig(port: number): string {
  return `# Generated by bench/admin_overhead.ts: the guard out of wrk's way, the admin socket on.
PORT=${port}
HOST=${BENCH_HOST}
DOCUMENT_ROOT=www
ACCESS_LOG=off
ADMIN_SOCKET=vento.sock
ALLOWLIST=127.0.0.0/8
REQUEST_RATE_PER_SEC=10000000
REQUEST_BURST=10000000
CONN_RATE_PER_SEC=10000000
CONN_BURST=10000000
MAX_REQUESTS_PER_CONN=10000000
MAX_CONNS_PER_CLIENT=100000
MAX_CONNS=100000
`;
}

/** Everything to undo on exit: the server, wrk, tmux, the temp folder. */
class Janitor {
  server: Deno.ChildProcess | null = null;
  wrk: Deno.ChildProcess | null = null;
  tmuxSocket: string | null = null;
  tempDir: string | null = null;
  #done: Promise<void> | null = null;

  cleanup(): Promise<void> {
    this.#done ??= (async () => {
      try {
        this.wrk?.kill("SIGKILL");
      } catch {
        // finished already
      }
      if (this.tmuxSocket !== null) {
        await new Deno.Command("tmux", { args: ["-S", this.tmuxSocket, "kill-server"], stderr: "null" })
          .output().catch(() => {});
      }
      const server = this.server;
      if (server !== null) {
        try {
          server.kill("SIGTERM");
        } catch {
          // gone already
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = await Promise.race([
          server.status.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_TIMEOUT_MS))),
        ]);
        clearTimeout(timer);
        if (late) {
          try {
            server.kill("SIGKILL");
          } catch {
            // gone
          }
          await server.status;
        }
      }
      if (this.tempDir !== null) await Deno.remove(this.tempDir, { recursive: true }).catch(() => {});
    })();
    return this.#done;
  }
}

/** Starts Vento as a child and waits until its admin socket answers `hello`. */
async function startServer(
  janitor: Janitor,
  dir: string,
  pin: boolean,
): Promise<{ pid: number; port: number }> {
  const port = freePort(BENCH_HOST);
  await Deno.writeTextFile(`${dir}/vento.conf`, ventoConfig(port));
  const args = [
    "run",
    "-A",
    `--config=${REPO_ROOT}/deno.json`,
    `${REPO_ROOT}/main.ts`,
    "--config",
    `${dir}/vento.conf`,
  ];
  const [cmd, cmdArgs] = pin ? ["taskset", ["-c", "1", Deno.execPath(), ...args]] : [Deno.execPath(), args];
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  })
    .spawn();
  janitor.server = child;
  const stderr = new Response(child.stderr).text();
  const deadline = performance.now() + READY_TIMEOUT_MS;
  for (;;) {
    try {
      const c = await AdminClient.connect(`${dir}/vento.sock`);
      const hello = await c.request("hello");
      c.close();
      await c.closed;
      return { pid: hello.pid, port };
    } catch {
      if (performance.now() > deadline) {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
        throw new Error(`Vento did not come up within ${READY_TIMEOUT_MS} ms:\n${await stderr}`);
      }
      await sleep(50);
    }
  }
}

/** A `top`-like subscriber: every event carries stats, conns, bans and the top talkers. */
async function subscribe(
  socket: string,
  intervalMs: number,
): Promise<{ stop(): Promise<{ events: number; dropped: boolean }> }> {
  const c = await AdminClient.connect(socket);
  let events = 0;
  // The server drops a subscriber it thinks is not reading; a run where that happened is not "on".
  let dropped = false;
  void c.closed.then(() => (dropped = !stopping));
  let stopping = false;
  await c.subscribe({ intervalMs, conns: true, bans: true, clients: SUBSCRIBE_CLIENTS }, () => events++);
  return {
    async stop() {
      stopping = true;
      c.close();
      await c.closed;
      return { events, dropped };
    },
  };
}

interface Run {
  rps: number;
  errors: number;
  cpuUsPerReq: number;
}

async function runWrk(
  janitor: Janitor,
  opts: Options,
  server: { pid: number; port: number },
  durationSec: number,
): Promise<Run> {
  const args = [
    "-t1",
    `-c${WRK_CONNS}`,
    `-d${durationSec}s`,
    "--latency",
    `http://${BENCH_HOST}:${server.port}${FILE_PATH}`,
  ];
  const [cmd, cmdArgs] = opts.pin ? ["taskset", ["-c", "0", "wrk", ...args]] : ["wrk", args];
  const before = cpuMs(server.pid);
  const child = new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped" }).spawn();
  janitor.wrk = child;
  const out = await child.output();
  janitor.wrk = null;
  const after = cpuMs(server.pid);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const parsed = parseWrk(text);
  if (!out.success || parsed === null) throw new Error(`wrk failed (exit ${out.code}):\n${text}`);
  const cpuUsPerReq = before !== null && after !== null && parsed.requests > 0
    ? (after - before) * 1000 / parsed.requests
    : Number.NaN;
  return { rps: parsed.rps, errors: parsed.errors, cpuUsPerReq };
}

async function overhead(janitor: Janitor, opts: Options, dir: string): Promise<number> {
  const server = await startServer(janitor, dir, opts.pin);
  const socket = `${dir}/vento.sock`;
  progress(`vento pid ${server.pid} on ${BENCH_HOST}:${server.port}; subscriber every ${opts.intervalMs} ms`);
  if (opts.warmupSec > 0) {
    progress(`warm-up ${opts.warmupSec} s`);
    await runWrk(janitor, opts, server, opts.warmupSec);
  }
  const results: Record<"off" | "on", Run[]> = { off: [], on: [] };
  let events = 0;
  for (let round = 0; round < opts.rounds; round++) {
    const order: ("off" | "on")[] = round % 2 === 0 ? ["off", "on"] : ["on", "off"];
    for (const cond of order) {
      const sub = cond === "on" ? await subscribe(socket, opts.intervalMs) : null;
      const r = await runWrk(janitor, opts, server, opts.durationSec);
      const got = sub === null ? null : await sub.stop();
      if (got !== null) events += got.events;
      results[cond].push(r);
      progress(
        `round ${round + 1} subscriber ${cond.padEnd(3)} ${r.rps.toFixed(0).padStart(7)} req/s  ` +
          `${r.cpuUsPerReq.toFixed(1)} µs CPU/req${r.errors > 0 ? `  ${r.errors} errors!` : ""}` +
          (got === null ? "" : `  ${got.events} snapshots${got.dropped ? ", DROPPED by the server" : ""}`),
      );
    }
  }
  const off = median(results.off.map((r) => r.rps));
  const on = median(results.on.map((r) => r.rps));
  const ratio = on / off;
  const expected = opts.rounds * opts.durationSec * 1000 / opts.intervalMs;
  console.log("");
  console.log(`| subscriber | median req/s | CPU µs/req | runs (req/s) |`);
  console.log(`|---|---:|---:|---|`);
  for (const cond of ["off", "on"] as const) {
    const rs = results[cond];
    console.log(
      `| ${cond === "on" ? `on (${1000 / opts.intervalMs} Hz)` : "off"} | ${
        (cond === "on" ? on : off).toFixed(0)
      } | ${median(rs.map((r) => r.cpuUsPerReq)).toFixed(1)} | ${
        rs.map((r) => r.rps.toFixed(0)).join(", ")
      } |`,
    );
  }
  // Each round's two runs are back to back, so their ratio cancels slow drift (other load on the
  // machine, CPU frequency); the median of those ratios is the figure least moved by noise.
  const paired = median(results.on.map((r, i) => r.rps / results.off[i].rps));
  const cpuRatio = median(results.on.map((r) => r.cpuUsPerReq)) /
    median(results.off.map((r) => r.cpuUsPerReq));
  const pct = (x: number) => `${x >= 1 ? "+" : ""}${((x - 1) * 100).toFixed(1)} %`;
  console.log(
    `\nwith/without: median req/s ${ratio.toFixed(3)} (${pct(ratio)}), median of per-round ratios ` +
      `${paired.toFixed(3)} (${pct(paired)}), CPU per request ${cpuRatio.toFixed(3)} (${pct(cpuRatio)}); ` +
      `target: req/s within 3 %. Snapshots received: ${events} (≈${expected.toFixed(0)} expected).`,
  );
  console.log(
    `medians of ${opts.rounds} interleaved rounds of ${opts.durationSec} s, wrk -t1 -c${WRK_CONNS}, 1 KiB file`,
  );
  if ([...results.off, ...results.on].some((r) => r.errors > 0)) {
    console.log("WARNING: some runs had errors.");
  }
  await subscriberCost(opts, server, socket);
  return 0;
}

/**
 * req/s on a shared 2-core machine is noisy; the subscriber's own cost is not. Measures the server's
 * CPU with WRK_CONNS idle keep-alive connections open (so `conns` has as many rows as under load),
 * subscriber off and on, interleaved: the difference is what the subscriber takes from the data path.
 */
async function subscriberCost(
  opts: Options,
  server: { pid: number; port: number },
  socket: string,
): Promise<void> {
  const idle = await idleConnections(server.port, WRK_CONNS);
  try {
    const cost: Record<"off" | "on", number[]> = { off: [], on: [] };
    for (let round = 0; round < 2; round++) {
      for (const cond of round % 2 === 0 ? ["off", "on"] as const : ["on", "off"] as const) {
        const sub = cond === "on" ? await subscribe(socket, opts.intervalMs) : null;
        const before = cpuMs(server.pid);
        const t0 = performance.now();
        await sleep(opts.durationSec * 1000);
        const after = cpuMs(server.pid);
        const sec = (performance.now() - t0) / 1000;
        await sub?.stop();
        if (before !== null && after !== null) cost[cond].push((after - before) / sec);
      }
    }
    if (cost.on.length === 0) return;
    const extra = median(cost.on) - median(cost.off);
    const events = 1000 / opts.intervalMs;
    console.log(
      `\nserver CPU with ${WRK_CONNS} idle connections: subscriber off ${
        median(cost.off).toFixed(2)
      } ms/s, on ` +
        `${median(cost.on).toFixed(2)} ms/s: the subscriber costs ${extra.toFixed(2)} ms of CPU per second ` +
        `(${(extra / 10).toFixed(2)} % of a core, ${(extra / events * 1000).toFixed(0)} µs a snapshot). ` +
        `At saturation that bounds the req/s it can take to about the same fraction.`,
    );
  } finally {
    for (const c of idle) c.close();
  }
}

/** Opens `n` keep-alive connections, each after one complete request, and leaves them idle. */
async function idleConnections(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  const req = new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: bench\r\n\r\n`);
  const buf = new Uint8Array(4096);
  for (let i = 0; i < n; i++) {
    const c = await Deno.connect({ hostname: BENCH_HOST, port });
    conns.push(c);
    await c.write(req);
    await c.read(buf); // the small index.html answer arrives in one read on loopback
  }
  return conns;
}

/** CPU use of `vento-admin top --interval 1` on an idle server, in a detached tmux. */
async function topCpu(janitor: Janitor, opts: Options, dir: string): Promise<number> {
  if (!(await hasCommand("tmux", ["-V"]))) {
    console.error("bench: --top-cpu needs tmux (apt-get install tmux)");
    return 1;
  }
  await startServer(janitor, dir, false);
  // The tmux socket in our temp folder: removed with it, and never the user's tmux server.
  const tmux = `${dir}/tmux.sock`;
  janitor.tmuxSocket = tmux;
  const pidFile = `${dir}/top.pid`;
  // `exec` so the pane's process is top itself; its pid is written first, so we measure the right one.
  const shell =
    `echo $$ > ${pidFile}; exec ${Deno.execPath()} run -A --quiet --config=${REPO_ROOT}/deno.json ` +
    `${REPO_ROOT}/cli/main.ts --socket ${dir}/vento.sock top --interval ${TOP_INTERVAL_SEC}`;
  const t = await new Deno.Command("tmux", {
    args: ["-S", tmux, "new-session", "-d", "-x", "120", "-y", "40", "sh", "-c", shell],
    stderr: "piped",
  }).output();
  if (!t.success) throw new Error(`tmux: ${new TextDecoder().decode(t.stderr)}`);
  let pid = 0;
  for (let i = 0; i < 100 && pid === 0; i++) {
    await sleep(50);
    pid = Number((await Deno.readTextFile(pidFile).catch(() => "")).trim()) || 0;
  }
  if (pid === 0) throw new Error("top did not start");
  // Let start-up (module loading, the first frames) pass: the issue is about idle cost.
  await sleep(5_000);
  const before = cpuMs(pid);
  const t0 = performance.now();
  progress(`measuring top (pid ${pid}) for ${opts.topCpuSec} s…`);
  await sleep(opts.topCpuSec * 1000);
  const after = cpuMs(pid);
  const wallSec = (performance.now() - t0) / 1000;
  if (before === null || after === null) throw new Error("cannot read /proc/<pid>/schedstat for top");
  const cpuSec = (after - before) / 1000;
  console.log(
    `vento-admin top --interval ${TOP_INTERVAL_SEC}, idle server: ${cpuSec.toFixed(2)} s CPU in ` +
      `${wallSec.toFixed(1)} s = ${(cpuSec / wallSec * 100).toFixed(3)} % of one core`,
  );
  return 0;
}

/** Runs the bench; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  const opts = parseOptions(args);
  if ("help" in opts) {
    console.log(HELP);
    return 0;
  }
  if ("error" in opts) {
    console.error(`bench: ${opts.error}\nTry --help.`);
    return 2;
  }
  if (opts.topCpuSec === 0 && !(await hasCommand("wrk", ["-v"]))) {
    console.error("bench: wrk is not installed (apt-get install wrk)");
    return 1;
  }
  if (opts.pin && !(await hasCommand("taskset", ["-V"]) && navigator.hardwareConcurrency >= 2)) {
    opts.pin = false;
  }
  const janitor = new Janitor();
  const onSignal = () => void janitor.cleanup().then(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const dir = await Deno.makeTempDir({ prefix: "vento-bench-admin-" });
    janitor.tempDir = dir;
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeFile(`${dir}/www${FILE_PATH}`, crypto.getRandomValues(new Uint8Array(FILE_BYTES)));
    await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>bench</h1>\n");
    return opts.topCpuSec > 0 ? await topCpu(janitor, opts, dir) : await overhead(janitor, opts, dir);
  } catch (e) {
    console.error(`bench: ${errorMessage(e)}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await janitor.cleanup();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
