/** The static responder with `_headers` / `_redirects` rules: heads precomputed with the rules folded in. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import type { RequestHead } from "../../src/http/head.ts";
import type { Reply } from "../../src/http/response.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { StaticResponder } from "../../src/static/responder.ts";
import { parseHeadersFile, parseRedirectsFile, type SiteRules } from "../../src/static/rules.ts";
import { hashPassword } from "../../src/static/basic_auth.ts";

function req(method: string, path: string, headers: Record<string, string> = {}): RequestHead {
  const flat: string[] = ["host", "t"];
  for (const [k, v] of Object.entries(headers)) flat.push(k.toLowerCase(), v);
  return {
    method,
    target: path,
    targetForm: "origin",
    path,
    version: 11,
    headers: flat,
    host: "t",
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
  };
}

function rules(headers: string, redirects = ""): SiteRules {
  const h = parseHeadersFile(headers);
  const r = parseRedirectsFile(redirects);
  if (!h.ok || !r.ok) throw new Error("bad test rules");
  return { headers: h.rules, redirects: r.rules, hasAuth: h.rules.some((x) => x.auth !== null) };
}

const headOf = (r: Reply) => new TextDecoder().decode(r.head);

async function withResponder(fn: (s: StaticResponder, root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(`${root}/a.css`, "a{}\n");
  await Deno.writeTextFile(`${root}/big.bin`, "x".repeat(100_000));
  const s = await StaticResponder.create(
    { ...DEFAULT_CONFIG, documentRoot: root, fileCacheMaxFileBytes: 1024 },
    new FakeClock(),
  );
  try {
    await fn(s, root);
  } finally {
    s.close();
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("a cached file with rules is answered synchronously with one frozen, reusable reply", () =>
  withResponder(async (s) => {
    s.setRules(rules("/*\n  X-Frame-Options: DENY\n/a.css\n  Cache-Control: max-age=60\n"));
    const first = await s.handle(req("GET", "/a.css"));
    assert.match(headOf(first), /\r\nCache-Control: max-age=60\r\n/);
    assert.match(headOf(first), /\r\nX-Frame-Options: DENY\r\n/);
    assert.equal((headOf(first).match(/Cache-Control/g) ?? []).length, 1, "replaced, not duplicated");
    const second = s.handle(req("GET", "/a.css"));
    assert.ok(!(second instanceof Promise), "the hot path stays synchronous");
    assert.equal(second, s.handle(req("GET", "/a.css")), "the same object every hit");
    assert.equal(second.reusable, true);
    assert.ok(Object.isFrozen(second));
    const head = s.handle(req("HEAD", "/a.css")) as Reply;
    assert.equal(head.body, null);
    assert.equal(headOf(head), headOf(second));
  }));

Deno.test("setRules drops the folded heads: the next answer carries the new rules", () =>
  withResponder(async (s) => {
    s.setRules(rules("/*\n  X-Version: 1\n"));
    assert.match(headOf(await s.handle(req("GET", "/a.css"))), /X-Version: 1\r\n/);
    s.setRules(rules("/*\n  X-Version: 2\n"));
    assert.match(headOf(await s.handle(req("GET", "/a.css"))), /X-Version: 2\r\n/);
    s.setRules(null);
    assert.doesNotMatch(headOf(await s.handle(req("GET", "/a.css"))), /X-Version/);
  }));

Deno.test("streamed (uncached) files and their ranges carry the rules too", () =>
  withResponder(async (s) => {
    s.setRules(rules("/big.bin\n  X-Big: yes\n"));
    const full = await s.handle(req("GET", "/big.bin"));
    assert.ok(full.stream !== null);
    full.stream.cancel();
    assert.match(headOf(full), /X-Big: yes\r\n/);
    const part = await s.handle(req("GET", "/big.bin", { range: "bytes=0-9" }));
    assert.equal(part.status, 206);
    part.stream?.cancel();
    assert.match(headOf(part), /X-Big: yes\r\n/);
  }));

Deno.test("a 200 rewrite is remembered per request path and served like the target file", () =>
  withResponder(async (s) => {
    s.setRules(rules("/*\n  X-Any: 1\n", "/styles/* /a.css 200\n/gone /a.css 308\n"));
    const r = await s.handle(req("GET", "/styles/x/y.css"));
    assert.equal(r.status, 200);
    assert.equal(new TextDecoder().decode(r.body!), "a{}\n");
    assert.match(headOf(r), /Content-Type: text\/css/);
    assert.equal(s.handle(req("GET", "/styles/x/y.css")), r, "remembered: synchronous and shared");
    const moved = await s.handle(req("GET", "/gone?q=1"));
    assert.equal(moved.status, 308);
    assert.match(headOf(moved), /\r\nLocation: \/a\.css\?q=1\r\n/);
    assert.doesNotMatch(headOf(moved), /X-Any/, "redirects carry only Vento's headers");
  }));

Deno.test("Basic-Auth: one challenge, one Cache-Control; the protected 200 is private", () =>
  withResponder(async (s) => {
    const hash = await hashPassword("pw", 10_000);
    s.setRules(rules(`/a.css\n  Basic-Auth: ann:${hash}\n`));
    const denied = await s.handle(req("GET", "/a.css"));
    assert.equal(denied.status, 401);
    assert.equal((headOf(denied).match(/\r\nCache-Control: /g) ?? []).length, 1);
    assert.equal((headOf(denied).match(/\r\nWWW-Authenticate: /g) ?? []).length, 1);
    const ok = await s.handle(req("GET", "/a.css", { authorization: `Basic ${btoa("ann:pw")}` }));
    assert.equal(ok.status, 200);
    assert.match(headOf(ok), /\r\nCache-Control: private, max-age=3600\r\n/);
    const open = await s.handle(req("OPTIONS", "/a.css"));
    assert.equal(open.status, 204, "OPTIONS never asks for credentials");
  }));

Deno.test("paths the same rules match share one folded reply; per-path values are not kept whole", () =>
  withResponder(async (s) => {
    s.setRules(
      rules(
        "/*\n  X-Frame-Options: DENY\n/u/:name\n  X-User: :name\n",
        "/spa/* /a.css 200\n/u/* /a.css 200\n",
      ),
    );
    const a = await s.handle(req("GET", "/spa/one"));
    const b = await s.handle(req("GET", "/spa/two/three"));
    assert.equal(a, b, "one reply (and so one whole-response copy) for every SPA route");
    assert.equal(a.reusable, true);
    const ann = await s.handle(req("GET", "/u/ann"));
    const bob = await s.handle(req("GET", "/u/bob"));
    assert.match(headOf(ann), /\r\nX-User: ann\r\n/);
    assert.match(headOf(bob), /\r\nX-User: bob\r\n/);
    assert.notEqual(ann.reusable, true, "a head filled in per path is not kept as a whole response");
    assert.equal(s.handle(req("GET", "/u/ann")), ann, "still remembered per route");
  }));

Deno.test("property: rewrites and redirects built from any request path never leave the document root", async () => {
  const outer = await Deno.makeTempDir();
  const root = `${outer}/www`;
  await Deno.mkdir(root);
  await Deno.writeTextFile(`${outer}/secret.txt`, "SECRET\n");
  await Deno.writeTextFile(`${root}/ok.txt`, "ok\n");
  await Deno.writeTextFile(`${root}/_headers`, "/*\n  X-A: 1\n");
  const s = await StaticResponder.create({ ...DEFAULT_CONFIG, documentRoot: root }, new FakeClock());
  s.setRules(rules("/*\n  X-A: :splat\n", "/r/* /:splat 200\n/d/:a/* /:a/../:splat 200\n/g/* /:splat 302\n"));
  const segment = fc.oneof(
    fc.constantFrom("..", ".", "%2e%2e", "%2E.", "secret.txt", "ok.txt", "_headers", "%2f", "%5c", "", "www"),
    fc.stringMatching(/^[A-Za-z0-9._~%-]{1,8}$/),
  );
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("/r/", "/d/", "/g/", "/"),
        fc.array(segment, { maxLength: 6 }),
        async (prefix, segs) => {
          const r = await s.handle(req("GET", prefix + segs.join("/")));
          const body = r.body === null ? "" : new TextDecoder().decode(r.body);
          r.stream?.cancel();
          assert.ok(!body.includes("SECRET"), `served the secret for ${prefix}${segs.join("/")}`);
          assert.ok(!body.includes("X-A"), "never the rule file");
          const location = /\r\nLocation: ([^\r]*)\r\n/.exec(headOf(r))?.[1];
          if (location !== undefined) assert.ok(!location.startsWith("//"), location);
        },
      ),
      { numRuns: 400 },
    );
  } finally {
    s.close();
    await Deno.remove(outer, { recursive: true });
  }
});
