import assert from "node:assert/strict";
import fc from "fast-check";
import { encodePath, resolvePath } from "../../src/static/resolve.ts";

const hide = { dotfiles: "hide" } as const;
const allow = { dotfiles: "allow" } as const;

Deno.test("resolver maps request paths to safe relative paths or refusals", async (t) => {
  const cases: Array<[string, string | 400 | 404, boolean?]> = [
    ["/", ""],
    ["/index.html", "index.html"],
    ["/a/b/c.txt?x=1&y=/../..", "a/b/c.txt"],
    ["/a/./b/../c", "a/c"],
    ["//etc/passwd", "etc/passwd"],
    ["/a//b///c", "a/b/c"],
    ["/caf%C3%A9.txt", "café.txt"],
    ["/a%20b", "a b"],
    ["/%252e%252e/x", "%2e%2e/x"],
    ["/a/%2e%2e/b", "b"],
    ["/../", 404],
    ["/..", 404],
    ["/%2e%2e/", 404],
    ["/%2E%2E/etc/passwd", 404],
    ["/a/../../etc/passwd", 404],
    ["/..%2f", 400],
    ["/a%2fb", 400],
    ["/a%2Fb", 400],
    ["/%5c", 400],
    ["/a\\b", 400],
    ["/..%5c..%5cwindows", 400],
    ["/%00", 400],
    ["/a%00.html", 400],
    ["/%0a", 400],
    ["/%", 400],
    ["/%4", 400],
    ["/%zz", 400],
    ["/a%4g", 400],
    ["/%C3%28", 400], // invalid UTF-8
    ["/%FF", 400],
    ["/%ED%A0%80", 400], // encoded surrogate
    ["*", 400],
    ["", 400],
    ["relative", 400],
    ["/a#frag", 400],
    ["/.env", 404],
    ["/.git/config", 404],
    ["/a/.hidden/b", 404],
    ["/%2egit/config", 404],
    ["/.well-known/security.txt", ".well-known/security.txt"],
    ["/.well-known/.secret", 404],
    ["/a/.well-known/x", 404],
    ["/" + "a".repeat(256), 404],
    ["/" + "a".repeat(255), "a".repeat(255)],
  ];
  for (const [path, want] of cases) {
    await t.step(
      `${JSON.stringify(path.slice(0, 40))} → ${
        typeof want === "number" ? want : JSON.stringify(want.slice(0, 40))
      }`,
      () => {
        const r = resolvePath(path, hide);
        if (typeof want === "number") assert.deepEqual(r, { ok: false, refuse: want });
        else {
          assert.ok(r.ok, `expected ok for ${path}, got ${JSON.stringify(r)}`);
          assert.equal(r.relative, want);
        }
      },
    );
  }
});

Deno.test("resolver serves dotfiles only when allowed", () => {
  const r = resolvePath("/.env", allow);
  assert.ok(r.ok);
  assert.equal(r.relative, ".env");
});

Deno.test("resolver reports trailing slashes and keeps the query for redirects", () => {
  const a = resolvePath("/docs?x=1", hide);
  assert.ok(a.ok);
  assert.equal(a.trailingSlash, false);
  assert.equal(a.query, "?x=1");
  const b = resolvePath("/docs/", hide);
  assert.ok(b.ok);
  assert.equal(b.trailingSlash, true);
  const c = resolvePath("/docs/.", hide);
  assert.ok(c.ok && c.trailingSlash);
  const root = resolvePath("/", hide);
  assert.ok(root.ok && root.trailingSlash && root.segments.length === 0);
});

Deno.test("resolver judges a trailing slash on decoded segments, so %2e means the same as .", () => {
  const cases: Array<[string, boolean]> = [
    ["/a/b.txt/.", true],
    ["/a/b.txt/%2e", true],
    ["/a/b.txt/%2E?q", true],
    ["/a/b/%2e%2e", true],
    ["/a/b/..", true],
    ["/a//", true],
    ["//a//b.txt", false],
    ["/a/%2e/b.txt", false],
  ];
  for (const [path, trailing] of cases) {
    const r = resolvePath(path, hide);
    assert.ok(r.ok, path);
    assert.equal(r.trailingSlash, trailing, path);
  }
});

Deno.test("encodePath never produces a scheme-relative //host location", () => {
  assert.equal(encodePath([], true), "/");
  assert.equal(encodePath(["evil.com", "x"], true), "/evil.com/x/");
  assert.equal(encodePath(["a b", "c?d", "e#f"], false), "/a%20b/c%3Fd/e%23f");
  const r = resolvePath("//evil.com", hide);
  assert.ok(r.ok);
  assert.ok(!encodePath(r.segments, true).startsWith("//"));
});

const PIECES = [
  "..",
  ".",
  "%2e",
  "%2E",
  "%2e%2e",
  "%2f",
  "%5c",
  "%00",
  "%25",
  "%252e",
  "a",
  "b",
  "%C3%A9",
  "\\",
  "%",
  "?",
];

Deno.test("no generated path ever resolves outside the root", () => {
  const pathArb = fc.array(
    fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 4 })),
    { maxLength: 12 },
  ).chain((parts) =>
    fc.array(fc.constantFrom("/", "//", ""), { minLength: parts.length, maxLength: parts.length }).map((
      seps,
    ) => "/" + parts.map((p, i) => p + seps[i]).join(""))
  );
  fc.assert(
    fc.property(pathArb, fc.constantFrom("hide", "allow" as const), (path, dotfiles) => {
      const r = resolvePath(path, { dotfiles: dotfiles as "hide" | "allow" });
      if (!r.ok) return r.refuse === 400 || r.refuse === 404;
      for (const s of r.segments) {
        if (s === "" || s === "." || s === ".." || /[\/\\\0]/.test(s)) return false;
        if (dotfiles === "hide" && s.startsWith(".") && s !== ".well-known") return false;
      }
      return r.relative === r.segments.join("/");
    }),
    { numRuns: 3000 },
  );
});
