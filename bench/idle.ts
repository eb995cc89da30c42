/**
 * What an idle keep-alive connection costs a server, in resident memory: start the server, read its RSS,
 * open N connections from 127.0.0.1 that each make one request and then stay open and silent, let the
 * server settle, read its RSS again; (after − before) / N is the cost per idle connection.
 *
 *   deno task bench:idle                       # 5,000 connections: vento, bare Deno (1 KiB, 16 B), node:net, nginx
 *   deno task bench:idle --conns 2000 --servers vento,nginx
 *   deno task bench:idle --json
 *
 * Servers: `vento` (as `deno task start` runs it, logs off, guard out of the way, idle and header timeouts
 * longer than the run), `bare` and `bare16` (bench/bare_deno.ts with a 1 KiB and a 16-byte read buffer:
 * the runtime's own floor, a pending read per connection and nothing else), `nodenet` (bench/bare_node.ts:
 * a bare `node:net` responder), `handle` (bench/bare_handle.ts: a bare responder on the socket handles
 * under `node:net`, which Vento's transport drives: the floor of the socket layer Vento is built on), `nginx` (one worker,
 * `keepalive_timeout 65s`; its master and worker RSS summed). Each server runs alone, one after the other;
 * the client is this process. Loopback only; every server is stopped (SIGTERM, then SIGKILL) at the end,
 * also on errors. Needs N + 100 file descriptors (`ulimit -n`).
 */

import { parseArgs } from "node:util";
import { freePort } from "./_common.ts";
import { nginxConfig, ventoConfig, ventoRunArgs } from "./load.ts";
import { parseConfig } from "../src/config/config.ts";

const HOST = "127.0.0.1";
const REPO_ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const SERVERS = ["vento", "bare", "bare16", "nodenet", "handle", "nginx"] as const;
type ServerName = typeof SERVERS[number];
/** Longest wait for a server to accept its first connection. */
const START_TIMEOUT_MS = 10_000;
/** Pause before each RSS reading, so allocations from start-up or the opening burst have settled. */
const SETTLE_MS = 2_000;
/** Idle and header timeouts given to Vento: longer than any run. */
const VENTO_IDLE_TIMEOUT_MS = 600_000;
/** Most connections a run opens. */
const MAX_CONNS = 15_000;

interface Result {
  server: ServerName;
  conns: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  perConnKiB: number;
}

/** Resident set of `pid` and its children (nginx: master + workers), KiB. */
function treeRssKiB(pid: number): number {
  let total = 0;
  for (const p of [pid, ...childrenOf(pid)]) {
    try {
      const m = Deno.readTextFileSync(`/proc/${p}/status`).match(/^VmRSS:\s+(\d+) kB/m);
      if (m !== null) total += Number(m[1]);
    } catch {
      // exited
    }
  }
  return total;
}

function childrenOf(pid: number): number[] {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
    return text === "" ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

async function waitForPort(port: number, child: Deno.ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited = false;
  child.status.then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(exited ? "the server exited during start-up" : `nothing accepted on port ${port}`);
}

const REQUEST = new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);

/** Reads one whole response (head, then Content-Length bytes) so the connection is idle afterwards. */
async function readResponse(conn: Deno.TcpConn, buf: Uint8Array): Promise<void> {
  let got = 0;
  let need = -1;
  while (need < 0 || got < need) {
    if (got === buf.length) throw new Error("response larger than the read buffer");
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error("the server closed a connection that should stay open");
    got += n;
    if (need < 0) {
      const text = new TextDecoder().decode(buf.subarray(0, got));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      if (!text.startsWith("HTTP/1.1 200")) throw new Error(`unexpected answer: ${text.split("\r\n")[0]}`);
      const m = text.slice(0, end).match(/\r\ncontent-length:\s*(\d+)/i);
      need = end + 4 + (m === null ? 0 : Number(m[1]));
    }
  }
}

async function startServer(name: ServerName, dir: string, docroot: string, conns: number) {
  const port = freePort(HOST);
  let cmd: string;
  let args: string[];
  if (name === "vento") {
    const conf = `${dir}/vento.conf`;
    const text = ventoConfig(docroot, port, [
      `IDLE_TIMEOUT_MS=${VENTO_IDLE_TIMEOUT_MS}`,
      `HEADER_TIMEOUT_MS=${VENTO_IDLE_TIMEOUT_MS}`,
    ], 1);
    const check = parseConfig(text);
    if (!check.ok) throw new Error(`generated vento.conf is invalid: ${JSON.stringify(check.errors)}`);
    await Deno.writeTextFile(conf, text);
    cmd = Deno.execPath();
    args = [...await ventoRunArgs(null), "--config", conf];
  } else if (name === "nginx") {
    await Deno.mkdir(`${dir}/nginx-tmp`, { recursive: true });
    // Twice the connections: nginx closes idle keep-alive connections once fewer than 1/16 of its
    // worker_connections are free, which would end the idle connections this run measures.
    await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConfig(dir, docroot, port, 1, 2 * conns + 100));
    cmd = "nginx";
    args = ["-p", dir, "-c", `${dir}/nginx.conf`, "-g", "daemon off;"];
  } else if (name === "nodenet" || name === "handle") {
    cmd = Deno.execPath();
    const script = name === "nodenet" ? "bare_node.ts" : "bare_handle.ts";
    args = ["run", "--allow-net", `${REPO_ROOT}/bench/${script}`, "--port", String(port)];
  } else {
    cmd = Deno.execPath();
    const buffer = name === "bare16" ? "16" : "1024";
    args = [
      "run",
      "--allow-net",
      `${REPO_ROOT}/bench/bare_deno.ts`,
      "--port",
      String(port),
      "--buffer",
      buffer,
    ];
  }
  const child = new Deno.Command(cmd, { args, cwd: REPO_ROOT, stdout: "null", stderr: "piped" }).spawn();
  const stderr = child.stderr.text();
  try {
    await waitForPort(port, child);
  } catch (e) {
    await stop(child);
    throw new Error(`${name}: ${(e as Error).message}: ${(await stderr).trim().slice(0, 500)}`);
  }
  return { child, port };
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, 3_000);
  await child.status;
  clearTimeout(timer);
}

async function measure(name: ServerName, dir: string, docroot: string, n: number): Promise<Result> {
  const { child, port } = await startServer(name, dir, docroot, n);
  const conns: Deno.TcpConn[] = [];
  try {
    // One request first, so the server's code for a served connection is loaded and warm.
    const warm = await Deno.connect({ hostname: HOST, port });
    await warm.write(REQUEST);
    await readResponse(warm, new Uint8Array(64 * 1024));
    warm.close();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const before = treeRssKiB(child.pid);
    const buf = new Uint8Array(64 * 1024);
    for (let i = 0; i < n; i++) {
      const c = await Deno.connect({ hostname: HOST, port });
      conns.push(c);
      await c.write(REQUEST);
      await readResponse(c, buf);
    }
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = treeRssKiB(child.pid);
    // Every connection must still be open: one more request on the first and the last.
    for (const c of [conns[0], conns[conns.length - 1]]) {
      await c.write(REQUEST);
      await readResponse(c, buf);
    }
    return {
      server: name,
      conns: n,
      rssBeforeKiB: before,
      rssAfterKiB: after,
      perConnKiB: (after - before) / n,
    };
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // gone
      }
    }
    await stop(child);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      conns: { type: "string", default: "5000" },
      servers: { type: "string", default: SERVERS.join(",") },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "deno task bench:idle [--conns N] [--servers vento,bare,bare16,nodenet,handle,nginx] [--json]",
    );
    return 0;
  }
  const n = Number(values.conns);
  if (!Number.isInteger(n) || n < 100 || n > MAX_CONNS) {
    console.error(`--conns must be an integer from 100 to ${MAX_CONNS}, got "${values.conns}"`);
    return 2;
  }
  const names = values.servers.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const s of names) {
    if (!(SERVERS as readonly string[]).includes(s)) {
      console.error(`unknown server "${s}" (known: ${SERVERS.join(", ")})`);
      return 2;
    }
  }
  const dir = await Deno.makeTempDir({ prefix: "vento-idle-" });
  const results: Result[] = [];
  try {
    // nginx's worker runs as an unprivileged user: it must be able to read the site.
    await Deno.chmod(dir, 0o755);
    const docroot = `${dir}/www`;
    await Deno.mkdir(docroot);
    await Deno.writeTextFile(`${docroot}/index.html`, "<!doctype html><title>idle</title>\n");
    for (const name of names as ServerName[]) {
      console.error(`${name}: opening ${n} idle keep-alive connections…`);
      const r = await measure(name, dir, docroot, n);
      console.error(
        `${name}: RSS ${(r.rssBeforeKiB / 1024).toFixed(1)} → ${(r.rssAfterKiB / 1024).toFixed(1)} MiB, ` +
          `${r.perConnKiB.toFixed(2)} KiB per idle connection`,
      );
      results.push(r);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  if (values.json) {
    console.log(JSON.stringify({ conns: n, results }, null, 2));
  } else {
    console.log(`\nserver   RSS before  RSS after  KiB per idle connection (${n} connections)`);
    for (const r of results) {
      console.log(
        `${r.server.padEnd(8)} ${(r.rssBeforeKiB / 1024).toFixed(1).padStart(7)} MiB ` +
          `${(r.rssAfterKiB / 1024).toFixed(1).padStart(7)} MiB  ${r.perConnKiB.toFixed(2).padStart(8)}`,
      );
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
