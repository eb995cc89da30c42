/**
 * The command line as a user meets it: `deno run -A main.ts` as a subprocess in a temp working directory.
 * Config errors exit 2 naming file and line with nothing bound; the port argument overrides; SIGTERM
 * shuts down gracefully with exit 0.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { RawClient } from "../_helpers/raw_client.ts";
import { makeTestPki } from "../_helpers/pki.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

async function tempSite(conf: string | null): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vento-cli-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>cli</h1>\n");
  if (conf !== null) await Deno.writeTextFile(`${dir}/vento.conf`, conf);
  return dir;
}

async function run(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Starts the server; resolves with the port once it prints its `listening on` line. */
async function spawn(cwd: string, args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on http:\/\/\S+:(\d+)\//.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening: ${seen}`);
    seen += value;
  }
  const port = Number(/listening on http:\/\/\S+:(\d+)\//.exec(seen)![1]);
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return seen;
      seen += value;
    }
  })();
  const stderr = new Response(child.stderr).text();
  return { child, port, output: rest, stderr };
}

Deno.test("an unknown key exits 2 naming the file and line, and binds nothing", async () => {
  const dir = await tempSite("PORT=0\n# comment\nPROT=80\n");
  try {
    const r = await run(dir, []);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /vento\.conf:3: unknown key "PROT"/);
    assert.doesNotMatch(r.stdout, /listening/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad values, an out-of-range port and a missing document root exit 2 with line numbers", async () => {
  const cases: [string, RegExp][] = [
    ["PORT=70000\n", /vento\.conf:1: PORT must be between 0 and 65535/],
    ["PORT=80x\n", /vento\.conf:1: PORT must be a whole number/],
    ["PORT=0\nDOCUMENT_ROOT=nowhere\n", /vento\.conf:2: .*nowhere/],
    ["PORT=0\nHEADER_TIMEOUT_MS=-1\n", /vento\.conf:2: HEADER_TIMEOUT_MS/],
    ["just words\n", /vento\.conf:1: expected KEY=VALUE/],
  ];
  for (const [conf, want] of cases) {
    const dir = await tempSite(conf);
    try {
      const r = await run(dir, []);
      assert.equal(r.code, 2, conf);
      assert.match(r.stderr, want);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("--help, --version and a bad port argument", async () => {
  const dir = await tempSite(null);
  try {
    const help = await run(dir, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: /);
    const version = await run(dir, ["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^vento \d+\.\d+\.\d+/);
    const bad = await run(dir, ["99999"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /port must be a number/);
    const unknown = await run(dir, ["--frobnicate"]);
    assert.equal(unknown.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--check validates without binding", async () => {
  const dir = await tempSite("PORT=8080\n");
  try {
    const ok = await run(dir, ["--check"]);
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /OK/);
    await Deno.writeTextFile(`${dir}/vento.conf`, "PORT=8080\nLIMIT_MODE=maybe\n");
    const bad = await run(dir, ["--check"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /vento\.conf:2: LIMIT_MODE/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--check proves the start: log folder, key/certificate pair, port clash, root, each named", async () => {
  const pki = await makeTestPki("vento-cli-tls-");
  const other = await makeTestPki("vento-cli-tls-other-");
  const dir = await tempSite(null);
  const check = async (conf: string) => {
    await Deno.writeTextFile(`${dir}/vento.conf`, conf);
    return await run(dir, ["--check"]);
  };
  try {
    const tls = `TLS_CERT=${pki.certFile}\nTLS_KEY=${pki.keyFile}\n`;
    const ok = await check(`PORT=18091\nTLS_PORT=18092\n${tls}ACCESS_LOG=logs.txt\n`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /OK; would listen on http:\/\/\[::\]:18091\/ and https:\/\/\[::\]:18092\//);
    await assert.rejects(Deno.stat(`${dir}/logs.txt`), Deno.errors.NotFound, "the probe leaves no new file");

    const mismatch = await check(`PORT=18091\nTLS_CERT=${pki.certFile}\nTLS_KEY=${other.keyFile}\n`);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /vento\.conf:3: TLS_KEY ".*" is not the private key of TLS_CERT ".*cert/);

    const clash = await check(`PORT=18091\nTLS_PORT=18091\n${tls}`);
    assert.equal(clash.code, 2);
    assert.match(clash.stderr, /vento\.conf:2: TLS_PORT=18091 is also PORT/);

    const noFolder = await check("PORT=18091\nACCESS_LOG=missing/dir/vento.log\n");
    assert.equal(noFolder.code, 2);
    assert.match(
      noFolder.stderr,
      /vento\.conf:2: ACCESS_LOG ".*missing\/dir\/vento\.log": the folder .* does not exist/,
    );

    const badHost = await check("PORT=18091\nHOST=192.0.2.1\n");
    assert.equal(badHost.code, 2);
    assert.match(
      badHost.stderr,
      /vento\.conf:2: HOST=192\.0\.2\.1: no network interface of this machine has that address/,
    );
    assert.equal((await check("PORT=18091\nHOST=127.0.0.1\n")).code, 0);

    if (Deno.uid() !== 0) {
      // Only meaningful without root; as root the directory stays readable.
      await Deno.chmod(`${dir}/www`, 0o000);
      const unreadable = await check("PORT=18091\n");
      await Deno.chmod(`${dir}/www`, 0o755);
      assert.equal(unreadable.code, 2);
      assert.match(unreadable.stderr, /DOCUMENT_ROOT ".*www" cannot be read by this user/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await pki.remove();
    await other.remove();
  }
});

Deno.test("start errors name the setting, the value and the fix: a port in use, a foreign HOST", async () => {
  const dir = await tempSite(null);
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (blocker.addr as Deno.NetAddr).port;
    await Deno.writeTextFile(`${dir}/vento.conf`, `PORT=${port}\nHOST=127.0.0.1\n`);
    const inUse = await run(dir, []);
    assert.equal(inUse.code, 2);
    assert.match(
      inUse.stderr,
      new RegExp(`PORT=${port}: 127\\.0\\.0\\.1:${port} is already in use .*choose another PORT`),
    );
  } finally {
    blocker.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the port argument overrides the config and SIGTERM shuts down gracefully", async () => {
  const dir = await tempSite("PORT=1\nHOST=127.0.0.1\nACCESS_LOG=off\nADMIN_SOCKET=off\n");
  try {
    const s = await spawn(dir, ["0"]);
    assert.notEqual(s.port, 1);
    const c = await RawClient.connect(s.port);
    await c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const r = await c.read();
    assert.equal(r.status, 200);
    assert.match(r.text, /cli/);
    s.child.kill("SIGTERM");
    assert.ok(await c.closedWithin(3000), "idle keep-alive connection closed on shutdown");
    c.close();
    const status = await s.child.status;
    assert.equal(status.code, 0);
    assert.match(await s.output, /stopped/);
    assert.equal(await s.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("defaults apply when there is no vento.conf, and the access log is written", async () => {
  const dir = await tempSite(null);
  try {
    // No conf: port 8080 may be taken on a developer machine, so override only the port.
    const s = await spawn(dir, ["0"]);
    const c = await RawClient.connect(s.port);
    await c.send("GET /index.html HTTP/1.1\r\nHost: x\r\nUser-Agent: cli-test\r\n\r\n");
    assert.equal((await c.read()).status, 200);
    c.close();
    s.child.kill("SIGTERM");
    assert.equal((await s.child.status).code, 0);
    await s.output;
    await s.stderr;
    const log = await Deno.readTextFile(`${dir}/vento.log`);
    assert.match(log, /"GET \/index\.html HTTP\/1\.1" 200 \d+ "-" "cli-test"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
