/**
 * A throwaway `redis-server` for tests: loopback only, a free port, no persistence (`--save ""
 * --appendonly no`), its own temp dir. Tests that need it are skipped (with the reason in their name)
 * when the binary is absent; `.ci/run` installs it.
 */

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

/** Longest wait for a started server to answer PING. */
const START_TIMEOUT_MS = 5_000;

export interface TestRedis {
  port: number;
  url: string;
  /** SIGKILL, as a crash (no goodbye to clients); resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing (a slow store). */
  pause(): void;
  resume(): void;
  /** Kills it if running and removes its dir. */
  stop(): Promise<void>;
}

/** A port nothing listens on right now (the kernel's pick). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts `redis-server` on `port` (default: a free one) and waits until it answers PING. */
export async function startRedis(port = freePort()): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "vento-redis-" });
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
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
  try {
    await waitForPing(port, () => running);
  } catch (e) {
    await kill();
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    pause: () => child.kill("SIGSTOP"),
    resume: () => child.kill("SIGCONT"),
    async stop() {
      await kill();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends one inline command and returns the raw reply text (enough for tests poking at keys). */
export async function redisCommand(port: number, ...args: string[]): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const enc = new TextEncoder();
    const cmd = `*${args.length}\r\n` + args.map((a) => `$${enc.encode(a).length}\r\n${a}\r\n`).join("");
    await conn.write(enc.encode(cmd));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

async function waitForPing(port: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline && alive()) {
    try {
      if ((await redisCommand(port, "PING")).startsWith("+PONG")) return;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`redis-server on port ${port} did not answer PING (${alive() ? last : "it exited"})`);
}
