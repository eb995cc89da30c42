/** The route table: echo by exact path, body limits decided before reading, everything else static. */

import assert from "node:assert/strict";
import { Router } from "../../src/routes/router.ts";
import type { RequestHead } from "../../src/http/head.ts";
import { textReply } from "../../src/http/response.ts";

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
const options = { echo: true, echoMaxBodyBytes: 1234, healthPath: "off", metricsPath: "off" };
const router = new Router(staticSide, options);

Deno.test("only POST to exactly /api/echo (query allowed) takes a body, up to the echo limit", () => {
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echo")), 1234);
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echo?x=1")), 1234);
  assert.equal(router.bodyLimitBytes(head("POST", "/api/echoes")), 0);
  assert.equal(router.bodyLimitBytes(head("PUT", "/api/echo")), 0);
  assert.equal(router.bodyLimitBytes(head("GET", "/index.html")), 0);
});

Deno.test("echo answers the body; other methods get 405 with Allow; OPTIONS * is 204", () => {
  const body = new TextEncoder().encode("hi");
  const ok = router.handle({ head: head("POST", "/api/echo"), body, remote: "127.0.0.1", connId: 1 });
  assert.ok(!(ok instanceof Promise));
  assert.equal(ok.status, 200);
  assert.equal(ok.body, body);
  const no = router.handle({ head: head("GET", "/api/echo"), body: new Uint8Array(), remote: "", connId: 1 });
  assert.ok(!(no instanceof Promise));
  assert.equal(no.status, 405);
  assert.match(new TextDecoder().decode(no.head), /Allow: POST, OPTIONS\r\n/);
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
  const live = { echo: true, echoMaxBodyBytes: 10, healthPath: "off", metricsPath: "off" };
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
