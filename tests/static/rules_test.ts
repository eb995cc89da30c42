/** `_headers` / `_redirects`: parsing (line-numbered errors, refused headers), matching, merging. */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  compilePattern,
  headersFor,
  matchPattern,
  mergeHeaders,
  type Parsed,
  parseHeadersFile,
  parsePasswordHash,
  parseRedirectsFile,
  privateCacheControl,
  redirectFor,
  withQuery,
} from "../../src/static/rules.ts";

function ok<T>(r: Parsed<T>): T[] {
  if (!r.ok) assert.fail(JSON.stringify(r.errors));
  return r.rules;
}

function errs<T>(r: Parsed<T>): string[] {
  if (r.ok) assert.fail("expected errors");
  return r.errors.map((e) => `${e.line}: ${e.message}`);
}

/** A valid hash (of "secret", 10000 iterations) for parser tests. */
const HASH = "$pbkdf2-sha256$i=10000$c2FsdHNhbHRzYWx0$" + "A".repeat(43);

Deno.test("patterns: literal, :placeholder, final splat; trailing slash optional; query-less", () => {
  const p = compilePattern("/news/:year/:slug") as Exclude<ReturnType<typeof compilePattern>, string>;
  assert.deepEqual(matchPattern(p, "/news/2024/hello"), { year: "2024", slug: "hello" });
  assert.deepEqual(matchPattern(p, "/news/2024/hello/"), { year: "2024", slug: "hello" });
  assert.equal(matchPattern(p, "/news/2024"), null);
  assert.equal(matchPattern(p, "/news/2024/a/b"), null);
  assert.equal(matchPattern(p, "/news//hello"), null, "a placeholder never matches an empty segment");
  const s = compilePattern("/app/*") as Exclude<ReturnType<typeof compilePattern>, string>;
  assert.deepEqual(matchPattern(s, "/app/a/b"), { splat: "a/b" });
  assert.deepEqual(matchPattern(s, "/app/a/"), { splat: "a/" });
  assert.deepEqual(matchPattern(s, "/app"), { splat: "" });
  assert.equal(matchPattern(s, "/apple"), null);
  const all = compilePattern("/*") as Exclude<ReturnType<typeof compilePattern>, string>;
  assert.deepEqual(matchPattern(all, "/"), { splat: "" });
  assert.deepEqual(matchPattern(all, "/x/y.css"), { splat: "x/y.css" });
  const root = compilePattern("/") as Exclude<ReturnType<typeof compilePattern>, string>;
  assert.deepEqual(matchPattern(root, "/"), {});
  assert.equal(matchPattern(root, "/x"), null);
});

Deno.test("patterns refuse hosts, queries, inner splats and bad placeholders with a reason", () => {
  assert.match(compilePattern("https://example.com/*") as string, /host-specific/);
  assert.match(compilePattern("/a?b=1") as string, /path only/);
  assert.match(compilePattern("/a/*/b") as string, /last segment/);
  assert.match(compilePattern("/a/*.js") as string, /last segment/);
  assert.match(compilePattern("/:a/:a") as string, /twice/);
  assert.match(compilePattern("/:1x") as string, /placeholder/);
  assert.match(compilePattern("a") as string, /start with/);
  assert.match(compilePattern("/a/../b") as string, /dot segments/);
});

Deno.test("_headers: rules merge in order, same names join, ! removes, placeholders fill in", () => {
  const rules = ok(parseHeadersFile(
    [
      "# security for every page",
      "/*",
      "  X-Frame-Options: DENY",
      "  Link: </style.css>; rel=preload",
      "",
      "/assets/*",
      "\tCache-Control: public, max-age=31536000, immutable",
      "  Link: </font.woff2>; rel=preload",
      "/embed/*",
      "  ! X-Frame-Options",
      "/u/:name",
      "  X-User: :name",
      "  Set-Cookie: a=1",
      "  Set-Cookie: b=2",
    ].join("\n"),
  ));
  assert.equal(rules.length, 4);
  assert.deepEqual(headersFor(rules, "/assets/app.js").headers, [
    ["X-Frame-Options", "DENY"],
    ["Link", "</style.css>; rel=preload, </font.woff2>; rel=preload"],
    ["Cache-Control", "public, max-age=31536000, immutable"],
  ]);
  assert.deepEqual(headersFor(rules, "/embed/x").headers, [["Link", "</style.css>; rel=preload"]]);
  assert.deepEqual(headersFor(rules, "/u/ann").headers.slice(2), [
    ["X-User", "ann"],
    ["Set-Cookie", "a=1"],
    ["Set-Cookie", "b=2"],
  ]);
  assert.deepEqual(headersFor([], "/x"), { headers: [], auth: null, perPath: false });
  assert.equal(headersFor(rules, "/u/ann").perPath, true);
  assert.equal(headersFor(rules, "/assets/app.js").perPath, false);
});

Deno.test("_headers refuses framing, hop-by-hop and Vento's own headers, each with its line", () => {
  const text = [
    "/*",
    "  Content-Length: 5",
    "  Transfer-Encoding: chunked",
    "  Connection: close",
    "  Keep-Alive: timeout=5",
    "  Date: x",
    "  Upgrade: h2c",
    "  X-Content-Type-Options: sniff",
    "  X-Content-Type-Options: nosniff",
    "  Bad Name: x",
    "  X-Ctl: a\u0007b",
    "  X-Latin: caf\u00e9",
    "no-slash",
    "  X-Ok: 1",
  ].join("\n");
  assert.deepEqual(errs(parseHeadersFile(text)), [
    "2: Content-Length would break the response framing (Vento sets it)",
    "3: Transfer-Encoding would break the response framing",
    "4: Connection is hop-by-hop (Vento manages the connection)",
    "5: Keep-Alive is hop-by-hop (Vento manages the connection)",
    "6: Date is set by Vento on every response",
    "7: Upgrade is hop-by-hop",
    "8: X-Content-Type-Options is always nosniff (Vento sends it)",
    '10: "Bad Name" is not a valid header name',
    "11: X-Ctl: a value must be printable ASCII (no control or non-ASCII characters)",
    "12: X-Latin: a value must be printable ASCII (no control or non-ASCII characters)",
    '13: a path pattern must start with "/", got "no-slash"',
  ]);
  assert.deepEqual(errs(parseHeadersFile("  X-A: 1\n/a\n")), [
    "1: a header line must follow a path pattern line",
    '2: "/a" has no header lines below it',
  ]);
  assert.deepEqual(errs(parseHeadersFile("/a\n  no colon here\n")), [
    '2: expected "Name: value", got "no colon here"',
  ]);
});

Deno.test("_headers Basic-Auth takes user:hash pairs; a plain password is refused without being echoed", () => {
  const rules = ok(parseHeadersFile(`/admin/*\n  Basic-Auth: ann:${HASH} bob:${HASH}\n`));
  const auth = headersFor(rules, "/admin/x").auth!;
  assert.deepEqual(auth.map((c) => c.user), ["ann", "bob"]);
  assert.equal(auth[0].password.iterations, 10000);
  assert.equal(headersFor(rules, "/public").auth, null);
  const bad = errs(parseHeadersFile("/admin/*\n  Basic-Auth: ann:hunter2\n"));
  assert.equal(bad.length, 1);
  assert.match(bad[0], /^2: Basic-Auth: the password of "ann" is not a \$pbkdf2-sha256/);
  assert.match(bad[0], /deno task hash-password/);
  assert.ok(!bad[0].includes("hunter2"));
  assert.match(errs(parseHeadersFile(`/a\n  Basic-Auth: ann:${HASH} ann:${HASH}\n`))[0], /listed twice/);
  assert.match(
    parsePasswordHash("$pbkdf2-sha256$i=10$c2FsdHNhbHRzYWx0$" + "A".repeat(43)) as string,
    /iterations/,
  );
  assert.match(parsePasswordHash("$pbkdf2-sha256$i=10000$c2FsdA$" + "A".repeat(43)) as string, /salt/);
  assert.match(parsePasswordHash("$pbkdf2-sha256$i=10000$c2FsdHNhbHRzYWx0$AAAA") as string, /32-byte/);
});

Deno.test("_redirects: statuses, default 301, force, splat and placeholders, first match wins", () => {
  const rules = ok(parseRedirectsFile(
    [
      "# old blog",
      "/old            /new",
      "/news/:y/:slug  /blog/:y/:slug   302",
      "/go/*           https://example.com/:splat 308!",
      "/app/*          /app/index.html  200",
      "/app/*          /never           301 # shadowed by the line above",
      "/see            /other           303",
      "/tmp            /t               307",
    ].join("\n"),
  ));
  assert.equal(rules.length, 7);
  assert.deepEqual(rules.map((r) => [r.status, r.force]), [
    [301, false],
    [302, false],
    [308, true],
    [200, false],
    [301, false],
    [303, false],
    [307, false],
  ]);
  assert.equal(redirectFor(rules, "/old/")!.to, "/new");
  assert.equal(redirectFor(rules, "/news/2024/hi")!.to, "/blog/2024/hi");
  assert.equal(redirectFor(rules, "/go/a/b")!.to, "https://example.com/a/b");
  assert.equal(redirectFor(rules, "/app/x/y")!.rule.line, 5);
  assert.equal(redirectFor(rules, "/nothing"), null);
  assert.equal(withQuery("/new", "?a=1"), "/new?a=1");
  assert.equal(withQuery("/new?b=2", "?a=1"), "/new?b=2");
});

Deno.test("_redirects never produces a scheme-relative //host destination from a capture", () => {
  const rules = ok(parseRedirectsFile("/r/* /:splat 302\n"));
  assert.equal(redirectFor(rules, "/r//evil.example/x")!.to, "/evil.example/x");
  assert.deepEqual(errs(parseRedirectsFile("/a //evil.example 302\n")), [
    '1: "//evil.example" is not a valid destination',
  ]);
});

Deno.test("_redirects reports every bad line with its number", () => {
  const text = [
    "/a",
    "/b /c 410",
    "/d /e 301 Country=us",
    "/f https://other.example/ 200",
    "/g /h/:x",
    "/store id=:id /blog/:id 301",
    "https://old.example/* /new 301",
    "/ok /fine",
  ].join("\n");
  assert.deepEqual(errs(parseRedirectsFile(text)), [
    '1: expected "FROM TO [STATUS]", got "/a"',
    '2: status must be 200, 301, 302, 303, 307, 308 or 404 (optionally with !), got "410"',
    '3: unexpected "Country=us" after the status (conditions are not supported)',
    "4: a rewrite (200) must stay on this site: proxying to another origin is not supported",
    '5: "/h/:x" uses :x, which "/g" does not capture',
    '6: the destination must be a path (/…) or an http(s) URL, got "id=:id" (query conditions are not supported)',
    '7: host-specific rules ("https://old.example/*") are not supported: write the path only',
  ]);
});

Deno.test("mergeHeaders: custom replaces Vento's of the same name, Vary combines, others append", () => {
  const own = [["Content-Type", "text/html"], ["Cache-Control", "no-cache"], [
    "Vary",
    "Accept-Encoding",
  ]] as const;
  assert.deepEqual(
    mergeHeaders(own, [["cache-control", "max-age=60"], ["Vary", "Origin, accept-encoding"], ["X-A", "1"]]),
    [["Content-Type", "text/html"], ["Cache-Control", "max-age=60"], ["Vary", "Accept-Encoding, Origin"], [
      "X-A",
      "1",
    ]],
  );
  assert.equal(privateCacheControl("public, max-age=3600"), "private, max-age=3600");
  assert.equal(privateCacheControl("no-cache"), "private, no-cache");
  assert.equal(privateCacheControl("private, no-store"), "private, no-store");
});

Deno.test("property: parsers never throw, and matching never throws, on arbitrary text", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 60 }), (text, path) => {
      const h = parseHeadersFile(text);
      const r = parseRedirectsFile(text);
      if (h.ok) headersFor(h.rules, "/" + path);
      if (r.ok) {
        const m = redirectFor(r.rules, "/" + path);
        if (m !== null) assert.ok(!m.to.startsWith("//"));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("the benchmark's rule files parse to 20 header rules and 50 redirects", async () => {
  const { benchRules } = await import("../../bench/load.ts");
  const files = benchRules();
  assert.equal(ok(parseHeadersFile(files.headers)).length, 20);
  const redirects = ok(parseRedirectsFile(files.redirects));
  assert.equal(redirects.length, 50);
  assert.equal(redirectFor(redirects, "/1k.bin"), null);
});

Deno.test("_headers: a header line with no pattern above is reported even after other errors", () => {
  assert.deepEqual(errs(parseHeadersFile("/a\n  Date: x\n/b?q\n  X-Skipped: 1\n")), [
    "2: Date is set by Vento on every response",
    '3: "/b?q": rules match the path only (query and fragment conditions are not supported)',
  ]);
  assert.deepEqual(errs(parseHeadersFile("/a\n  Date: x\n")).length, 1);
  assert.deepEqual(errs(parseHeadersFile("# top\n  X-Orphan: 1\n/a\n  Date: x\n")), [
    "2: a header line must follow a path pattern line",
    "4: Date is set by Vento on every response",
  ]);
});
