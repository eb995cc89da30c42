/**
 * End-to-end tests of the access log against the real server: JSON lines (every field, hostile header
 * bytes, streamed bodies logged with the bytes sent, requests that never parsed), Combined lines, and
 * both read by GoAccess when it is installed (`apt-get install goaccess`; skipped, saying so, if not).
 */

import assert from "node:assert/strict";
import type { Config } from "../../src/config/config.ts";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { startTestServer } from "../_helpers/server.ts";

const BIG = "x".repeat(300 * 1024);
const FILES = { "index.html": "<h1>home</h1>\n", "big.bin": BIG };

/** Runs `traffic` against a server logging to a temp file in `format`, then returns the log's lines. */
async function logOf(
  format: Config["accessLogFormat"],
  traffic: (port: number) => Promise<void>,
): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "vento-log-e2e-" });
  try {
    const s = await startTestServer({ accessLog: `${dir}/access.log`, accessLogFormat: format }, FILES);
    try {
      await traffic(s.port);
    } finally {
      await s.stop(); // closes the log after writing every line
    }
    const text = await Deno.readTextFile(`${dir}/access.log`);
    assert.ok(text.endsWith("\n"));
    return text.slice(0, -1).split("\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function traffic(port: number): Promise<void> {
  await request(
    port,
    'GET /index.html?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: evil"}\\ \xc3\xa9 \xff\r\nReferer: http://r.test/"x\r\n\r\n',
  );
  await request(port, "GET /missing HTTP/1.1\r\nHost: example.test\r\n\r\n");
  await request(port, "HEAD /big.bin HTTP/1.0\r\nHost: example.test\r\n\r\n", "HEAD");
  await request(port, "GET /big.bin HTTP/1.1\r\nHost: example.test\r\n\r\n");
  const bad = await RawClient.connect(port);
  try {
    await bad.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert.equal((await bad.read()).status, 400);
  } finally {
    bad.close();
  }
}

Deno.test("ACCESS_LOG_FORMAT=json writes one parseable object per response with every field", async () => {
  const lines = await logOf("json", traffic);
  assert.equal(lines.length, 5, lines.join("\n"));
  const [page, missing, head, big, bad] = lines.map((l) => {
    assert.match(l, /^[\x20-\x7e]+$/, "printable ASCII only");
    return JSON.parse(l);
  });
  assert.deepEqual(Object.keys(page), [
    "time",
    "remote",
    "method",
    "target",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "host",
    "referer",
    "user_agent",
    "conn",
    "worker",
  ]);
  assert.match(page.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(page.time) - Date.now()) < 60_000);
  assert.equal(page.remote, "127.0.0.1");
  assert.equal(page.method, "GET");
  assert.equal(page.target, "/index.html?q=1");
  assert.equal(page.protocol, "HTTP/1.1");
  assert.equal(page.status, 200);
  assert.equal(page.bytes, 14);
  assert.equal(typeof page.duration_ms, "number");
  assert.ok(page.duration_ms >= 0 && page.duration_ms < 10_000);
  assert.equal(page.host, "example.test");
  assert.equal(page.referer, 'http://r.test/"x');
  // Not valid UTF-8 as a whole (the \xff), so each byte is kept as its Latin-1 char.
  assert.equal(page.user_agent, 'evil"}\\ \u00c3\u00a9 \u00ff');
  assert.equal(typeof page.conn, "number");
  assert.equal(page.worker, 0);
  assert.equal(missing.status, 404);
  assert.equal(missing.referer, "");
  assert.equal(head.method, "HEAD");
  assert.equal(head.protocol, "HTTP/1.0");
  assert.equal(head.bytes, 0);
  assert.equal(big.bytes, BIG.length, "a streamed body is logged with the bytes sent");
  assert.equal(bad.status, 400);
  assert.equal(bad.target, "-", "a request that never parsed");
  assert.notEqual(
    new Set([page.conn, missing.conn, big.conn, bad.conn]).size,
    1,
    "connections are told apart",
  );
});

Deno.test("jq reads the JSON log as docs/site.md shows (skipped without jq)", async () => {
  let jq = false;
  try {
    jq = (await new Deno.Command("jq", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    // not installed
  }
  if (!jq) {
    console.log("skipped: jq is not installed");
    return;
  }
  const lines = await logOf("json", traffic);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vento.log`, lines.join("\n") + "\n");
    const out = await new Deno.Command("jq", {
      args: ["-r", "select(.status >= 400) | .target", "vento.log"],
      cwd: dir,
      stdout: "piped",
    }).output();
    assert.ok(out.success);
    assert.equal(new TextDecoder().decode(out.stdout), "/missing\n-\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACCESS_LOG_FORMAT=combined keeps the Combined Log Format, escaped", async () => {
  const lines = await logOf("combined", traffic);
  assert.equal(lines.length, 5);
  assert.match(
    lines[0],
    /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET \/index\.html\?q=1 HTTP\/1\.1" 200 14 "http:\/\/r\.test\/\\"x" "evil\\"}\\\\ \\xC3\\xA9 \\xFF"$/,
  );
  assert.match(lines[3], / "GET \/big\.bin HTTP\/1\.1" 200 307200 /);
});

async function goaccessAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("goaccess", { args: ["--version"], stdout: "null", stderr: "null" })
      .output())
      .success;
  } catch {
    return false;
  }
}

/**
 * The GoAccess `--log-format` for Vento's JSON lines (as docs/site.md shows it). Method and protocol are
 * skipped (`%^`): GoAccess refuses a line whose method is not a real one, and a request that never parsed
 * has none.
 */
const GOACCESS_JSON_FORMAT = '{"time":"%dT%t.%^","remote":"%h","method":"%^","target":"%U","protocol":"%^",' +
  '"status":"%s","bytes":"%b","duration_ms":"%L","host":"%v","referer":"%R","user_agent":"%u"}';

Deno.test("GoAccess reads both formats: every request valid, none failed", async (t) => {
  if (!(await goaccessAvailable())) {
    console.log("skipped: goaccess is not installed (apt-get install goaccess)");
    return;
  }
  for (const format of ["json", "combined"] as const) {
    await t.step(format, async () => {
      const lines = await logOf(format, traffic);
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeTextFile(`${dir}/access.log`, lines.join("\n") + "\n");
        const args = format === "json"
          ? [`--log-format=${GOACCESS_JSON_FORMAT}`, "--date-format=%Y-%m-%d", "--time-format=%H:%M:%S"]
          : ["--log-format=COMBINED"];
        const out = await new Deno.Command("goaccess", {
          args: [`${dir}/access.log`, ...args, "-o", `${dir}/report.json`],
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
        assert.equal(report.general.total_requests, 5);
        assert.equal(report.general.failed_requests, 0);
        const codes = report.status_codes.data.map((d: { data: string }) => d.data).sort();
        assert.deepEqual(codes, ["2xx Success", "4xx Client Errors"]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});
