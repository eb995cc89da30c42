/**
 * `vento-admin` as a user runs it: `deno run -A cli/main.ts …` in a subprocess against a
 * fake-backend AdminServer in this process. Checks output, `--json` (failures included), the exit codes
 * (0 ok, 1 refused, 2 usage, 3 no server, 4 permission, 5 no socket to use) and socket discovery through
 * vento.conf.
 */

import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import { AdminServer } from "../../src/admin/server.ts";
import { systemClock } from "../../src/core/clock.ts";
import { FakeBackend, tempSocket } from "../admin/fake_backend.ts";

const MAIN = fromFileUrl(new URL("../../cli/main.ts", import.meta.url));
const ROOT = fromFileUrl(new URL("../../", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], cwd = ROOT): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `--config=${ROOT}deno.json`, MAIN, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function withServer(
  fn: (path: string, backend: FakeBackend, dir: string) => Promise<void>,
): Promise<void> {
  const { dir, path } = await tempSocket();
  const backend = new FakeBackend(systemClock);
  const server = await AdminServer.start(path, backend, systemClock);
  try {
    await fn(path, backend, dir);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("vento-admin stats prints an aligned table", async () => {
  await withServer(async (path) => {
    const r = await cli(["--socket", path, "stats"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^server +Vento 0\.1\.0 {2}pid 4242 {2}up 1h02m$/m);
    assert.match(r.stdout, /^connections +open 3\/4096 {2}active 2 {2}idle 1$/m);
    assert.match(r.stdout, /^responses +1xx 0 {2}2xx 950 {2}3xx 20 {2}4xx 25 {2}5xx 5$/m);
    // Every value starts in the same column.
    const starts = r.stdout.trimEnd().split("\n").map((l) => l.search(/ {2}\S/) + 2);
    assert.equal(new Set(starts).size, 1, r.stdout);
  });
});

Deno.test("vento-admin --json prints the raw data", async () => {
  await withServer(async (path) => {
    const r = await cli(["--socket", path, "--json", "conns"]);
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout);
    assert.deepEqual(data.map((c: { id: number }) => c.id), [1, 2, 7]);
    const s = JSON.parse((await cli(["--json", "--socket", path, "stats"])).stdout);
    assert.equal(s.maxConns, 4096);
  });
});

Deno.test("vento-admin conns, clients and bans print tables with headers", async () => {
  await withServer(async (path) => {
    const conns = await cli(["--socket", path, "conns"]);
    assert.match(conns.stdout, /^ID {2}REMOTE +STATE +AGE +REQS +IN +OUT {2}REQUEST$/m);
    assert.match(conns.stdout, /^ 7 {2}\[2001:db8::1\]:443 +new /m);
    const clients = await cli(["--socket", path, "clients", "--limit", "2"]);
    assert.equal(clients.stdout.trimEnd().split("\n").length, 3);
    const bans = await cli(["--socket", path, "bans"]);
    assert.match(bans.stdout, /^192\.0\.2\.66 +9m00s +2 +flood$/m);
  });
});

Deno.test("vento-admin ban, unban and kick exit 0 on success and 1 when the server says no", async () => {
  await withServer(async (path, backend) => {
    const ban = await cli(["--socket", path, "ban", "203.0.113.0/24", "--for", "2h", "--reason", "scraper"]);
    assert.equal(ban.code, 0, ban.stderr);
    assert.equal(ban.stdout, "banned 203.0.113.0/24 for 2h00m\n");
    assert.deepEqual(backend.recorded.bans, [{ target: "203.0.113.0/24", ms: 7_200_000, reason: "scraper" }]);
    const refused = await cli(["--socket", path, "ban", "127.0.0.1"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /REFUSED: 127\.0\.0\.1 is on the allowlist/);
    assert.equal((await cli(["--socket", path, "unban", "203.0.113.0/24"])).code, 0);
    const missing = await cli(["--socket", path, "unban", "203.0.113.0/24"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND/);
    assert.equal((await cli(["--socket", path, "kick", "2"])).code, 0);
    assert.equal((await cli(["--socket", path, "kick", "99"])).code, 1);
    assert.deepEqual(backend.recorded.kicks, [2]);
  });
});

Deno.test("vento-admin exits 2 on usage errors", async () => {
  await withServer(async (path, backend) => {
    for (
      const args of [
        ["frobnicate"],
        ["ban"],
        ["ban", "not-an-ip"],
        ["ban", "10.0.0.1", "--for", "soon"],
        ["kick", "abc"],
        ["stats", "--bogus"],
        [],
      ]
    ) {
      const r = await cli(["--socket", path, ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.notEqual(r.stderr, "");
    }
    assert.deepEqual(backend.recorded.bans, []);
    assert.equal((await cli(["--help"])).code, 0);
  });
});

Deno.test("vento-admin says clearly when no server is listening and exits 3 (JSON under --json)", async () => {
  const { dir, path } = await tempSocket();
  try {
    const r = await cli(["--socket", path, "stats"]);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, "");
    assert.ok(r.stderr.includes(`no Vento server is listening on ${path}`), r.stderr);
    assert.ok(r.stderr.includes("deno task start"), r.stderr);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1);
    const j = await cli(["--socket", path, "--json", "stats"]);
    assert.equal(j.code, 3);
    assert.equal(j.stderr, "");
    const parsed = JSON.parse(j.stdout);
    assert.equal(parsed.ok, false);
    assert.equal(parsed.error.code, "NO_SERVER");
    assert.equal(parsed.error.exitCode, 3);
    assert.match(parsed.error.message, /no Vento server is listening/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vento-admin reports a permission problem as one: the OS's (exit 4) and Deno's own", async () => {
  await withServer(async (path) => {
    // Deno's permissions, as the bundle's #! line grants them: the socket lies outside them.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        `--config=${ROOT}deno.json`,
        "--allow-read=.",
        MAIN,
        "--socket",
        path,
        "stats",
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 4, stderr);
    assert.match(stderr, /this vento-admin may not use .*Deno permissions do not cover that path/);
    assert.doesNotMatch(stderr, /no Vento server/);
    if (Deno.uid() !== 0) {
      await Deno.chmod(path, 0o000);
      const r = await cli(["--socket", path, "stats"]);
      assert.equal(r.code, 4);
      assert.match(r.stderr, /permission denied on .*run vento-admin as the user Vento runs as/);
    }
  });
});

Deno.test("vento-admin --version, exit codes in --help, durations in the documented units", async () => {
  const v = await cli(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^vento-admin \d+\.\d+\.\d+/);
  const help = await cli(["--help"]);
  for (const code of [0, 1, 2, 3, 4, 5]) assert.match(help.stdout, new RegExp(`^  ${code}  \\S`, "m"));
  const ban = await cli(["ban", "--help"]);
  assert.match(ban.stdout, /--for <duration> [^]*\(default: 10m\)/);
  assert.doesNotMatch(ban.stdout, /600000/);
  const top = await cli(["top", "--help"]);
  assert.match(top.stdout, /--interval <duration> [^]*\(default: 1s\)/);
  assert.doesNotMatch(top.stdout, /\b1000\b/);
  const usage = await cli(["--json", "frobnicate"]);
  assert.equal(usage.code, 2);
  assert.equal(JSON.parse(usage.stdout).error.code, "USAGE");
});

Deno.test("vento-admin stats --json labels the responses by status class", async () => {
  await withServer(async (path) => {
    const s = JSON.parse((await cli(["--json", "--socket", path, "stats"])).stdout);
    assert.deepEqual(s.snapshot.responses, { "1xx": 0, "2xx": 950, "3xx": 20, "4xx": 25, "5xx": 5 });
  });
});

Deno.test("vento-admin finds the socket through ADMIN_SOCKET in vento.conf, relative to its folder", async () => {
  await withServer(async (_path, _backend, dir) => {
    await Deno.writeTextFile(`${dir}/vento.conf`, "PORT=8080\nADMIN_SOCKET=vento.sock\n");
    // From the conf's folder with the default ./vento.conf…
    const here = await cli(["--json", "bans"], dir);
    assert.equal(here.code, 0, here.stderr);
    // …and from elsewhere with --config.
    const there = await cli(["--config", `${dir}/vento.conf`, "--json", "bans"]);
    assert.equal(there.code, 0, there.stderr);
    // A broken config does not stop it: only ADMIN_SOCKET is read (quoted, with a comment, as the server
    // reads it), exactly when an operator needs the tool.
    await Deno.writeTextFile(
      `${dir}/vento.conf`,
      'PROT=8080\nADMIN_SOCKET="vento.sock"  # here\nMAX_CONNS=0\n',
    );
    const broken = await cli(["--json", "bans"], dir);
    assert.equal(broken.code, 0, broken.stderr);
    await Deno.writeTextFile(`${dir}/vento.conf`, "PORT=8080\nADMIN_SOCKET=off\n");
    const off = await cli(["bans"], dir);
    assert.equal(off.code, 5);
    assert.match(off.stderr, /ADMIN_SOCKET=off.*pass --socket PATH/);
    const missing = await cli(["--config", `${dir}/nope.conf`, "bans"]);
    assert.equal(missing.code, 5);
    assert.match(missing.stderr, /cannot read .*nope\.conf \(no such file\)/);
  });
});

Deno.test("vento-admin reload, drain and metrics reach the backend", async () => {
  await withServer(async (path, backend) => {
    const reload = await cli(["--socket", path, "reload"]);
    assert.equal(reload.code, 0);
    assert.match(reload.stdout, /reloaded: applied REQUEST_RATE_PER_SEC\nneeds a restart to apply: PORT/);
    backend.reloadResult = { errors: ["vento.conf:2: MAX_CONNS must be between 1 and 1000000, got 0"] };
    const bad = await cli(["--socket", path, "reload"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /MAX_CONNS must be between/);
    assert.equal((await cli(["--socket", path, "drain"])).code, 0);
    assert.equal(backend.recorded.drains, 1);
    const m = await cli(["--socket", path, "metrics"]);
    assert.match(m.stdout, /^vento_requests_total \d+$/m);
  });
});

Deno.test("vento-admin top --once prints one plain frame", async () => {
  await withServer(async (path) => {
    const r = await cli(["--socket", path, "top", "--once"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes("\x1b"), "escape codes in a plain frame");
    assert.match(r.stdout, /^Vento 0\.1\.0 +up 1h02m/);
    assert.match(r.stdout, /203\.0\.113\.9:51234/);
    assert.match(r.stdout, /─ Bans 1 /);
  });
});
