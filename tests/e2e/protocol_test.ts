/**
 * End-to-end tests of answers on the wire: the real server on port 0, raw TCP, our own response reader.
 * Version handling, request-target characters, HEAD answers without content (errors included), pipelined
 * answers ahead of an incomplete body, and unread bodies discarded while the connection stays open.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { withTestServer as withServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";

Deno.test("HTTP/1.2 is served as HTTP/1.1 (keep-alive), while HTTP/2.0 and HTTP/0.9 get 505", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      for (let i = 0; i < 2; i++) {
        await c.send(`GET / HTTP/1.2\r\n${H}\r\n`);
        const r = await c.read();
        assert.equal(r.status, 200);
        assert.equal(r.statusLine, "HTTP/1.1 200 OK");
        assert.equal(r.headers.get("connection"), undefined);
        assert.match(r.text, /hello/);
      }
    } finally {
      c.close();
    }
    assert.equal((await request(s.port, `GET / HTTP/2.0\r\n${H}\r\n`)).status, 505);
    assert.equal((await request(s.port, `GET / HTTP/0.9\r\n${H}\r\n`)).status, 505);
  }));

Deno.test("request-target characters outside RFC 3986 are answered 400 (in a query: those browsers encode) and the connection closes", () =>
  withServer(async (s) => {
    const refused = [
      ...['"', "<", ">", "\\", "^", "`", "{", "|", "}"].map((ch) => `/a${ch}b`),
      ...['"', "<", ">"].map((ch) => `/s?q=${ch}`),
    ];
    for (const target of refused) {
      const c = await RawClient.connect(s.port);
      try {
        await c.send(`GET ${target} HTTP/1.1\r\n${H}\r\n`);
        const r = await c.read();
        assert.equal(r.status, 400, `${target} → ${r.status}`);
        assert.equal(r.headers.get("connection"), "close");
        assert.ok(await c.closedWithin(3000));
      } finally {
        c.close();
      }
    }
    // Their percent-encoded forms are ordinary requests, and so are the ones browsers send raw in a query.
    assert.equal((await request(s.port, `GET /?q=%7B%7C%7D%5E%60 HTTP/1.1\r\n${H}\r\n`)).status, 200);
    const browserQuery = "/?q={a:1}|x^y\\z`";
    assert.equal((await request(s.port, `GET ${browserQuery} HTTP/1.1\r\n${H}\r\n`)).status, 200);
  }));

Deno.test("every answer to HEAD has no content: a malformed head's 400 and a bad version's 505 too", () =>
  withServer(async (s) => {
    for (
      const [raw, status] of [
        [`HEAD / HTTP/1.1\r\n${H}Bad Header: x\r\n\r\n`, 400],
        [`HEAD /a{b HTTP/1.1\r\n${H}\r\n`, 400],
        [`HEAD / HTTP/2.0\r\n${H}\r\n`, 505],
        [`HEAD /missing HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 404],
      ] as const
    ) {
      const c = await RawClient.connect(s.port);
      try {
        await c.send(raw);
        const r = await c.read("HEAD");
        assert.equal(r.status, status);
        assert.ok(Number(r.headers.get("content-length")) > 0, "the length GET would get");
        assert.equal((await c.readToEnd()).length, 0, `no content after the ${status} head`);
      } finally {
        c.close();
      }
    }
  }));

Deno.test("a complete request pipelined before an incomplete body is answered, then the body timeout's 408", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(
        `GET / HTTP/1.1\r\n${H}\r\nPOST /api/echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabcd`,
      );
      const first = await c.read();
      assert.equal(first.status, 200);
      assert.match(first.text, /hello/);
      const second = await c.read();
      assert.equal(second.status, 408);
      assert.equal(second.headers.get("connection"), "close");
      assert.ok(await c.closedWithin(3000));
    } finally {
      c.close();
    }
  }, { bodyIdleTimeoutMs: 200 }));

Deno.test("a GET with a body keeps its connection: the body is discarded and the next request served", () =>
  withServer(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      await c.send(`GET / HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\n{"q":"abc"}`);
      const first = await c.read();
      assert.equal(first.status, 200);
      assert.equal(first.headers.get("connection"), undefined);
      // Chunked, split over writes, with a pipelined HEAD behind it.
      await c.send(`GET / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n4\r\nab`);
      await c.send(`cd\r\n0\r\n\r\nHEAD / HTTP/1.1\r\n${H}\r\n`);
      const second = await c.read();
      assert.equal(second.status, 200);
      assert.equal(second.headers.get("connection"), undefined);
      const third = await c.read("HEAD");
      assert.equal(third.status, 200);
      // A POST to a file: 405, and the connection still serves.
      await c.send(`POST /index.html HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`);
      assert.equal((await c.read()).status, 405);
      await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.read()).status, 200);
      assert.equal(s.vento.stats.accepted, 1);
    } finally {
      c.close();
    }
  }));

Deno.test("an unread body with bad chunk framing is answered 400; one beyond the bound closes after the answer", () =>
  withServer(async (s) => {
    const bad = await RawClient.connect(s.port);
    try {
      await bad.send(`GET / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nxyz\r\n`);
      const r = await bad.read();
      assert.equal(r.status, 400);
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(await bad.closedWithin(3000));
    } finally {
      bad.close();
    }
    const big = await RawClient.connect(s.port);
    try {
      await big.send(`GET / HTTP/1.1\r\n${H}Content-Length: 17\r\n\r\n${"x".repeat(17)}`);
      const r = await big.read();
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("connection"), "close");
      assert.ok(await big.closedWithin(3000));
    } finally {
      big.close();
    }
  }, { unreadBodyMaxBytes: 16 }));
