/**
 * End-to-end tests of app endpoints (APP): the real server on port 0 runs a `deno serve`-style module
 * written to a temp folder, spoken to over raw TCP. Routing (prefixes, fallback), the Request the app
 * sees (URL, headers, remote address, a bounded streamed body, its signal), every kind of Response body
 * with its framing, HEAD, keep-alive and pipelining, errors (500), lateness (503) and reload.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../_helpers/server.ts";
import { type Config, loadConfig } from "../../src/config/config.ts";
import { startVento } from "../../src/app/vento.ts";
import { formatMetrics } from "../../src/admin/metrics.ts";

const H = "Host: t\r\n";

/** What the test app records for the test to inspect (same isolate: the module is imported here). */
interface AppEvents {
  aborted: string[];
  calls: number;
}
const events = (globalThis as unknown as { __ventoAppEvents: AppEvents }).__ventoAppEvents = {
  aborted: [],
  calls: 0,
};

const APP = `
const enc = new TextEncoder();
const ev = globalThis.__ventoAppEvents;
export default {
  async fetch(req, info) {
    const url = new URL(req.url);
    ev.calls++;
    req.signal.addEventListener("abort", () => ev.aborted.push(url.pathname));
    switch (url.pathname) {
      case "/api/json": return Response.json({ ok: true, n: 1 });
      case "/api/info": return Response.json({
        url: req.url, method: req.method, remote: info.remoteAddr.hostname,
        port: info.remoteAddr.port, headers: [...req.headers],
      });
      case "/api/bytes": return new Response(new Uint8Array([1, 2, 3]));
      case "/api/blob": return new Response(new Blob(["blob body"]), { headers: { "content-type": "text/x-blob" } });
      case "/api/null": return new Response(null, { status: 201, headers: { location: "/x" } });
      case "/api/empty": return new Response("");
      case "/api/nocontent": return new Response(null, { status: 204 });
      case "/api/stream": {
        let i = 0;
        return new Response(new ReadableStream({
          pull(c) { if (i < 3) c.enqueue(enc.encode("part " + i++ + "\\n")); else c.close(); },
        }));
      }
      case "/api/sized": {
        let i = 0;
        return new Response(new ReadableStream({
          pull(c) { if (i++ < 2) c.enqueue(enc.encode("abc")); else c.close(); },
        }), { headers: { "content-length": "6" } });
      }
      case "/api/breaks": {
        let i = 0;
        return new Response(new ReadableStream({
          pull(c) { if (i++ < 2) c.enqueue(enc.encode("first")); else c.error(new Error("stream broke")); },
        }));
      }
      case "/api/endless": {
        return new Response(new ReadableStream({
          async pull(c) { await new Promise((r) => setTimeout(r, 5)); c.enqueue(new Uint8Array(16 * 1024)); },
        }));
      }
      case "/api/hop": return new Response("x", {
        headers: { connection: "close", "transfer-encoding": "gzip", upgrade: "h2c", "x-kept": "1" },
      });
      case "/api/throw": throw new Error("thrown on purpose");
      case "/api/reject": return Promise.reject(new TypeError("rejected on purpose"));
      case "/api/notresponse": return { status: 200 };
      case "/api/slow": {
        // Late, but it stops when its signal says the answer is no longer wanted.
        await new Promise((r) => {
          const t = setTimeout(r, 400);
          req.signal.addEventListener("abort", () => { clearTimeout(t); r(); });
        });
        return new Response("late");
      }
      case "/api/echo": return new Response(req.body, { headers: { "content-type": req.headers.get("content-type") ?? "x/y" } });
      case "/api/length": return new Response(String((await req.arrayBuffer()).byteLength));
      case "/api/ignore-body": return new Response("did not read");
      case "/api/wait": {
        await new Promise((r) => req.signal.addEventListener("abort", r));
        return new Response("never sent");
      }
      default: return new Response("app " + req.method + " " + url.pathname + url.search, { status: url.pathname === "/api/missing" ? 404 : 200 });
    }
  },
};
`;

async function withApp(
  fn: (s: TestServer, appPath: string) => Promise<void>,
  overrides: Partial<Config> = {},
  source = APP,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vento-app-" });
  const appPath = `${dir}/app.js`;
  await Deno.writeTextFile(appPath, source);
  const s = await startTestServer({ app: appPath, appPaths: ["/api/"], appTimeoutMs: 5000, ...overrides });
  events.aborted = [];
  events.calls = 0;
  try {
    await fn(s, appPath);
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("app: APP_PATHS go to the app, other paths stay static", () =>
  withApp(async (s) => {
    const a = await request(s.port, `GET /api/anything?x=1 HTTP/1.1\r\n${H}\r\n`);
    assert.equal(a.status, 200);
    assert.equal(a.text, "app GET /api/anything?x=1");
    const file = await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`);
    assert.match(file.text, /hello/);
    const missing = await request(s.port, `GET /nope HTTP/1.1\r\n${H}\r\n`);
    assert.equal(missing.status, 404);
    assert.match(missing.text, /not here/);
  }));

Deno.test("app: APP_FALLBACK sends a path that matches no file to the app", () =>
  withApp(async (s) => {
    const a = await request(s.port, `GET /no/such/file HTTP/1.1\r\n${H}\r\n`);
    assert.equal(a.text, "app GET /no/such/file");
    const post = await request(s.port, `POST /elsewhere HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`);
    assert.equal(post.text, "app POST /elsewhere");
    const file = await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`);
    assert.match(file.text, /hello/);
  }, { appFallback: true }));

Deno.test("app: the Request has the absolute URL, the method, headers as received and the peer", () =>
  withApp(async (s) => {
    const r = await request(
      s.port,
      `PATCH /api/info?q=%20a HTTP/1.1\r\nHost: example.test:8080\r\nX-Custom:  spaced value \r\n` +
        `X-Dup: a\r\nX-Dup: b\r\nContent-Length: 0\r\n\r\n`,
    );
    assert.equal(r.status, 200);
    const info = JSON.parse(r.text);
    assert.equal(info.url, "http://example.test:8080/api/info?q=%20a");
    assert.equal(info.method, "PATCH");
    assert.equal(info.remote, "127.0.0.1");
    assert.ok(info.port > 0);
    assert.deepEqual(info.headers, [
      ["content-length", "0"],
      ["host", "example.test:8080"],
      ["x-custom", "spaced value"],
      ["x-dup", "a, b"],
    ]);
    // Absolute-form: the URL comes from the target's authority.
    const abs = await request(s.port, `GET http://other.test/api/info HTTP/1.1\r\nHost: other.test\r\n\r\n`);
    assert.equal(JSON.parse(abs.text).url, "http://other.test/api/info");
  }));

Deno.test("app: string, bytes, Blob, null and empty bodies get an exact Content-Length", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      const json = await c.read();
      assert.equal(json.headers.get("content-type"), "application/json");
      assert.equal(json.headers.get("content-length"), String(json.body.length));
      assert.deepEqual(JSON.parse(json.text), { ok: true, n: 1 });
      assert.equal(json.headers.get("server"), "Vento");
      await c.send(`GET /api/bytes HTTP/1.1\r\n${H}\r\n`);
      assert.deepEqual([...(await c.read()).body], [1, 2, 3]);
      await c.send(`GET /api/blob HTTP/1.1\r\n${H}\r\n`);
      const blob = await c.read();
      assert.equal(blob.text, "blob body");
      assert.equal(blob.headers.get("content-type"), "text/x-blob");
      await c.send(`GET /api/null HTTP/1.1\r\n${H}\r\n`);
      const nul = await c.read();
      assert.equal(nul.status, 201);
      assert.equal(nul.statusLine, "HTTP/1.1 201 Created");
      assert.equal(nul.headers.get("content-length"), "0");
      assert.equal(nul.headers.get("location"), "/x");
      await c.send(`GET /api/empty HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).headers.get("content-length"), "0");
      await c.send(`GET /api/nocontent HTTP/1.1\r\n${H}\r\n`);
      const none = await c.read();
      assert.equal(none.status, 204);
      assert.equal(none.headers.get("content-length"), undefined);
      // All on one connection: keep-alive held throughout.
      assert.equal(s.vento.stats.accepted, 1);
    } finally {
      c.close();
    }
  }));

Deno.test("app: a ReadableStream of unknown length is chunked; HTTP/1.0 gets it close-delimited", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/stream HTTP/1.1\r\n${H}\r\n`);
      const r = await c.read();
      assert.equal(r.headers.get("transfer-encoding"), "chunked");
      assert.equal(r.text, "part 0\npart 1\npart 2\n");
      // The connection stays usable after a chunked answer.
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
    } finally {
      c.close();
    }
    const old = await RawClient.connect(s.port);
    try {
      await old.send(`GET /api/stream HTTP/1.0\r\n\r\n`);
      const r = await old.read();
      assert.equal(r.headers.get("transfer-encoding"), undefined);
      assert.equal(r.headers.get("connection"), "close");
      assert.equal(r.text, "part 0\npart 1\npart 2\n");
    } finally {
      old.close();
    }
  }));

Deno.test("app: a stream with the app's Content-Length is sent with exactly that length", () =>
  withApp(async (s) => {
    const r = await request(s.port, `GET /api/sized HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.headers.get("content-length"), "6");
    assert.equal(r.headers.get("transfer-encoding"), undefined);
    assert.equal(r.text, "abcabc");
  }));

Deno.test("app: HEAD gets the head without a body, on a connection that stays open", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`HEAD /api/json HTTP/1.1\r\n${H}\r\n`);
      const h = await c.read("HEAD");
      assert.equal(h.status, 200);
      assert.equal(h.headers.get("content-length"), "17");
      await c.send(`HEAD /api/stream HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read("HEAD")).status, 200);
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).text, '{"ok":true,"n":1}');
    } finally {
      c.close();
    }
  }));

Deno.test("app: pipelined requests are answered in order, mixing app, stream and static answers", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(
        `GET /api/json HTTP/1.1\r\n${H}\r\nGET /api/stream HTTP/1.1\r\n${H}\r\n` +
          `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello` +
          `GET / HTTP/1.1\r\n${H}\r\nGET /api/x HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
      );
      assert.equal((await c.read()).text, '{"ok":true,"n":1}');
      assert.equal((await c.read()).text, "part 0\npart 1\npart 2\n");
      assert.equal((await c.read()).text, "hello");
      assert.match((await c.read()).text, /hello/);
      const last = await c.read();
      assert.equal(last.text, "app GET /api/x");
      assert.equal(last.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
  }));

Deno.test("app: hop-by-hop and framing headers set by the app are dropped, with one log line", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/hop HTTP/1.1\r\n${H}\r\n`);
      const r = await c.read();
      assert.equal(r.text, "x");
      assert.equal(r.headers.get("x-kept"), "1");
      assert.equal(r.headers.get("connection"), undefined);
      assert.equal(r.headers.get("upgrade"), undefined);
      assert.equal(r.headers.get("transfer-encoding"), undefined);
      assert.equal(r.headers.get("content-length"), "1");
      // The app's `Connection: close` did not close the connection.
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
    } finally {
      c.close();
    }
    assert.equal(s.errors.length, 1);
    assert.match(
      s.errors[0],
      /^conn \d+ 127\.0\.0\.1: app: GET "\/api\/hop": dropped response header\(s\) connection, transfer-encoding, upgrade/,
    );
  }));

Deno.test("app: a throw, a rejection or a non-Response is a 500 with one log line; the connection lives on", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      for (const path of ["/api/throw", "/api/reject", "/api/notresponse"]) {
        await c.send(`GET ${path} HTTP/1.1\r\n${H}\r\n`);
        assert.equal((await c.read()).status, 500);
      }
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
    } finally {
      c.close();
    }
    assert.equal(s.errors.length, 3);
    assert.match(s.errors[0], /^conn \d+ 127\.0\.0\.1: app: GET "\/api\/throw": Error: thrown on purpose$/);
    assert.match(s.errors[1], /app: GET "\/api\/reject": TypeError: rejected on purpose$/);
    assert.match(s.errors[2], /app: GET "\/api\/notresponse": .*fetch answered a Object, not a Response$/);
  }));

Deno.test("app: no Response within APP_TIMEOUT_MS is a 503, and request.signal aborts", () =>
  withApp(async (s) => {
    const r = await request(s.port, `GET /api/slow HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 503);
    assert.deepEqual(events.aborted, ["/api/slow"]);
    assert.match(
      s.errors[0],
      /app: GET "\/api\/slow": no Response within APP_TIMEOUT_MS \(100 ms\); answered 503/,
    );
  }, { appTimeoutMs: 100 }));

Deno.test("app: a stream that fails midway closes the connection without the last chunk", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/breaks HTTP/1.1\r\n${H}\r\n`);
      const raw = new TextDecoder().decode(await c.readToEnd());
      assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(raw, /\r\n\r\n5\r\nfirst\r\n5\r\nfirst\r\n$/);
    } finally {
      c.close();
    }
    assert.equal(s.errors.length, 1);
    assert.match(s.errors[0], /stream broke/);
  }));

Deno.test("app: the request body streams to the app, fixed-length and chunked, with 100-continue", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(
        `POST /api/echo HTTP/1.1\r\n${H}Content-Type: text/x\r\nContent-Length: 11\r\n\r\nhello world`,
      );
      const a = await c.read();
      assert.equal(a.text, "hello world");
      assert.equal(a.headers.get("content-type"), "text/x");
      await c.send(
        `POST /api/length HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
      );
      assert.equal((await c.read()).text, "11");
      await c.send(`PUT /api/length HTTP/1.1\r\n${H}Content-Length: 4\r\nExpect: 100-continue\r\n\r\n`);
      const cont = await c.read();
      assert.equal(cont.status, 100);
      await c.send("body");
      assert.equal((await c.read()).text, "4");
    } finally {
      c.close();
    }
  }));

Deno.test("app: a body above APP_MAX_BODY_BYTES is 413 (before reading when declared); the app never runs", () =>
  withApp(async (s) => {
    const declared = await request(s.port, `POST /api/length HTTP/1.1\r\n${H}Content-Length: 101\r\n\r\n`);
    assert.equal(declared.status, 413);
    const chunk = "x".repeat(60);
    const chunked = await request(
      s.port,
      `POST /api/length HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3c\r\n${chunk}\r\n3c\r\n${chunk}\r\n0\r\n\r\n`,
    );
    assert.equal(chunked.status, 413);
    assert.equal(chunked.headers.get("connection"), "close");
    assert.deepEqual(s.errors, []);
  }, { appMaxBodyBytes: 100 }));

Deno.test("app: a body the app never reads is answered, then the connection closes", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`POST /api/ignore-body HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n0123456789`);
      const r = await c.read();
      assert.equal(r.text, "did not read");
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.close();
    }
  }));

Deno.test("app: a body that stalls is cut by the body deadline (408) while the app waits for it", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`POST /api/length HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
      const r = await c.read();
      assert.equal(r.status, 408);
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.close();
    }
    assert.deepEqual(s.errors, []);
  }, { bodyIdleTimeoutMs: 150 }));

Deno.test("app: request.signal aborts when the connection is kicked while the app waits", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/wait HTTP/1.1\r\n${H}\r\n`);
      let conns = s.vento.server.connections();
      for (let i = 0; i < 100 && conns[0]?.request === ""; i++) {
        await new Promise((r) => setTimeout(r, 10));
        conns = s.vento.server.connections();
      }
      assert.equal(conns.length, 1);
      assert.equal(conns[0].request, "GET /api/wait HTTP/1.1");
      assert.ok(s.vento.server.kick(conns[0].id));
      assert.ok(await c.closedWithin(2000));
      for (let i = 0; i < 100 && events.aborted.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(events.aborted, ["/api/wait"]);
    } finally {
      c.close();
    }
  }));

Deno.test("app: a client that leaves mid-stream aborts request.signal and stops the app's stream", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    await c.send(`GET /api/endless HTTP/1.1\r\n${H}\r\n`);
    const chunk = new Uint8Array(1024);
    await c.conn.read(chunk);
    c.close();
    for (let i = 0; i < 300 && events.aborted.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(events.aborted, ["/api/endless"]);
  }));

Deno.test("app: reload imports a changed module; requests after it get the new answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-app-reload-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/app.js`, `export default { fetch: () => new Response("one") };`);
  await Deno.writeTextFile(
    `${dir}/vento.conf`,
    "PORT=0\nHOST=127.0.0.1\nADMIN_SOCKET=off\nACCESS_LOG=off\nAPP=app.js\n",
  );
  const loaded = await loadConfig(`${dir}/vento.conf`);
  assert.ok(loaded.ok);
  const errors: string[] = [];
  const v = await startVento(loaded.config, { configPath: loaded.path, logError: (m) => errors.push(m) });
  try {
    const port = v.addr.port;
    assert.equal((await request(port, `GET /api/v HTTP/1.1\r\n${H}\r\n`)).text, "one");
    await Deno.writeTextFile(`${dir}/app.js`, `export default { fetch: () => new Response("two") };`);
    assert.deepEqual(await v.reload(), { applied: ["APP"], needsRestart: [] });
    assert.equal((await request(port, `GET /api/v HTTP/1.1\r\n${H}\r\n`)).text, "two");
    // A module that no longer loads refuses the reload; the last good one keeps serving.
    await Deno.writeTextFile(`${dir}/app.js`, `export const notDefault = 1;`);
    const refused = await v.reload();
    assert.ok("errors" in refused);
    assert.match(refused.errors[0], /APP .*app\.js: the module has no default export/);
    assert.equal((await request(port, `GET /api/v HTTP/1.1\r\n${H}\r\n`)).text, "two");
  } finally {
    await v.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(errors, []);
});

Deno.test("app: requests are counted by route prefix (metrics, stats) and written to the access log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-app-log-" });
  try {
    await withApp(async (s) => {
      await request(s.port, `GET /api/json HTTP/1.1\r\n${H}User-Agent: probe\r\n\r\n`);
      await request(s.port, `GET /api/throw HTTP/1.1\r\n${H}\r\n`);
      await request(s.port, `GET /auth/x HTTP/1.1\r\n${H}\r\n`);
      await request(s.port, `GET /no/file HTTP/1.1\r\n${H}\r\n`);
      await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`);
      await request(s.port, `GET /api/stream HTTP/1.1\r\n${H}\r\n`);
      const snap = s.vento.stats.snapshot(0, 0);
      assert.deepEqual(snap.appRequests, { "/api/": 3, "/auth/": 1, "(fallback)": 1 });
      assert.deepEqual(snap.appFailures, { exception: 1, timeout: 0, bad_response: 0 });
      const metrics = formatMetrics(snap, 10, 0);
      assert.match(metrics, /^vento_app_requests_total\{prefix="\/api\/"\} 3$/m);
      assert.match(metrics, /^vento_app_requests_total\{prefix="\(fallback\)"\} 1$/m);
      assert.match(metrics, /^vento_app_failures_total\{reason="exception"\} 1$/m);
    }, { appPaths: ["/api/", "/auth/"], appFallback: true, accessLog: `${dir}/access.log` });
    const log = await Deno.readTextFile(`${dir}/access.log`);
    assert.match(log, /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/api\/json HTTP\/1\.1" 200 17 "-" "probe"$/m);
    assert.match(log, /"GET \/api\/throw HTTP\/1\.1" 500 /);
    assert.match(log, /"GET \/no\/file HTTP\/1\.1" 200 /);
    // A chunked answer is logged once sent, with the bytes that went out (three 7-byte chunks, framed).
    assert.match(log, /"GET \/api\/stream HTTP\/1\.1" 200 41 /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("app: request.signal aborts as soon as the client leaves while the app works", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    await c.send(`GET /api/wait HTTP/1.1\r\n${H}\r\n`);
    for (let i = 0; i < 100 && s.vento.server.connections()[0]?.request === ""; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    c.close();
    for (let i = 0; i < 300 && events.aborted.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(events.aborted, ["/api/wait"]);
  }));

Deno.test("app: a pipelined request that arrives while the app works is served after it, in order", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/slow HTTP/1.1\r\n${H}\r\n`);
      await new Promise((r) => setTimeout(r, 50));
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).text, "late");
      assert.equal((await c.read()).text, '{"ok":true,"n":1}');
      await c.send(`GET /api/x HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).text, "app GET /api/x");
    } finally {
      c.close();
    }
  }));

Deno.test("app: the guard answers first: a client over its request rate gets 429 and the app never sees it", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
      await c.send(`GET /api/json HTTP/1.1\r\n${H}\r\n`);
      const limited = await c.read();
      assert.equal(limited.status, 429);
      assert.ok(limited.headers.has("retry-after"));
    } finally {
      c.close();
    }
    assert.equal(events.calls, 1);
    // A malformed request never reaches it either.
    const bad = await request(s.port, `GET /api/json HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`);
    assert.equal(bad.status, 400);
    assert.equal(events.calls, 1);
  }, { requestRatePerSec: 1, requestBurst: 1 }));

Deno.test("app: a client that leaves mid-body fails the app's read quietly: no 500 line in the log", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    await c.send(`POST /api/length HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nonly part`);
    for (let i = 0; i < 100 && s.vento.server.connections()[0]?.request === ""; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    c.close();
    for (let i = 0; i < 100 && s.vento.server.connections().length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(s.vento.server.connections().length, 0);
    assert.deepEqual(s.errors, []);
    assert.equal(s.vento.stats.appFailures.exception, 0);
  }));

Deno.test("app: shutdown lets the app answer until SHUTDOWN_TIMEOUT_MS, then aborts request.signal", () =>
  withApp(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET /api/wait HTTP/1.1\r\n${H}\r\n`);
      for (let i = 0; i < 100 && s.vento.server.connections()[0]?.request === ""; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const started = performance.now();
      await s.vento.shutdown();
      assert.ok(performance.now() - started >= 150, "shutdown waited for the in-flight request");
      assert.deepEqual(events.aborted, ["/api/wait"]);
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
  }, { shutdownTimeoutMs: 200 }));

Deno.test("app: a method the Fetch standard forbids is 501 without reaching the app", () =>
  withApp(async (s) => {
    const r = await request(s.port, `TRACE /api/x HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 501);
    assert.equal(events.calls, 0);
    assert.deepEqual(s.errors, []);
  }));
