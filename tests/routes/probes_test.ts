/** The health and metrics probes: allowlisted peers only, GET/HEAD only, no-store, kept out of the log. */

import assert from "node:assert/strict";
import { METRICS_CONTENT_TYPE, Probes } from "../../src/routes/probes.ts";
import type { RequestHead } from "../../src/http/head.ts";
import type { Reply } from "../../src/http/response.ts";

function head(method: string, path: string): RequestHead {
  return {
    method,
    target: path,
    targetForm: "origin",
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

const text = (r: Reply) => new TextDecoder().decode(r.head) + new TextDecoder().decode(r.body ?? undefined);

function setup() {
  const options = {
    healthPath: "/healthz",
    healthAllowlist: ["127.0.0.0/8", "::1"],
    metricsPath: "/metrics",
    metricsAllowlist: ["10.0.0.0/8"],
  };
  const state = { serving: true };
  const probes = new Probes(options, { serving: () => state.serving, metrics: () => "vento_up 1\n" });
  const ask = async (method: string, path: string, remote: string) =>
    await probes.answer({ head: head(method, path), body: new Uint8Array(), remote, connId: 1 }, path);
  return { options, state, ask };
}

Deno.test("health answers 200 while serving and 503 while draining, no-store and unlogged", async () => {
  const { state, ask } = setup();
  const ok = (await ask("GET", "/healthz", "127.0.0.1"))!;
  assert.equal(ok.status, 200);
  assert.equal(ok.unlogged, true);
  assert.match(text(ok), /Cache-Control: no-store\r\nok\n$/);
  state.serving = false;
  const draining = (await ask("GET", "/healthz", "::1"))!;
  assert.equal(draining.status, 503);
  assert.equal(draining.unlogged, true);
});

Deno.test("each probe answers only its own allowlist; others fall through to the ordinary routes", async () => {
  const { ask } = setup();
  assert.equal(await ask("GET", "/healthz", "192.0.2.1"), null);
  assert.equal(await ask("GET", "/metrics", "127.0.0.1"), null, "loopback is not in METRICS_ALLOWLIST here");
  const m = (await ask("GET", "/metrics", "10.1.2.3"))!;
  assert.equal(m.status, 200);
  assert.match(text(m), new RegExp(`Content-Type: ${METRICS_CONTENT_TYPE.replace(/[.;]/g, "\\$&")}`));
  assert.match(text(m), /vento_up 1\n$/);
  assert.equal(await ask("GET", "/other", "127.0.0.1"), null);
  assert.equal(await ask("GET", "/healthz/", "127.0.0.1"), null, "exact path only");
});

Deno.test("probes refuse other methods with 405 and Allow: GET, HEAD", async () => {
  const { ask } = setup();
  const r = (await ask("POST", "/healthz", "127.0.0.1"))!;
  assert.equal(r.status, 405);
  assert.match(text(r), /Allow: GET, HEAD\r\n/);
});

Deno.test("a reload replacing the allowlist reaches the probes; off turns a probe off", async () => {
  const { options, ask } = setup();
  options.healthAllowlist = ["192.0.2.0/24"];
  assert.equal(await ask("GET", "/healthz", "127.0.0.1"), null);
  assert.equal((await ask("GET", "/healthz", "192.0.2.7"))!.status, 200);
  options.healthPath = "off";
  assert.equal(await ask("GET", "/healthz", "192.0.2.7"), null);
});

Deno.test("metrics from a supervisor (a promise) are awaited; none in time is 503", async () => {
  const options = {
    healthPath: "off",
    healthAllowlist: [],
    metricsPath: "/m",
    metricsAllowlist: ["127.0.0.1"],
  };
  let text: string | null = "vento_requests_total 7\n";
  const probes = new Probes(options, { serving: () => true, metrics: () => Promise.resolve(text) });
  const ex = { head: head("GET", "/m"), body: new Uint8Array(), remote: "127.0.0.1", connId: 1 };
  const pending = probes.answer(ex, "/m");
  assert.ok(pending instanceof Promise);
  const r = await pending;
  assert.equal(r.status, 200);
  assert.match(new TextDecoder().decode(r.body!), /vento_requests_total 7/);
  text = null;
  const none = await probes.answer(ex, "/m")!;
  assert.equal(none.status, 503);
  assert.equal(none.unlogged, true);
});
