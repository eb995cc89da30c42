/**
 * A throwaway `redis-server` for tests: loopback only, a free port, no persistence (`--save ""
 * --appendonly no`), its own temp dir; optionally with extra server arguments (`--requirepass`, ACL
 * users) and TLS only (a throwaway CA and a leaf for localhost / 127.0.0.1 made by `openssl`). Tests
 * that need it are skipped (with the reason in their name) when the binary is absent; `.ci/run`
 * installs it.
 */

import { makeTestPki, OPENSSL_AVAILABLE, type TestPki } from "./pki.ts";
import { freePort } from "./raw_client.ts";

// The Redis tests take their certificates from here too.
export { makeTestPki, OPENSSL_AVAILABLE, type TestPki };

/** Whether `redis-server` can be run here. */
export const REDIS_AVAILABLE: boolean = await (async () => {
  try {
    const r = await new Deno.Command("redis-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
})();

/** Appended to the names of tests that need Redis when it is missing, so a skip explains itself. */
export const REDIS_SKIP_NOTE = REDIS_AVAILABLE ? "" : " (skipped: redis-server not installed)";

/** As `REDIS_SKIP_NOTE`, for tests that also need `openssl`. */
export const REDIS_TLS_SKIP_NOTE = REDIS_SKIP_NOTE !== ""
  ? REDIS_SKIP_NOTE
  : OPENSSL_AVAILABLE
  ? ""
  : " (skipped: openssl not installed)";

/** Longest wait for a started server to answer PING. */
const START_TIMEOUT_MS = 5_000;

export interface RedisOptions {
  /** Extra `redis-server` arguments, e.g. `["--requirepass", "s3cret"]`. */
  args?: string[];
  /** The password this helper sends (AUTH) before its own PING and commands. */
  password?: string;
  /** TLS only: the port serves TLS with these files and plain TCP is off (`--port 0`). */
  tls?: TestPki;
}

export interface TestRedis {
  port: number;
  /** `redis://127.0.0.1:port`, or `rediss://localhost:port` with TLS; never with a password. */
  url: string;
  /** Sends one command (with the configured AUTH and TLS) and returns the raw reply text. */
  command(...args: string[]): Promise<string>;
  /** SIGKILL, as a crash (no goodbye to clients); resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing (a slow store). */
  pause(): void;
  resume(): void;
  /** Kills it if running and removes its dir. */
  stop(): Promise<void>;
}

/** Starts `redis-server` on `port` (default: a free one) and waits until it answers PING. */
export async function startRedis(port = freePort(), options: RedisOptions = {}): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "vento-redis-" });
  const tls = options.tls;
  const listen = tls === undefined ? ["--port", String(port)] : [
    "--port",
    "0",
    "--tls-port",
    String(port),
    "--tls-cert-file",
    tls.certFile,
    "--tls-key-file",
    tls.keyFile,
    "--tls-ca-cert-file",
    tls.caFile,
    "--tls-auth-clients",
    "no",
  ];
  const child = new Deno.Command("redis-server", {
    args: [
      ...listen,
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--logfile",
      "",
      "--loglevel",
      "warning",
      ...(options.args ?? []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let running = true;
  const exited = child.status.then(() => {
    running = false;
  });
  const kill = async () => {
    if (running) {
      child.kill("SIGCONT"); // a paused process must run to die promptly
      child.kill("SIGKILL");
    }
    await exited;
  };
  const dial = { port, password: options.password, caPem: tls?.caPem };
  try {
    await waitForPing(dial, () => running);
  } catch (e) {
    await kill();
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    port,
    url: tls === undefined ? `redis://127.0.0.1:${port}` : `rediss://localhost:${port}`,
    command: (...args) => dialCommand(dial, args),
    kill,
    pause: () => child.kill("SIGSTOP"),
    resume: () => child.kill("SIGCONT"),
    async stop() {
      await kill();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends one command to a plain, password-less Redis and returns the raw reply text. */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return dialCommand({ port }, args);
}

interface Dial {
  port: number;
  password?: string;
  /** Set: TLS to localhost, trusting this CA. */
  caPem?: string;
}

/** Sends one command (after AUTH when a password is set) and returns the raw text of its reply. */
async function dialCommand(dial: Dial, args: string[]): Promise<string> {
  const conn = dial.caPem === undefined
    ? await Deno.connect({ hostname: "127.0.0.1", port: dial.port })
    : await Deno.connectTls({ hostname: "localhost", port: dial.port, caCerts: [dial.caPem] });
  try {
    if (dial.password !== undefined) {
      const ok = await exchange(conn, ["AUTH", dial.password]);
      if (!ok.startsWith("+OK")) throw new Error(`AUTH: ${ok.trim()}`);
    }
    return await exchange(conn, args);
  } finally {
    conn.close();
  }
}

/** One command out, one read back (replies here are small enough for one read). */
async function exchange(conn: Deno.Conn, args: string[]): Promise<string> {
  const enc = new TextEncoder();
  const cmd = `*${args.length}\r\n` + args.map((a) => `$${enc.encode(a).length}\r\n${a}\r\n`).join("");
  await conn.write(enc.encode(cmd));
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

async function waitForPing(dial: Dial, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline && alive()) {
    try {
      if ((await dialCommand(dial, ["PING"])).startsWith("+PONG")) return;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`redis-server on port ${dial.port} did not answer PING (${alive() ? last : "it exited"})`);
}
