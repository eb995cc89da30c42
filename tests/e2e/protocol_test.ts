/**
 * End-to-end tests of answers on the wire: the real server on port 0, raw TCP, our own response reader.
 * Version handling, request-target characters, HEAD answers without content (errors included), pipelined
 * answers ahead of an incomplete body, and unread bodies discarded while the connection stays open.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";

async function withServer(
  fn: (s: TestServer) => Promise<void>,
  overrides: Parameters<typeof startTestServer>[0] = {},
): Promise<void> {
  const s = await startTestServer(overrides);
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

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

Deno.test("request-target characters outside RFC 3986 are answered 400 and the connection closes", () =>
  withServer(async (s) => {
    for (const ch of ['"', "<", ">", "\\", "^", "`", "{", "|", "}"]) {
      for (const target of [`/a${ch}b`, `/s?q=${ch}`]) {
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
    }
    // Their percent-encoded forms are ordinary requests.
    assert.equal((await request(s.port, `GET /?q=%7B%7C%7D%5E%60 HTTP/1.1\r\n${H}\r\n`)).status, 200);
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
