/**
 * End-to-end tests of the core engine: the real server on port 0, raw TCP, our own response reader.
 * Keep-alive, pipelining, HTTP/1.0, Host rules, smuggling shapes, every limit's status, deadlines, echo,
 * and graceful shutdown with a request in flight.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { startTestServer, withTestServer as withServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";

Deno.test("server answers GET / with the index page and the standard headers", () =>
  withServer(async (s) => {
    const r = await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 200);
    assert.match(r.text, /hello/);
    assert.equal(r.headers.get("server"), "Vento");
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.match(
      r.headers.get("date") ?? "",
      /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
    );
    assert.equal(Number(r.headers.get("content-length")), r.body.length);
  }));

Deno.test("keep-alive serves several requests on one connection", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      for (let i = 0; i < 5; i++) {
        await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
        const r = await c.read();
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("connection"), undefined);
      }
      assert.equal(s.vento.stats.accepted, 1);
    } finally {
      c.close();
    }
  }));

Deno.test("three pipelined requests in one write are answered in order", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(
        `GET / HTTP/1.1\r\n${H}\r\n` +
          `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 6\r\n\r\nsecond` +
          `GET /missing HTTP/1.1\r\n${H}\r\n`,
      );
      const a = await c.read();
      const b = await c.read();
      const d = await c.read();
      assert.equal(a.status, 200);
      assert.match(a.text, /hello/);
      assert.equal(b.status, 200);
      assert.equal(b.text, "second");
      assert.equal(d.status, 404);
    } finally {
      c.close();
    }
  }));

Deno.test("pipelined requests with bodies keep their boundaries", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(
        `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\none` +
          `POST /api/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n` +
          `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nthree`,
      );
      assert.equal((await c.read()).text, "one");
      assert.equal((await c.read()).text, "two");
      assert.equal((await c.read()).text, "three");
    } finally {
      c.close();
    }
  }));

Deno.test("HTTP/1.0 closes after the response unless keep-alive is asked", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send("GET / HTTP/1.0\r\n\r\n");
      const r = await c.read();
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
    const k = await RawClient.connect(s.port);
    try {
      await k.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      const r1 = await k.read();
      assert.equal(r1.headers.get("connection"), "keep-alive");
      await k.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      assert.equal((await k.read()).status, 200);
    } finally {
      k.close();
    }
  }));

Deno.test("Connection: close from the client is honoured", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      const r = await c.read();
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
  }));

/** Sends `raw` and expects `status` with `Connection: close` and the connection closed. */
async function expectRefusal(port: number, raw: string, status: number): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    await c.send(raw);
    const r = await c.read();
    assert.equal(r.status, status, `${JSON.stringify(raw.slice(0, 80))} → ${r.statusLine}`);
    assert.equal(r.headers.get("connection"), "close");
    assert.ok(await c.closedWithin(3000), "connection closed after the error");
  } finally {
    c.close();
  }
}

Deno.test("Host rules: HTTP/1.1 needs exactly one valid Host", () =>
  withServer(async (s) => {
    await expectRefusal(s.port, "GET / HTTP/1.1\r\n\r\n", 400);
    await expectRefusal(s.port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    await expectRefusal(s.port, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    const ok = await request(s.port, "GET / HTTP/1.0\r\n\r\n");
    assert.equal(ok.status, 200);
  }));

Deno.test("request smuggling shapes are refused and the connection closed", () =>
  withServer(async (s) => {
    const post = `POST /api/echo HTTP/1.1\r\n${H}`;
    // CL.TE and TE.CL
    await expectRefusal(
      s.port,
      `${post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
    );
    await expectRefusal(
      s.port,
      `${post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`,
      400,
    );
    // TE obfuscations
    await expectRefusal(s.port, `${post}Transfer-Encoding: xchunked\r\n\r\n`, 501);
    await expectRefusal(s.port, `${post}Transfer-Encoding: chunked, identity\r\n\r\n`, 400);
    await expectRefusal(s.port, `${post}Transfer-Encoding : chunked\r\n\r\n`, 400);
    await expectRefusal(s.port, `${post} Transfer-Encoding: chunked\r\n\r\n`, 400);
    await expectRefusal(s.port, `${post}Transfer-Encoding: gzip, chunked\r\n\r\n`, 501);
    // TE in HTTP/1.0
    await expectRefusal(
      s.port,
      "POST /api/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400,
    );
    // Content-Length shapes
    await expectRefusal(s.port, `${post}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, 400);
    await expectRefusal(s.port, `${post}Content-Length: 3, 4\r\n\r\nabcd`, 400);
    await expectRefusal(s.port, `${post}Content-Length: +3\r\n\r\nabc`, 400);
    await expectRefusal(s.port, `${post}Content-Length: 0x3\r\n\r\nabc`, 400);
    await expectRefusal(s.port, `${post}Content-Length: 3 3\r\n\r\nabc`, 400);
    // Line endings, folding, bytes that don't belong
    await expectRefusal(s.port, `GET / HTTP/1.1\n${H}\n`, 400);
    await expectRefusal(s.port, `GET / HTTP/1.1\r\n${H}X-A: 1\r\n  folded\r\n\r\n`, 400);
    await expectRefusal(s.port, `GET / HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`, 400);
    await expectRefusal(s.port, `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400);
    // Chunk size overflow and bad chunk framing
    await expectRefusal(s.port, `${post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n`, 400);
    await expectRefusal(s.port, `${post}Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n`, 400);
  }));

Deno.test("identical duplicate Content-Length values are accepted", () =>
  withServer(async (s) => {
    const r = await request(
      s.port,
      `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
    );
    assert.equal(r.status, 200);
    assert.equal(r.text, "abc");
  }));

Deno.test("each limit answers its status", () =>
  withServer(async (s) => {
    // 414: request line over MAX_REQUEST_LINE_BYTES (1 KiB here)
    await expectRefusal(s.port, `GET /${"a".repeat(2000)} HTTP/1.1\r\n${H}\r\n`, 414);
    // 431: header section over MAX_HEADER_BYTES (2 KiB here)
    await expectRefusal(s.port, `GET / HTTP/1.1\r\n${H}X-Big: ${"b".repeat(3000)}\r\n\r\n`, 431);
    // 431: more than MAX_HEADER_COUNT fields (10 here)
    const many = Array.from({ length: 12 }, (_, i) => `X-${i}: v\r\n`).join("");
    await expectRefusal(s.port, `GET / HTTP/1.1\r\n${H}${many}\r\n`, 431);
    // 413: echo body over ECHO_MAX_BODY_BYTES (100 here), by Content-Length and by chunked
    await expectRefusal(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 101\r\n\r\n`, 413);
    const chunk = "x".repeat(60);
    await expectRefusal(
      s.port,
      `POST /api/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3c\r\n${chunk}\r\n3c\r\n${chunk}\r\n0\r\n\r\n`,
      413,
    );
    // 505 and 400 versions, 501 coding
    await expectRefusal(s.port, `GET / HTTP/2.0\r\n${H}\r\n`, 505);
    await expectRefusal(s.port, `GET / HTTP/1.10\r\n${H}\r\n`, 400);
    await expectRefusal(s.port, `GET / http/1.1\r\n${H}\r\n`, 400);
    // 405 with Allow on the echo route
    const r = await request(s.port, `GET /api/echo HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 405);
    assert.match(r.headers.get("allow") ?? "", /POST/);
  }, { maxRequestLineBytes: 1024, maxHeaderBytes: 2048, maxHeaderCount: 10, echoMaxBodyBytes: 100 }));

Deno.test("echo returns the body for Content-Length and chunked uploads", () =>
  withServer(async (s) => {
    const a = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\nhello world`);
    assert.equal(a.status, 200);
    assert.equal(a.text, "hello world");
    assert.match(a.headers.get("content-type") ?? "", /^text\/plain/);
    const b = await request(
      s.port,
      `POST /api/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n`,
    );
    assert.equal(b.status, 200);
    assert.equal(b.text, "hello world");
    const empty = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`);
    assert.equal(empty.status, 200);
    assert.equal(empty.body.length, 0);
  }));

Deno.test("Expect: 100-continue gets an interim response before the body", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`POST /api/echo HTTP/1.1\r\n${H}Content-Length: 4\r\nExpect: 100-continue\r\n\r\n`);
      const interim = await c.read();
      assert.equal(interim.status, 100);
      await c.send("ping");
      const r = await c.read();
      assert.equal(r.status, 200);
      assert.equal(r.text, "ping");
    } finally {
      c.close();
    }
  }));

Deno.test("Expect: 100-continue with a body over the limit gets 413 and no 100", () =>
  withServer(async (s) => {
    await expectRefusal(
      s.port,
      `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
      413,
    );
  }, { echoMaxBodyBytes: 100 }));

Deno.test("a trickled header is cut off by the header deadline with 408", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    const started = performance.now();
    try {
      const line = `GET / HTTP/1.1\r\n${H}X-Slow: ${"a".repeat(100)}`;
      let i = 0;
      const trickle = (async () => {
        try {
          while (i < line.length) {
            await c.send(line[i++]);
            await new Promise((r) => setTimeout(r, 20));
          }
        } catch {
          // the server closed: expected
        }
      })();
      const r = await c.read();
      const elapsed = performance.now() - started;
      assert.equal(r.status, 408);
      assert.ok(elapsed >= 250 && elapsed < 2000, `cut after ${elapsed} ms`);
      assert.ok(i < line.length, "the trickle did not get to finish");
      await c.closedWithin(3000);
      await trickle;
    } finally {
      c.close();
    }
  }, { headerTimeoutMs: 300 }));

Deno.test("a connection that never speaks is closed at the header deadline without an answer", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      const started = performance.now();
      assert.ok(await c.closedWithin(3000));
      assert.ok(performance.now() - started >= 150);
      assert.equal((await c.readToEnd()).length, 0);
    } finally {
      c.close();
    }
  }, { headerTimeoutMs: 200 }));

Deno.test("an idle keep-alive connection is closed quietly after the idle timeout", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
      const started = performance.now();
      assert.ok(await c.closedWithin(3000));
      assert.ok(performance.now() - started >= 150);
    } finally {
      c.close();
    }
  }, { idleTimeoutMs: 200, idleTimeoutBusyMs: 200 }));

Deno.test("a slow body is cut off by the body idle timeout with 408", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`POST /api/echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
      const r = await c.read();
      assert.equal(r.status, 408);
    } finally {
      c.close();
    }
  }, { bodyIdleTimeoutMs: 200 }));

Deno.test("requests per connection are capped", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).headers.get("connection"), undefined);
      await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
      const last = await c.read();
      assert.equal(last.status, 200);
      assert.equal(last.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
  }, { maxRequestsPerConn: 2 }));

Deno.test("OPTIONS * answers 204 with Allow", () =>
  withServer(async (s) => {
    const r = await request(s.port, `OPTIONS * HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 204);
    assert.match(r.headers.get("allow") ?? "", /GET/);
  }));

Deno.test("absolute-form targets are accepted", () =>
  withServer(async (s) => {
    const r = await request(s.port, `GET http://example.test/ HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 200);
    assert.match(r.text, /hello/);
  }));

Deno.test("graceful shutdown finishes the request in flight with Connection: close", async () => {
  const s = await startTestServer();
  const busy = await RawClient.connect(s.port);
  const idle = await RawClient.connect(s.port);
  try {
    // The idle connection completes one exchange; the busy one is mid-body when shutdown starts.
    await idle.send(`GET / HTTP/1.1\r\n${H}\r\n`);
    assert.equal((await idle.read()).status, 200);
    await busy.send(`POST /api/echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhello`);
    await new Promise((r) => setTimeout(r, 50));
    const stopping = s.vento.shutdown();
    assert.ok(await idle.closedWithin(2000), "idle connection closed at once");
    // New connections are refused: the listener is closed.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: s.port }));
    await busy.send("world");
    const r = await busy.read();
    assert.equal(r.status, 200);
    assert.equal(r.text, "helloworld");
    assert.equal(r.headers.get("connection"), "close");
    await stopping;
    assert.equal(s.vento.server.size, 0);
  } finally {
    busy.close();
    idle.close();
    await s.stop();
  }
});

Deno.test("shutdown force-closes connections that outlive the shutdown deadline", async () => {
  const s = await startTestServer({ shutdownTimeoutMs: 200 });
  const c = await RawClient.connect(s.port);
  try {
    await c.send(`POST /api/echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhel`);
    await new Promise((r) => setTimeout(r, 50));
    const started = performance.now();
    await s.vento.shutdown();
    const took = performance.now() - started;
    assert.ok(took >= 150 && took < 2000, `shutdown took ${took} ms`);
    assert.ok(await c.closedWithin(1000));
  } finally {
    c.close();
    await s.stop();
  }
});

Deno.test("a body sent to a route that takes none gets that route's answer and is discarded, never parsed", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`POST /index.html HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
      const r = await c.read();
      assert.equal(r.status, 405);
      assert.match(r.headers.get("allow") ?? "", /GET, HEAD, OPTIONS/);
      assert.equal(r.headers.get("connection"), undefined);
      // The smuggled-looking body is never parsed as a request: it is discarded, the connection kept.
      await c.send(`GET / HTTP/1.1\r\n${H}Content-Length: 24\r\n\r\nGET /secret HTTP/1.1\r\n\r\n`);
      const g = await c.read();
      assert.equal(g.status, 200);
      assert.equal(g.headers.get("connection"), undefined);
      await c.send(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.equal((await c.read()).status, 200);
      assert.equal((await c.readToEnd()).length, 0, "no answer for the body's bytes");
    } finally {
      c.close();
    }
  }));
