/**
 * The body readers over a scripted input (no socket): whole, discarded and streamed bodies give the same
 * bytes and verdicts however the peer's bytes are cut, and leave the next request's bytes in the buffer.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type BodyInput, discardBody, readWholeBody, StreamedBody } from "../../src/net/body_reader.ts";
import type { RequestHead } from "../../src/http/head.ts";
import { latin1 } from "../_helpers/raw_client.ts";

/** An input fed from `pieces` in order (each refill takes the next); rejects when they run out. */
function inputOf(pieces: string[]): BodyInput & { rest(): string } {
  const queue = pieces.map(latin1);
  const first = queue.shift() ?? new Uint8Array(0);
  const input = {
    buf: first,
    start: 0,
    end: first.length,
    refill(): Promise<void> {
      const next = queue.shift();
      if (next === undefined) return Promise.reject(new Deno.errors.UnexpectedEof("body ended early"));
      input.buf = next;
      input.start = 0;
      input.end = next.length;
      return Promise.resolve();
    },
    rest(): string {
      let s = new TextDecoder().decode(input.buf.subarray(input.start, input.end));
      for (const q of queue) s += new TextDecoder().decode(q);
      return s;
    },
  };
  return input;
}

function head(over: Partial<RequestHead>): RequestHead {
  return { chunked: false, contentLength: 0, ...over } as RequestHead;
}

/** `text` cut at the given offsets. */
function cut(text: string, at: number[]): string[] {
  const points = [...new Set(at.map((a) => a % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) out.push(text.slice(from, p));
    from = Math.max(from, p);
  }
  out.push(text.slice(from));
  return out.filter((p) => p !== "");
}

const CHUNKED = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /next";

Deno.test("a fixed-length body is read whole and the next request's bytes stay", async () => {
  const input = inputOf(["hel", "lo wor", "ldGET /n"]);
  const body = await readWholeBody(input, head({ contentLength: 11 }), 100);
  assert.equal(new TextDecoder().decode(body as Uint8Array), "hello world");
  assert.equal(input.rest(), "GET /n");
});

Deno.test("property: a chunked body reads the same whole, streamed and discarded under any cut", async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.nat(80), { maxLength: 6 }), async (at) => {
    const pieces = cut(CHUNKED, at);
    const whole = await readWholeBody(inputOf(pieces), head({ chunked: true }), 100);
    assert.equal(new TextDecoder().decode(whole as Uint8Array), "Wikipedia");

    const input = inputOf(pieces);
    const streamed = new StreamedBody(head({ chunked: true }), 100);
    let text = "";
    for (;;) {
      const r = await streamed.next(input, () => input.refill());
      assert.notEqual(typeof r, "string");
      if (r === null) break;
      text += new TextDecoder().decode(r as Uint8Array);
    }
    assert.equal(text, "Wikipedia");
    assert.ok(streamed.done);
    assert.equal(input.rest(), "GET /next");

    const dropped = inputOf(pieces);
    assert.equal(await discardBody(dropped, head({ chunked: true }), 1000), null);
    assert.equal(dropped.rest(), "GET /next");
  }));
});

Deno.test("limits: a chunked body over the limit is BODY_TOO_LARGE whole and streamed; discard stops at its bound", async () => {
  assert.equal(await readWholeBody(inputOf([CHUNKED]), head({ chunked: true }), 8), "BODY_TOO_LARGE");
  // Streamed, the chunks within the limit are handed on first (here "Wiki" arrives on its own).
  const input = inputOf(["4\r\nWiki\r\n", CHUNKED.slice(9)]);
  const s = new StreamedBody(head({ chunked: true }), 8);
  assert.equal(new TextDecoder().decode((await s.next(input, () => input.refill())) as Uint8Array), "Wiki");
  assert.equal(await s.next(input, () => input.refill()), "BODY_TOO_LARGE");
  assert.equal(s.failed, "BODY_TOO_LARGE");
  assert.equal(await s.next(input, () => input.refill()), "BODY_TOO_LARGE", "sticky");
  assert.equal(await discardBody(inputOf([CHUNKED]), head({ chunked: true }), 10), "BODY_TOO_LARGE");
});

Deno.test("framing errors come back as their codes; an early end of stream rejects", async () => {
  const bad = "zz\r\nWiki\r\n0\r\n\r\n";
  assert.equal(typeof await readWholeBody(inputOf([bad]), head({ chunked: true }), 100), "string");
  assert.equal(typeof await discardBody(inputOf([bad]), head({ chunked: true }), 100), "string");
  await assert.rejects(
    readWholeBody(inputOf(["abc"]), head({ contentLength: 10 }), 100),
    Deno.errors.UnexpectedEof,
  );
});
