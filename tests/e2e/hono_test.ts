/**
 * Real use: a small Hono app (tests/e2e/fixtures/hono_app.ts) behind Vento, and the same module under
 * `deno serve`, asked the same raw requests: the answers must match byte for byte where HTTP allows
 * (status line, every header the app made, the body, and the framing kind), differing only in what each
 * server adds itself (Date, Server, Connection). A slow reader of a large stream shows backpressure
 * reaching the app's stream.
 */

import assert from "node:assert/strict";
import { freePort, RawClient, type RawResponse, request } from "../_helpers/raw_client.ts";
import { startTestServer } from "../_helpers/server.ts";
import { BIG_CHUNK_BYTES, BIG_CHUNKS } from "./fixtures/hono_app.ts";

const REPO_ROOT = decodeURIComponent(new URL("../..", import.meta.url).pathname).replace(/\/$/, "");
const APP_PATH = `${REPO_ROOT}/tests/e2e/fixtures/hono_app.ts`;

/** Headers each server adds on its own, outside what the app decides. */
const SERVER_HEADERS = new Set(["date", "server", "x-content-type-options", "connection", "keep-alive"]);

/** The requests both servers answer, each on its own connection. */
const REQUESTS: [name: string, raw: string, method?: string][] = [
  ["json", "GET /api/hello HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["params", "GET /api/users/42?q=a%20b HTTP/1.1\r\nHost: t\r\n\r\n"],
  [
    "json body",
    'POST /api/users HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/1\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"name":"ada"}'
      .replace("13", "14"),
  ],
  [
    "chunked json body",
    "POST /api/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
    '7\r\n{"a":1,\r\n6\r\n"b":2}\r\n0\r\n\r\n',
  ],
  ["stream", "GET /api/stream HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["thrown error", "GET /api/boom HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["redirect", "GET /api/redirect HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["not found", "GET /api/nothing HTTP/1.1\r\nHost: t\r\n\r\n"],
  ["HEAD", "HEAD /api/hello HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD"],
];

async function waitForPort(port: number, child: Deno.ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill();
  throw new Error("deno serve did not start");
}

/** What the app decided: status line, its headers in order, the body, and how the body was framed. */
function appPart(r: RawResponse): string {
  const headers = [...r.headers].filter(([n]) =>
    !SERVER_HEADERS.has(n) && n !== "content-length" &&
    n !== "transfer-encoding"
  );
  const framing = r.headers.has("content-length")
    ? `length ${r.headers.get("content-length")}`
    : r.headers.get("transfer-encoding") ?? "none";
  return JSON.stringify({ status: r.statusLine, headers: headers.sort(), framing, body: r.text });
}

Deno.test("a Hono app answers the same behind Vento as under deno serve", async () => {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["serve", "--quiet", "--allow-net", "--host", "127.0.0.1", "--port", String(port), APP_PATH],
    cwd: REPO_ROOT,
    stdout: "null",
    stderr: "null",
  }).spawn();
  const s = await startTestServer({ app: APP_PATH, appPaths: ["/api/"] });
  try {
    await waitForPort(port, child);
    for (const [name, raw, method] of REQUESTS) {
      const viaVento = await request(s.port, raw, method);
      const viaDeno = await request(port, raw, method);
      assert.equal(appPart(viaVento), appPart(viaDeno), `${name}: Vento and deno serve differ`);
    }
    // Spot checks that the comparison compared something real.
    const json = await request(s.port, REQUESTS[0][1]);
    assert.equal(json.text, '{"hello":"world"}');
    const created = await request(s.port, REQUESTS[2][1]);
    assert.equal(created.status, 201);
    assert.equal(created.text, '{"created":{"name":"ada"},"agent":"probe/1"}');
    assert.equal(created.headers.get("x-app"), "hono");
    const streamed = await request(s.port, REQUESTS[4][1]);
    assert.equal(streamed.headers.get("transfer-encoding"), "chunked");
    assert.equal(streamed.text, "tick 0\ntick 1\ntick 2\n");
    assert.equal((await request(s.port, REQUESTS[5][1])).text, "error: boom");
  } finally {
    child.kill();
    await child.status;
    await s.stop();
  }
  assert.deepEqual(s.errors, []);
});

Deno.test("a slow reader of a Hono stream holds the app back (backpressure), then gets every byte", async () => {
  const produced = (globalThis as unknown as { __honoProduced: { chunks: number } }).__honoProduced ??= {
    chunks: 0,
  };
  const s = await startTestServer({ app: APP_PATH, appPaths: ["/api/"] });
  const c = await RawClient.connect(s.port);
  try {
    await c.send("GET /api/big HTTP/1.1\r\nHost: t\r\n\r\n");
    // The client reads nothing yet: kernel buffers fill, the connection's write waits, and the app's
    // stream is no longer pulled. Wait until production stops growing.
    let before = -1;
    for (let i = 0; i < 100 && before !== produced.chunks; i++) {
      before = produced.chunks;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(produced.chunks > 0);
    assert.ok(
      produced.chunks < BIG_CHUNKS / 2,
      `the app produced ${produced.chunks} chunks for a stalled reader`,
    );
    const r = await c.read();
    assert.equal(r.status, 200);
    assert.equal(r.body.length, BIG_CHUNKS * BIG_CHUNK_BYTES);
    assert.ok(r.body.every((b) => b === 0x61));
    assert.equal(produced.chunks, BIG_CHUNKS);
  } finally {
    c.close();
    await s.stop();
  }
});
