/**
 * The app bridge without a server: the lazily built Request (a real Request in every observable way),
 * and the Response converter (framing, refused headers, the in-memory fast path this Deno allows).
 */

import assert from "node:assert/strict";
import { checkedRequest, isPlain, lazyRequest, type RequestParts } from "../../src/routes/app_request.ts";
import { BadResponse, ResponseConverter } from "../../src/routes/app_response.ts";
import { AppLoadError, AppRoute, loadApp } from "../../src/routes/app.ts";

const decoder = new TextDecoder();

function parts(over: Partial<RequestParts> = {}): RequestParts {
  return {
    url: "http://example.test:8080/api/x?a=1",
    method: "GET",
    headers: ["host", "example.test:8080", "x-a", "1", "cookie", "a=b"],
    body: null,
    signal: new AbortController().signal,
    ...over,
  };
}

Deno.test("a lazy Request is a Request: instanceof, url, method, headers, signal, copies and clones", () => {
  const controller = new AbortController();
  const r = lazyRequest(parts({ signal: controller.signal }));
  assert.ok(r instanceof Request);
  assert.equal(Object.prototype.toString.call(r), "[object Request]");
  assert.equal(r.url, "http://example.test:8080/api/x?a=1");
  assert.equal(r.method, "GET");
  assert.equal(r.headers.get("x-a"), "1");
  assert.equal(r.bodyUsed, false);
  assert.equal(r.body, null);
  // Copies through Deno's own code read the full Request.
  const copy = new Request(r);
  assert.equal(copy.url, r.url);
  assert.equal(copy.headers.get("cookie"), "a=b");
  assert.equal(r.clone().headers.get("x-a"), "1");
  assert.equal(new Request("http://other.test/", r).headers.get("x-a"), "1");
  assert.equal(r.signal.aborted, false);
  controller.abort();
  assert.equal(r.signal.aborted, true);
  assert.equal(r.redirect, "follow");
});

Deno.test("a lazy Request's body streams, and reads through the full Request", async () => {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"a":'));
      c.enqueue(new TextEncoder().encode("1}"));
      c.close();
    },
  });
  const r = lazyRequest(parts({ method: "POST", body, headers: ["content-type", "application/json"] }));
  assert.deepEqual(await r.json(), { a: 1 });
  assert.equal(r.bodyUsed, true);
});

Deno.test("only targets and methods the URL and Fetch standards keep as sent are served lazily", () => {
  assert.ok(isPlain("GET", "/api/x?a=1&b=%20"));
  assert.ok(isPlain("DELETE", "/a/b.c/~d:e@f"));
  assert.ok(!isPlain("get", "/api/x")); // normalised to GET by the Fetch standard
  assert.ok(!isPlain("TRACE", "/api/x")); // refused by it
  assert.ok(!isPlain("GET", "/api/../x")); // dot segments are removed
  assert.ok(!isPlain("GET", "/api/%2e%2E/x"));
  assert.ok(!isPlain("GET", "/api/x?q='a'")); // ' is escaped in a query
  assert.ok(!isPlain("GET", "/a|b"));
  // The full build agrees with the lazy URL wherever isPlain holds, and normalises elsewhere.
  for (const target of ["/api/x?a=1&b=%20", "/a/b.c/~d:e@f", "/x?y?z"]) {
    assert.equal(checkedRequest(parts({ url: `http://h${target}` })).url, `http://h${target}`);
  }
  assert.equal(checkedRequest(parts({ url: "http://h/api/../x" })).url, "http://h/x");
  assert.throws(() => checkedRequest(parts({ method: "TRACE" })), TypeError);
});

Deno.test("strings, JSON and bytes convert at once with an exact length; streams and Blobs do not", () => {
  const c = new ResponseConverter();
  const text = c.convertStatic(new Response("héllo", { status: 201, headers: { "x-a": "1" } }));
  assert.ok(text !== null);
  assert.equal(text.reply.status, 201);
  assert.equal(decoder.decode(text.reply.body!), "héllo");
  const head = decoder.decode(text.reply.head);
  assert.match(head, /^HTTP\/1\.1 201 Created\r\nServer: Vento\r\nX-Content-Type-Options: nosniff\r\n/);
  assert.match(head, /\r\nx-a: 1\r\n/);
  assert.match(head, /\r\ncontent-length: 6\r\n$/);
  const json = c.convertStatic(Response.json({ a: [1, 2] }));
  assert.equal(decoder.decode(json!.reply.body!), '{"a":[1,2]}');
  assert.match(decoder.decode(json!.reply.head), /content-type: application\/json\r\n/);
  const bytes = c.convertStatic(new Response(new Uint8Array([1, 2, 3])));
  assert.deepEqual([...bytes!.reply.body!], [1, 2, 3]);
  const none = c.convertStatic(new Response(null, { status: 204 }));
  assert.equal(none!.reply.length, 0);
  assert.doesNotMatch(decoder.decode(none!.reply.head), /content-length/);
  assert.equal(c.convertStatic(new Response(new ReadableStream())), null);
  assert.equal(c.convertStatic(new Response(new Blob(["x"]))), null);
  // A body larger than the scratch buffer still converts exactly.
  const big = "é".repeat(20_000);
  assert.equal(decoder.decode(c.convertStatic(new Response(big))!.reply.body!), big);
});

Deno.test("every Set-Cookie is kept; hop-by-hop, framing and Date headers are not", () => {
  const c = new ResponseConverter();
  const h = new Headers([["set-cookie", "a=1"], ["set-cookie", "b=2"], ["connection", "close"]]);
  h.append("keep-alive", "timeout=5");
  h.append("date", "yesterday");
  h.append("content-length", "99");
  const r = c.convertStatic(new Response("x", { headers: h }))!;
  const head = decoder.decode(r.reply.head);
  assert.match(head, /set-cookie: a=1\r\nset-cookie: b=2\r\n/);
  assert.doesNotMatch(head, /connection|keep-alive|date|yesterday|99/i);
  assert.deepEqual(r.refused.sort(), ["connection", "content-length", "keep-alive"]);
});

Deno.test("a Response Vento cannot send is refused with a reason", async () => {
  const c = new ResponseConverter();
  assert.throws(() => c.convertStatic(Response.error()), BadResponse);
  const used = new Response("x");
  await used.text();
  assert.throws(() => c.convertStatic(used), /already used/);
  const odd = new Response(
    new ReadableStream<string>({
      start: (ctl) => ctl.enqueue("text, not bytes"),
    }) as unknown as ReadableStream<Uint8Array>,
  );
  await assert.rejects(c.convert(odd, { http10: false, isHead: false }), /gave a string, not a Uint8Array/);
});

Deno.test("loadApp names what is wrong with a module", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-loadapp-" });
  try {
    await Deno.writeTextFile(`${dir}/none.js`, "export const x = 1;\n");
    await Deno.writeTextFile(`${dir}/nofetch.js`, "export default { get() {} };\n");
    await Deno.writeTextFile(`${dir}/broken.js`, "export default {\n");
    await Deno.writeTextFile(`${dir}/ok.js`, "export default { fetch: () => new Response('ok') };\n");
    await assert.rejects(loadApp(`${dir}/none.js`, 0), /has no default export/);
    await assert.rejects(
      loadApp(`${dir}/nofetch.js`, 0),
      /default export has no fetch\(request, info\) method/,
    );
    await assert.rejects(loadApp(`${dir}/broken.js`, 0), AppLoadError);
    const app = await loadApp(`${dir}/ok.js`, 0);
    assert.equal(
      await (await app.fetch(new Request("http://h/"), {
        remoteAddr: { transport: "tcp", hostname: "", port: 0 },
      })).text(),
      "ok",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an untouched Response.json or text Response converts to the same bytes as a materialised one", () => {
  const c = new ResponseConverter();
  const bytesOf = (r: Response) => {
    const converted = c.convertStatic(r)!;
    return decoder.decode(converted.reply.head) + "|" + decoder.decode(converted.reply.body!);
  };
  const touch = (r: Response) => {
    r.headers.get("x-none");
    return r;
  };
  for (
    const make of [
      () => Response.json({ a: "b" }),
      () => new Response("plain text"),
      () => Response.json("é"),
    ]
  ) {
    assert.equal(bytesOf(make()), bytesOf(touch(make())));
  }
});

Deno.test("the Request URL is https over TLS, and built from the validated Host", async () => {
  const app = new AppRoute(
    { fetch: (req) => new Response(req.url) },
    { appMaxBodyBytes: 0, appTimeoutMs: 1000 },
    () => {},
  );
  const head = {
    method: "GET",
    target: "/api/x?y",
    targetForm: "origin" as const,
    path: "/api/x?y",
    version: 11 as const,
    headers: ["host", "Example.COM:443"],
    host: "Example.COM:443",
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
  };
  const url = async (secure: boolean) =>
    decoder.decode((await app.handle({ head, body: new Uint8Array(), remote: "", connId: 1, secure })).body!);
  // The URL standard's own form: lower-case host, default port dropped.
  assert.equal(await url(true), "https://example.com/api/x?y");
  assert.equal(await url(false), "http://example.com:443/api/x?y");
});

Deno.test("a header value with bytes above 0x7F goes out as those bytes, not as UTF-8", () => {
  const c = new ResponseConverter();
  const r = c.convertStatic(new Response("x", { headers: { "x-latin1": "caf\u00e9" } }))!;
  const head = r.reply.head;
  const at = decoder.decode(head).indexOf("x-latin1: caf");
  assert.ok(at > 0);
  assert.equal(head[at + "x-latin1: caf".length], 0xe9);
  assert.equal(head[at + "x-latin1: caf".length + 1], 0x0d);
});
