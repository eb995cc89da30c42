/**
 * Faults from outside, against the real `main.ts` process: running out of file descriptors (under
 * `prlimit --nofile`), and a forced stop (a second signal) with lines in the access log's batch and an
 * admin socket file, each with the server as a child process; and an access log on a full device
 * (`/dev/full`), in process. All talk raw TCP and are bounded in time.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { startTestServer } from "../_helpers/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PRLIMIT_AVAILABLE = await new Deno.Command("prlimit", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);

/** A Vento process started from a temp folder with its own vento.conf. */
interface Proc {
  child: Deno.ChildProcess;
  dir: string;
  port: number;
  /** Lines written to stdout and stderr so far. */
  out: string[];
  err: string[];
  exited: Promise<Deno.CommandStatus>;
}

async function pump(stream: ReadableStream<Uint8Array>, lines: string[], onLine?: (l: string) => void) {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      onLine?.(line);
    }
  }
}

async function startProc(conf: string, nofile?: number, big = false): Promise<Proc> {
  const dir = await Deno.makeTempDir({ prefix: "vento-faults-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>hello</h1>\n");
  if (big) await Deno.writeFile(`${dir}/www/big.bin`, new Uint8Array(32 * 1024 * 1024));
  await Deno.writeTextFile(
    `${dir}/vento.conf`,
    "PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nADMIN_SOCKET=vento.sock\nREQUEST_RATE_PER_SEC=100000\n" +
      "REQUEST_BURST=100000\nCONN_RATE_PER_SEC=100000\nCONN_BURST=100000\nMAX_CONNS_PER_CLIENT=4096\n" + conf,
  );
  const deno = ["run", "-A", "--unstable-net", MAIN, "--config", `${dir}/vento.conf`];
  const [cmd, args] = nofile === undefined
    ? [Deno.execPath(), deno]
    : ["prlimit", [`--nofile=${nofile}:${nofile}`, Deno.execPath(), ...deno]];
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" }).spawn();
  const out: string[] = [];
  const err: string[] = [];
  let resolvePort!: (p: number) => void;
  const portP = new Promise<number>((r) => resolvePort = r);
  const pumped = Promise.all([
    pump(child.stdout, out, (l) => {
      const m = l.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) resolvePort(Number(m[1]));
    }),
    pump(child.stderr, err),
  ]);
  const exited = child.status.then(async (s) => {
    await pumped;
    return s;
  });
  const port = await Promise.race([
    portP,
    exited.then((s) => {
      throw new Error(`vento exited (${s.code}) before listening: ${err.join("\n")}`);
    }),
  ]);
  return { child, dir, port, out, err, exited };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** CPU seconds (user + system) the process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

Deno.test({
  name: "out of descriptors: accept loops (HTTP and admin) pause instead of spinning, one line each way",
  ignore: !PRLIMIT_AVAILABLE,
  async fn() {
    // 64 descriptors: Deno itself holds ~26, so 100 clients exhaust them.
    const p = await startProc("ACCESS_LOG=off\nIDLE_TIMEOUT_MS=60000\nHEADER_TIMEOUT_MS=60000\n", 64);
    const clients: Deno.TcpConn[] = [];
    let admin: Deno.UnixConn | null = null;
    try {
      for (let i = 0; i < 100; i++) clients.push(await Deno.connect({ hostname: "127.0.0.1", port: p.port }));
      await until(
        "the server runs out of descriptors",
        () => p.err.some((l) => /out of file descriptors/.test(l)),
      );
      // An admin client while no descriptor is left: its accept fails too, and must not spin either.
      admin = await Deno.connect({ transport: "unix", path: `${p.dir}/vento.sock` });
      await until(
        "the admin accept loop says so",
        () => p.err.some((l) => /accepting admin connections: out of/.test(l)),
      );
      const cpu0 = await cpuSeconds(p.child.pid);
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 1_500));
      const share = (await cpuSeconds(p.child.pid) - cpu0) / ((Date.now() - t0) / 1000);
      // Spinning accept loops used 80–100 % of a core here; paused ones use next to nothing.
      assert.ok(
        share < 0.3,
        `the server used ${(share * 100).toFixed(0)} % of a core while out of descriptors`,
      );
      const startLines = p.err.filter((l) => /out of file descriptors; pausing/.test(l));
      assert.equal(startLines.length, 2, `one line per accept loop, got:\n${p.err.join("\n")}`);
      // Descriptors come back: every loop says so once, with the count of failed attempts.
      for (const c of clients.splice(0)) c.close();
      admin.close();
      admin = null;
      await until(
        "a request is answered again",
        async () => (await request(p.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")).status === 200,
      );
      await until(
        "the HTTP loop's episode ends",
        async () => {
          assert.equal((await request(p.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")).status, 200);
          return p.err.some((l) => /accepting HTTP connections again/.test(l));
        },
      ).catch((e) => {
        throw new Error(`${e.message}; stderr:\n${p.err.join("\n")}`);
      });
      const end = p.err.find((l) => /accepting HTTP connections again/.test(l))!;
      assert.match(end, /; \d+ accept attempts failed meanwhile$/);
      assert.equal(p.err.filter((l) => /accepting HTTP/.test(l)).length, 2, p.err.join("\n"));
    } finally {
      for (const c of clients) c.close();
      admin?.close();
      p.child.kill("SIGTERM");
      await p.exited;
      await Deno.remove(p.dir, { recursive: true });
    }
  },
});

Deno.test("a forced stop (second signal) writes the access log's last lines and removes the admin socket", async () => {
  const p = await startProc("ACCESS_LOG=vento.log\nSHUTDOWN_TIMEOUT_MS=60000\n", undefined, true);
  let holder: RawClient | null = null;
  try {
    const c = await RawClient.connect(p.port);
    const n = 50;
    for (let i = 0; i < n; i++) {
      await c.send(`GET /?${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.equal((await c.read()).status, 200);
    }
    c.conn.close();
    // A download the client does not read keeps the graceful shutdown waiting: only the second signal
    // ends it.
    holder = await RawClient.connect(p.port);
    await holder.send("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n");
    // The answer has started (so the connection is active), and is then left unread.
    assert.ok((await holder.conn.read(new Uint8Array(1024)) ?? 0) > 0);
    p.child.kill("SIGTERM");
    await until("the graceful shutdown started", () => p.out.some((l) => /shutting down/.test(l)));
    p.child.kill("SIGTERM");
    const status = await p.exited;
    assert.equal(status.code, 1, [...p.out, ...p.err].join("\n"));
    const log = await Deno.readTextFile(`${p.dir}/vento.log`);
    assert.equal(
      log.split("\n").filter((l) => l.includes('"GET /?')).length,
      n,
      "every answered request is logged",
    );
    await assert.rejects(
      () => Deno.lstat(`${p.dir}/vento.sock`),
      Deno.errors.NotFound,
      "the admin socket is gone",
    );
  } finally {
    holder?.conn.close();
    try {
      p.child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await p.exited;
    await Deno.remove(p.dir, { recursive: true });
  }
});

Deno.test("an access log on a full device: every line is counted as dropped, and said once", async () => {
  // /dev/full fails every write with ENOSPC, as a full file system does.
  const s = await startTestServer({ accessLog: "/dev/full" });
  try {
    for (let i = 0; i < 20; i++) {
      assert.equal(
        (await request(s.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")).status,
        200,
      );
    }
    await until("the lines were tried and dropped", () => s.vento.stats.accessLogDropped === 20);
    const lines = s.errors.filter((l) => /^access log: /.test(l));
    assert.equal(lines.length, 1, s.errors.join("\n"));
    assert.match(lines[0], /dropping lines \(writing failed: No space left on device/);
  } finally {
    await s.stop();
  }
});
