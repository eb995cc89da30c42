/**
 * The route table: the app by prefix, echo by exact path, body limits (and streaming) decided before
 * reading, everything else static, and the app again for a static 404 with APP_FALLBACK=on.
 */

import assert from "node:assert/strict";
import { Router } from "../../src/routes/router.ts";
import type { RequestHead } from "../../src/http/head.ts";
import { type Reply, textReply } from "../../src/http/response.ts";
import { AppRoute } from "../../src/routes/app.ts";

function head(method: string, path: string, targetForm: RequestHead["targetForm"] = "origin"): RequestHead {
  return {
    method,
    target: path,
    targetForm,
    path,
    version: 11,
    headers: [],
    host: "t",
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
  };
}

const staticSide = { handle: () => textReply(404) };
const router = new Router(staticSide, {
  echo: true,
  healthPath: "off",
  metricsPath: "off",
  echoMaxBodyBytes: 1234,
  appPaths: ["/api/"],
  appFallback: false,
  appTimeoutMs: 1000,
});

Deno.test("only POST to exactly /api/echo (query allowed) takes a body, up to the echo limit", () => {
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echo")), 1234);
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echo?x=1")), 1234);
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echoes")), 0);
  assert.equal(router.bodyLimitBytes(head("PUT", "/api/echo")), 0);
  assert.equal(router.bodyLimitBytes(head("GET", "/index.html")), 0);
});

/** A body source handing out `bytes` in one read. */
function source(bytes: Uint8Array) {
  let done = false;
  return {
    read: () => {
      const r = done ? null : bytes;
      done = true;
      return Promise.resolve(r);
    },
  };
}

Deno.test("echo (an app on the same seam) answers the body; other methods get 405 with Allow; OPTIONS * is 204", async () => {
  const body = new TextEncoder().encode("hi");
  const ex = (method: string, path: string, b: Uint8Array | null = null) => ({
    head: head(method, path),
    body: new Uint8Array(),
    bodySource: b === null ? null : source(b),
    remote: "127.0.0.1",
    connId: 1,
  });
  assert.equal(router.streamsBody(head("POST", "/api/echo")), true);
  const ok = await router.handle(ex("POST", "/api/echo", body));
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, body);
  assert.match(new TextDecoder().decode(ok.head), /content-type: text\/plain; charset=utf-8\r\n/);
  const no = await router.handle(ex("GET", "/api/echo"));
  assert.equal(no.status, 405);
  assert.match(new TextDecoder().decode(no.head), /allow: POST, OPTIONS\r\n/);
  const options = await router.handle(ex("OPTIONS", "/api/echo"));
  assert.equal(options.status, 204);
  const star = router.handle({
    head: head("OPTIONS", "*", "asterisk"),
    body: new Uint8Array(),
    remote: "",
    connId: 1,
  });
  assert.ok(!(star instanceof Promise));
  assert.equal(star.status, 204);
  const other = router.handle({ head: head("GET", "/x"), body: new Uint8Array(), remote: "", connId: 1 });
  assert.ok(!(other instanceof Promise));
  assert.equal(other.status, 404);
});

Deno.test("the echo limit and ECHO=off are read live: a reload reaches the router", () => {
  const live = {
    echo: true,
    echoMaxBodyBytes: 10,
    healthPath: "off",
    metricsPath: "off",
    appPaths: [] as string[],
    appFallback: false,
    appTimeoutMs: 1000,
  };
  const r = new Router(staticSide, live);
  assert.equal(r.bodyLimitBytes(head("POST", "/api/echo")), 10);
  live.echoMaxBodyBytes = 20;
  assert.equal(r.bodyLimitBytes(head("POST", "/api/echo")), 20);
  live.echo = false;
  assert.equal(r.bodyLimitBytes(head("POST", "/api/echo")), 0);
  const off = r.handle({ head: head("POST", "/api/echo"), body: new Uint8Array(), remote: "", connId: 1 });
  assert.ok(!(off instanceof Promise));
  assert.equal(off.status, 404, "the static side answers, as for any other path");
});

function appRouter(options: { appPaths: string[]; appFallback: boolean }, files: Set<string>) {
  const app = new AppRoute(
    { fetch: (req) => new Response(`app ${req.method} ${new URL(req.url).pathname}`) },
    { appMaxBodyBytes: 999, appTimeoutMs: 1000 },
    () => {},
  );
  const statics = {
    handle: (h: RequestHead): Reply =>
      files.has(h.path) ? (h.method === "GET" ? textReply(200) : textReply(405)) : textReply(404),
  };
  return new Router(statics, {
    echo: true,
    healthPath: "off",
    metricsPath: "off",
    echoMaxBodyBytes: 1234,
    appTimeoutMs: 1000,
    ...options,
  }, app);
}

async function answer(r: Router, method: string, path: string): Promise<string> {
  const reply = await r.handle({ head: head(method, path), body: new Uint8Array(), remote: "", connId: 1 });
  return reply.status === 200 && reply.body !== null
    ? new TextDecoder().decode(reply.body)
    : `${reply.status}`;
}

Deno.test("APP_PATHS prefixes go to the app with its body limit, streamed; other paths stay static", async () => {
  const r = appRouter({ appPaths: ["/api/", "/auth/"], appFallback: false }, new Set(["/a.txt"]));
  assert.equal(r.bodyLimitBytes(head("PUT", "/api/x")), 999);
  assert.equal(r.streamsBody(head("PUT", "/api/x")), true);
  assert.equal(r.bodyLimitBytes(head("POST", "/other")), 0);
  assert.equal(r.streamsBody(head("POST", "/other")), false);
  assert.equal(r.appPrefix("/auth/login?next=/"), "/auth/");
  assert.equal(r.appPrefix("/apix"), null);
  assert.equal(await answer(r, "GET", "/api/users"), "app GET /api/users");
  // The app's prefixes win over the built-in echo path.
  assert.equal(await answer(r, "POST", "/api/echo"), "app POST /api/echo");
  assert.equal(await answer(r, "GET", "/a.txt"), "200 OK\n");
  assert.equal(await answer(r, "GET", "/missing"), "404");
});

Deno.test("APP_FALLBACK sends what matches no file to the app; a file keeps its static answer", async () => {
  const r = appRouter({ appPaths: ["/api/"], appFallback: true }, new Set(["/a.txt"]));
  assert.equal(await answer(r, "GET", "/missing"), "app GET /missing");
  assert.equal(await answer(r, "POST", "/missing"), "app POST /missing");
  assert.equal(await answer(r, "GET", "/a.txt"), "200 OK\n");
  assert.equal(await answer(r, "POST", "/a.txt"), "405");
  assert.equal(r.bodyLimitBytes(head("POST", "/missing")), 999);
  assert.equal(r.streamsBody(head("POST", "/missing")), true);
});

Deno.test("without an app, APP_PATHS routes nothing", () => {
  const r = new Router(staticSide, {
    echo: true,
    healthPath: "off",
    metricsPath: "off",
    echoMaxBodyBytes: 1,
    appPaths: ["/api/"],
    appFallback: true,
    appTimeoutMs: 1,
  });
  assert.equal(r.appPrefix("/api/x"), null);
  assert.equal(r.streamsBody(head("POST", "/api/x")), false);
  assert.equal(r.bodyLimitBytes(head("POST", "/api/x")), 0);
  assert.equal(r.streamsBody(head("POST", "/api/echo")), true);
});
