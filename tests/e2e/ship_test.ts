/**
 * The shipped artefacts, as an operator runs them: `deno task bundle` builds dist/vento.js and
 * dist/vento-admin.js, each executable through its `#!/usr/bin/env -S deno run …` line with the narrow
 * permissions (never -A); the server bundle serves a file and the admin bundle answers `stats` from it;
 * the permission boundary really holds (a log outside the working directory is refused by Deno); the
 * bundle alone, copied into an empty folder, runs WORKERS=2 under those same permissions (its worker
 * threads run the bundle's own text, so no second file and no read access to the bundle are needed).
 * `deno task compile` gets the same smoke test when Deno's compile runtime (denort) can be had: it is
 * downloaded on first use, which machines without Internet access cannot do, so that test then reports
 * itself ignored with the reason in its name.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { splitConnId } from "../../src/cluster/protocol.ts";
import { RawClient, request } from "../_helpers/raw_client.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
const DIST = `${REPO}/dist`;

/** The permission flags every artefact carries: the contract docs/operations.md documents. */
const SERVER_PERMS = "--allow-net --allow-read=. --allow-write=vento.log,vento.sock";
const ADMIN_PERMS = "--allow-net --allow-read=. --allow-write=vento.sock";
/**
 * Not a permission: WORKERS > 1 binds with SO_REUSEPORT, still an unstable API in Deno 2.9, and a bundle
 * run outside the repo has no deno.json to enable it (`"unstable": ["net"]`).
 */
const SERVER_UNSTABLE = "--unstable-net";
/** How long the compile probe may take before we call the runtime unavailable. */
const COMPILE_PROBE_TIMEOUT_MS = 20_000;
/** How long a built server may take to print its `listening on` line. */
const START_TIMEOUT_MS = 10_000;
/** How long the admin view may take to list every connection of the WORKERS=2 test. */
const CONNS_TIMEOUT_MS = 15_000;
/** Keep-alive connections the WORKERS=2 test opens: the kernel hashes each to a worker, 2^-15 odds of one. */
const SPREAD_CONNS = 16;

const decoder = new TextDecoder();

async function run(
  cmd: string,
  args: string[],
  cwd: string,
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/**
 * Whether `deno compile` can produce a binary here: compiles a one-line program into a temp folder. It
 * fails fast (DNS) when the runtime is neither cached nor downloadable.
 */
async function compileAvailable(): Promise<boolean> {
  const dir = await Deno.makeTempDir({ prefix: "vento-compile-probe-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, "console.log('ok');\n");
    const r = await run(
      Deno.execPath(),
      ["compile", "--no-config", "-o", `${dir}/probe`, `${dir}/probe.ts`],
      dir,
      COMPILE_PROBE_TIMEOUT_MS,
    );
    return r.code === 0;
  } catch {
    return false;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CAN_COMPILE = await compileAvailable();

/** A site folder laid out as docs/operations.md says: vento.conf, www/, and the log and socket beside them. */
async function tempSite(extraConf = ""): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vento-ship-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<!doctype html><h1>shipped</h1>\n");
  await Deno.writeTextFile(`${dir}/www/data.txt`, "payload from the site folder\n");
  await Deno.writeTextFile(
    `${dir}/vento.conf`,
    `PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nACCESS_LOG=vento.log\nADMIN_SOCKET=vento.sock\n${extraConf}`,
  );
  return dir;
}

/** Reads a child's stdout until `listening on …:PORT/`; returns the port and a drain for the rest. */
async function waitForPort(child: Deno.ChildProcess): Promise<{ port: number; rest: Promise<string> }> {
  const reader = child.stdout.getReader();
  let seen = "";
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(seen);
    if (m !== null) {
      const rest = (async () => {
        let tail = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return seen + tail;
          tail += decoder.decode(value);
        }
      })();
      return { port: Number(m[1]), rest };
    }
    if (Date.now() > deadline) throw new Error(`server did not start: ${seen}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening: ${seen}`);
    seen += decoder.decode(value);
  }
}

/** GET over raw TCP with `Connection: close`; answers the status line and body. */
async function get(port: number, path: string): Promise<{ statusLine: string; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`),
    );
    let text = "";
    const buf = new Uint8Array(8192);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += decoder.decode(buf.subarray(0, n));
    }
    const end = text.indexOf("\r\n\r\n");
    return { statusLine: text.slice(0, text.indexOf("\r\n")), body: text.slice(end + 4) };
  } finally {
    conn.close();
  }
}

/**
 * The smoke test every artefact must pass: start the server from a site folder, serve a file, ask the
 * admin tool for `stats` (it reads ADMIN_SOCKET from vento.conf in the same folder), SIGTERM → exit 0.
 */
async function smoke(server: string, admin: string): Promise<void> {
  const site = await tempSite();
  const child = new Deno.Command(server, {
    cwd: site,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = child.stderr.text();
  let exited = false;
  try {
    const { port, rest } = await waitForPort(child);
    const page = await get(port, "/data.txt");
    assert.equal(page.statusLine, "HTTP/1.1 200 OK");
    assert.equal(page.body, "payload from the site folder\n");
    assert.equal((await get(port, "/missing")).statusLine, "HTTP/1.1 404 Not Found");

    const stats = await run(admin, ["--json", "stats"], site);
    assert.equal(stats.code, 0, stats.stderr);
    const snapshot = JSON.parse(stats.stdout).snapshot;
    assert.equal(snapshot.accepted, 2, `stats: ${stats.stdout}`);
    assert.equal(snapshot.requests, 2, `stats: ${stats.stdout}`);

    child.kill("SIGTERM");
    const status = await child.status;
    exited = true;
    assert.equal(status.code, 0, await stderr);
    assert.match(await rest, /vento: stopped/);
    // The access log was written where the narrow --allow-write lets it be.
    assert.match(await Deno.readTextFile(`${site}/vento.log`), /"GET \/data\.txt HTTP\/1\.1" 200/);
  } finally {
    if (!exited) {
      child.kill("SIGKILL");
      await child.status;
    }
    await stderr.catch(() => "");
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(site, { recursive: true });
  }
}

let bundled: Promise<{ code: number; stdout: string; stderr: string }> | null = null;
/** Runs `deno task bundle` once per test file (so any one test can also run on its own). */
async function ensureBundles(): Promise<void> {
  bundled ??= run(Deno.execPath(), ["task", "bundle"], REPO);
  const r = await bundled;
  assert.equal(r.code, 0, r.stderr);
}

Deno.test("deno task bundle builds executable bundles whose #! line carries the narrow permissions", async () => {
  await ensureBundles();
  for (
    const [file, perms] of [["vento.js", `${SERVER_UNSTABLE} ${SERVER_PERMS}`], [
      "vento-admin.js",
      ADMIN_PERMS,
    ]]
  ) {
    const info = await Deno.stat(`${DIST}/${file}`);
    assert.ok(((info.mode ?? 0) & 0o111) !== 0, `${file} is executable`);
    const first = (await Deno.readTextFile(`${DIST}/${file}`)).split("\n", 1)[0];
    assert.equal(first, `#!/usr/bin/env -S deno run ${perms}`);
    assert.doesNotMatch(first, /-A\b|--allow-all|--allow-env|--allow-run|--allow-ffi|--allow-sys/);
  }
});

Deno.test("the bundled server serves a file and the bundled admin answers stats from it", async () => {
  await ensureBundles();
  await smoke(`${DIST}/vento.js`, `${DIST}/vento-admin.js`);
});

Deno.test("the bundled server's --check validates a config without binding (0 ok, 2 invalid)", async () => {
  await ensureBundles();
  const site = await tempSite();
  try {
    const ok = await run(`${DIST}/vento.js`, ["--check"], site);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /vento\.conf: OK/);
    await Deno.writeTextFile(`${site}/vento.conf`, "PORT=http\n", { append: true });
    const bad = await run(`${DIST}/vento.js`, ["--check"], site);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /vento\.conf:6: PORT is already set on line 1/);
  } finally {
    await Deno.remove(site, { recursive: true });
  }
});

Deno.test("the bundle's permissions refuse an access log outside the working directory", async () => {
  await ensureBundles();
  const outside = await Deno.makeTempDir({ prefix: "vento-ship-outside-" });
  const site = await tempSite();
  try {
    // A conf may ask for anything; Deno's --allow-write=vento.log,vento.sock is the second wall.
    await Deno.writeTextFile(
      `${site}/vento.conf`,
      `PORT=0\nHOST=127.0.0.1\nDOCUMENT_ROOT=www\nACCESS_LOG=${outside}/stolen.log\nADMIN_SOCKET=off\n`,
    );
    const r = await run(`${DIST}/vento.js`, [], site, 15_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /write access/i);
    assert.deepEqual([...Deno.readDirSync(outside)], []);
  } finally {
    await Deno.remove(site, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("the bundle alone runs WORKERS=2 under its #! permissions: both workers serve, SIGTERM exits 0", async () => {
  await ensureBundles();
  // Only the bundle, in a folder of its own: a worker needing any second file would fail here.
  const bin = await Deno.makeTempDir({ prefix: "vento-ship-bin-" });
  await Deno.copyFile(`${DIST}/vento.js`, `${bin}/vento.js`);
  await Deno.chmod(`${bin}/vento.js`, 0o755);
  const site = await tempSite("WORKERS=2\n");
  // Bytes of every value, large enough to arrive in several reads: the body must come back byte-exact.
  const blob = new Uint8Array(300_000).map((_, i) => (i * 7919 + (i >> 8)) & 0xff);
  await Deno.writeFile(`${site}/www/blob.bin`, blob);
  const child = new Deno.Command(`${bin}/vento.js`, {
    cwd: site,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = child.stderr.text();
  const clients: RawClient[] = [];
  let exited = false;
  try {
    const { port, rest } = await waitForPort(child).catch(async (e: Error) => {
      // A start that failed (a worker refused a permission, say) is explained on stderr.
      throw /exited/.test(e.message) ? new Error(`${e.message}\n${await stderr}`) : e;
    });

    // Keep-alive connections answered once each, so each is registered by the worker that accepted it.
    for (let i = 0; i < SPREAD_CONNS; i++) {
      const c = await RawClient.connect(port);
      clients.push(c);
      await c.send("GET /data.txt HTTP/1.1\r\nHost: t\r\n\r\n");
      const r = await c.read();
      assert.equal(r.status, 200);
      assert.equal(r.text, "payload from the site folder\n");
    }
    // The admin view's connection ids carry the worker index; lists ride on the next worker reports.
    let perWorker = new Map<number, number>();
    const deadline = Date.now() + CONNS_TIMEOUT_MS;
    for (;;) {
      const conns = await run(`${DIST}/vento-admin.js`, ["--json", "conns"], site);
      assert.equal(conns.code, 0, conns.stderr);
      perWorker = new Map();
      for (const c of JSON.parse(conns.stdout) as { id: number }[]) {
        const w = splitConnId(c.id).index;
        perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
      }
      const total = [...perWorker.values()].reduce((a, b) => a + b, 0);
      if (total === SPREAD_CONNS && perWorker.size === 2) break;
      if (Date.now() > deadline) throw new Error(`conns per worker: ${JSON.stringify([...perWorker])}`);
    }
    assert.deepEqual([...perWorker.keys()].sort(), [0, 1]);

    const big = await request(port, "GET /blob.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert.equal(big.status, 200);
    assert.equal(big.headers.get("content-length"), String(blob.length));
    assert.deepEqual(big.body, blob);
    for (const c of clients) c.close();

    child.kill("SIGTERM");
    const status = await child.status;
    exited = true;
    const errors = await stderr;
    assert.equal(status.code, 0, errors);
    // Nothing asked for a permission the #! line does not grant, and no worker failed.
    assert.equal(errors, "");
    const out = await rest;
    assert.match(out, /listening on http:\/\/127\.0\.0\.1:\d+\/ serving \S+ with 2 worker threads/);
    assert.match(out, /vento: stopped/);
    // Every worker's listener is gone: the port can be bound again.
    const again = Deno.listen({ hostname: "127.0.0.1", port });
    again.close();
  } finally {
    for (const c of clients) c.close();
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // it exited on its own (a failed start): its status and stderr are collected below
      }
      await child.status;
    }
    await stderr.catch(() => "");
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(site, { recursive: true });
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test({
  name: CAN_COMPILE
    ? "deno task compile builds dist/vento and dist/vento-admin that pass the same smoke test"
    : "deno task compile smoke test (ignored: deno compile cannot get its runtime, denort, on this machine)",
  ignore: !CAN_COMPILE,
  fn: async () => {
    const r = await run(Deno.execPath(), ["task", "compile"], REPO, 120_000);
    assert.equal(r.code, 0, r.stderr);
    await smoke(`${DIST}/vento`, `${DIST}/vento-admin`);
  },
});
