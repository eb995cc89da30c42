/**
 * End-to-end tests of the site features against the real server (raw bytes and curl): the health and
 * metrics probes, `ECHO=off`, and the `_headers` / `_redirects` rules.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { type Files, startTestServer, type TestServer } from "../_helpers/server.ts";
import type { Config } from "../../src/config.ts";

const H = "Host: t\r\n";

async function withServer(
  fn: (s: TestServer) => Promise<void>,
  overrides: Partial<Config> = {},
  files?: Files,
): Promise<void> {
  const s = await startTestServer(overrides, files);
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

async function curlAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("curl", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}
const HAS_CURL = await curlAvailable();

/** curl's answer: the status, the response headers (lower-cased names) and the body. */
async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", "-D", "-", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  const split = text.indexOf("\r\n\r\n");
  const headers = text.slice(0, split).toLowerCase();
  return { status: Number(headers.split(" ")[1]), headers, body: text.slice(split + 4) };
}

// --- probes ---------------------------------------------------------------------------------------

Deno.test("HEALTH_PATH and METRICS_PATH answer loopback, never cached, never in the access log", async () => {
  const dir = await Deno.makeTempDir();
  const log = `${dir}/access.log`;
  const s = await startTestServer({ healthPath: "/healthz", metricsPath: "/metrics", accessLog: log });
  try {
    const h = await request(s.port, `GET /healthz HTTP/1.1\r\n${H}\r\n`);
    assert.equal(h.status, 200);
    assert.equal(h.text, "ok\n");
    assert.equal(h.headers.get("cache-control"), "no-store");
    const m = await request(s.port, `GET /metrics?x=1 HTTP/1.1\r\n${H}\r\n`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(m.text, /^# HELP vento_uptime_seconds/);
    assert.match(m.text, /\nvento_requests_total \d+\n/);
    const head = await request(s.port, `HEAD /healthz HTTP/1.1\r\n${H}\r\n`, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    if (HAS_CURL) {
      const c = await curl([`http://127.0.0.1:${s.port}/healthz`]);
      assert.equal(c.status, 200);
      assert.equal(c.body, "ok\n");
    }
    assert.equal((await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`)).status, 200);
  } finally {
    await s.stop();
  }
  const lines = (await Deno.readTextFile(log)).trim().split("\n");
  await Deno.remove(dir, { recursive: true });
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /"GET \/ HTTP\/1\.1" 200/);
});

Deno.test("a peer outside the probe allowlist gets the ordinary path (404), not the probe", () =>
  withServer(async (s) => {
    const h = await request(s.port, `GET /healthz HTTP/1.1\r\n${H}\r\n`);
    assert.equal(h.status, 404);
    assert.match(h.text, /not here/);
    const m = await request(s.port, `GET /metrics HTTP/1.1\r\n${H}\r\n`);
    assert.equal(m.status, 404);
  }, {
    healthPath: "/healthz",
    healthAllowlist: ["192.0.2.0/24"],
    metricsPath: "/metrics",
    metricsAllowlist: ["10.0.0.0/8"],
  }));

Deno.test("HEALTH_PATH answers 503 once the server is draining", async () => {
  const s = await startTestServer({ healthPath: "/healthz" });
  const c = await RawClient.connect(s.port);
  try {
    // Half a head: the connection is busy with a request when shutdown starts, so it is answered.
    await c.send(`GET /healthz HTTP/1.1\r\n`);
    await new Promise((r) => setTimeout(r, 50));
    const stopping = s.vento.shutdown();
    await c.send(`${H}\r\n`);
    const r = await c.read();
    assert.equal(r.status, 503);
    assert.equal(r.text, "draining\n");
    assert.equal(r.headers.get("connection"), "close");
    await stopping;
  } finally {
    c.close();
    await s.stop();
  }
});

// --- ECHO=off --------------------------------------------------------------------------------------

Deno.test("ECHO=off: /api/echo is an ordinary path (POST 405, GET 404)", () =>
  withServer(async (s) => {
    const post = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`);
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD, OPTIONS");
    const get = await request(s.port, `GET /api/echo HTTP/1.1\r\n${H}\r\n`);
    assert.equal(get.status, 404);
  }, { echo: false }));

Deno.test("ECHO=on (the default) still echoes", () =>
  withServer(async (s) => {
    const post = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`);
    assert.equal(post.status, 200);
    assert.equal(post.text, "hi");
  }));
