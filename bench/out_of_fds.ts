/**
 * Out-of-descriptors benchmark: what running out of file descriptors costs the clients already served.
 * Starts Vento under `prlimit --nofile=256:256` (loopback, free port, temp document root, admin socket
 * on), opens one keep-alive connection and times GETs on it, then opens `--clients` more connections
 * (more than the limit allows, so the accept loop fails with EMFILE) and one admin client, and over
 * `--rounds` rounds measures the server's CPU share and the held connection's latency (200 GETs, one every
 * 10 ms), and counts the server's error-log lines from the first extra client to the last GET.
 *
 * `--repo PATH` runs another checkout's `main.ts` (e.g. the commit before a change, from `git worktree
 * add` or `git archive`), so a before/after comparison is two runs of the same command on one machine.
 *
 * Must never: aim at anything but loopback, or leave a process or temp folder behind (killed and removed
 * after each round, also on error). Usage: `deno task bench:fds [--clients N] [--rounds N] [--repo PATH]`.
 */

import { parseArgs } from "node:util";
import { median } from "./_common.ts";
import { errorMessage } from "../src/core/errors.ts";

const NOFILE = 256;
const MAX_CLIENTS = 2_000;
const GETS = 200;
const GET_PERIOD_MS = 10;
const READY_TIMEOUT_MS = 15_000;
const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

const HELP = `deno task bench:fds [options]

Vento under prlimit --nofile=${NOFILE}: CPU share and a held connection's latency while its accept loops
cannot get a descriptor (plus one admin client), and the error-log lines written meanwhile.

  --clients N   connections opened beyond the limit, 1..${MAX_CLIENTS} (default 400)
  --rounds N    fresh servers measured, 1..10 (default 3)
  --repo PATH   the checkout whose main.ts runs (default: this one)
  -h, --help    this text`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();

interface Round {
  cpuPercent: number;
  p50Ms: number;
  p99Ms: number;
  errorLines: number;
}

function cpuSeconds(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in 100 Hz ticks
}

async function round(repo: string, clients: number): Promise<Round> {
  const dir = await Deno.makeTempDir({ prefix: "vento-fds-" });
  const conns: Deno.Conn[] = [];
  let child: Deno.ChildProcess | null = null;
  try {
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/www/index.html`, "hi\n");
    await Deno.writeTextFile(
      `${dir}/vento.conf`,
      "PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nACCESS_LOG=off\nADMIN_SOCKET=vento.sock\n" +
        "MAX_CONNS_PER_CLIENT=4096\nCONN_RATE_PER_SEC=100000\nCONN_BURST=100000\nREQUEST_RATE_PER_SEC=100000\n" +
        "REQUEST_BURST=100000\nIDLE_TIMEOUT_MS=600000\nHEADER_TIMEOUT_MS=600000\n",
    );
    child = new Deno.Command("prlimit", {
      args: [
        `--nofile=${NOFILE}:${NOFILE}`,
        Deno.execPath(),
        "run",
        "-A",
        `${repo}/main.ts`,
        "--config",
        `${dir}/vento.conf`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proc = child;
    const errorLines: string[] = [];
    let resolvePort!: (p: number) => void;
    const portP = new Promise<number>((r) => resolvePort = r);
    void (async () => {
      for await (const c of proc.stdout.pipeThrough(new TextDecoderStream())) {
        const m = c.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
        if (m) resolvePort(Number(m[1]));
      }
    })();
    void (async () => {
      for await (const c of proc.stderr.pipeThrough(new TextDecoderStream())) {
        errorLines.push(...c.split("\n").filter((l) => l !== ""));
      }
    })();
    const port = await Promise.race([
      portP,
      sleep(READY_TIMEOUT_MS).then(() => {
        throw new Error(`Vento did not start: ${errorLines.join("\n")}`);
      }),
    ]);
    const held = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(held);
    const buf = new Uint8Array(4096);
    const get = async () => {
      const t = performance.now();
      await held.write(enc.encode("GET / HTTP/1.1\r\nHost: bench\r\n\r\n"));
      await held.read(buf);
      return performance.now() - t;
    };
    for (let i = 0; i < 50; i++) await get(); // warm-up
    const linesBefore = errorLines.length;
    for (let i = 0; i < clients; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await sleep(1_000);
    conns.push(await Deno.connect({ transport: "unix", path: `${dir}/vento.sock` }));
    await sleep(500);
    const c0 = cpuSeconds(proc.pid);
    const t0 = Date.now();
    const lat: number[] = [];
    for (let i = 0; i < GETS; i++) {
      lat.push(await get());
      await sleep(GET_PERIOD_MS);
    }
    const share = (cpuSeconds(proc.pid) - c0) / ((Date.now() - t0) / 1000);
    lat.sort((a, b) => a - b);
    return {
      cpuPercent: share * 100,
      p50Ms: median(lat),
      p99Ms: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))],
      errorLines: errorLines.length - linesBefore,
    };
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    if (child !== null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited
      }
      await child.status;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      options: {
        clients: { type: "string", default: "400" },
        rounds: { type: "string", default: "3" },
        repo: { type: "string", default: REPO_ROOT },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`bench:fds: ${errorMessage(e)}\n\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(HELP);
    return 0;
  }
  const clients = Number(parsed.values.clients);
  const rounds = Number(parsed.values.rounds);
  if (!(clients >= 1 && clients <= MAX_CLIENTS) || !(rounds >= 1 && rounds <= 10)) {
    console.error(`bench:fds: --clients must be 1..${MAX_CLIENTS} and --rounds 1..10\n\n${HELP}`);
    return 2;
  }
  const repo = parsed.values.repo.replace(/\/$/, "");
  console.log(`| round | server CPU | held conn p50 | p99 | error-log lines |`);
  console.log(`| ----- | ---------- | ------------- | --- | --------------- |`);
  for (let i = 1; i <= rounds; i++) {
    const r = await round(repo, clients);
    console.log(
      `| ${i} | ${r.cpuPercent.toFixed(0)} % | ${r.p50Ms.toFixed(2)} ms | ${
        r.p99Ms.toFixed(2)
      } ms | ${r.errorLines} |`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
