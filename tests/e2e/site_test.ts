/**
 * End-to-end tests of the site features against the real server (raw bytes and curl): the health and
 * metrics probes, `ECHO=off`, and the `_headers` / `_redirects` rules.
 */

import assert from "node:assert/strict";
import { RawClient, request } from "../_helpers/raw_client.ts";
import {
  type Files,
  startTestServer,
  type TestServer,
  withTestServer as withServer,
} from "../_helpers/server.ts";
import { BasicAuth, hashPassword } from "../../src/static/basic_auth.ts";
import { parseHeadersFile, parseRedirectsFile } from "../../src/static/rules.ts";

const H = "Host: t\r\n";

async function curlAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("curl", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}
const HAS_CURL = await curlAvailable();

/** curl's answer: the status, the response headers (lower-cased names) and the body. */
async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", "-D", "-", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  const split = text.indexOf("\r\n\r\n");
  const headers = text.slice(0, split).toLowerCase();
  return { status: Number(headers.split(" ")[1]), headers, body: text.slice(split + 4) };
}

// --- probes ---------------------------------------------------------------------------------------

Deno.test("HEALTH_PATH and METRICS_PATH answer loopback, never cached, never in the access log", async () => {
  const dir = await Deno.makeTempDir();
  const log = `${dir}/access.log`;
  const s = await startTestServer({ healthPath: "/healthz", metricsPath: "/metrics", accessLog: log });
  try {
    const h = await request(s.port, `GET /healthz HTTP/1.1\r\n${H}\r\n`);
    assert.equal(h.status, 200);
    assert.equal(h.text, "ok\n");
    assert.equal(h.headers.get("cache-control"), "no-store");
    const m = await request(s.port, `GET /metrics?x=1 HTTP/1.1\r\n${H}\r\n`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(m.text, /^# HELP vento_uptime_seconds/);
    assert.match(m.text, /\nvento_requests_total \d+\n/);
    const head = await request(s.port, `HEAD /healthz HTTP/1.1\r\n${H}\r\n`, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    if (HAS_CURL) {
      const c = await curl([`http://127.0.0.1:${s.port}/healthz`]);
      assert.equal(c.status, 200);
      assert.equal(c.body, "ok\n");
    }
    assert.equal((await request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`)).status, 200);
  } finally {
    await s.stop();
  }
  const lines = (await Deno.readTextFile(log)).trim().split("\n");
  await Deno.remove(dir, { recursive: true });
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /"GET \/ HTTP\/1\.1" 200/);
});

Deno.test("a peer outside the probe allowlist gets the ordinary path (404), not the probe", () =>
  withServer(async (s) => {
    const h = await request(s.port, `GET /healthz HTTP/1.1\r\n${H}\r\n`);
    assert.equal(h.status, 404);
    assert.match(h.text, /not here/);
    const m = await request(s.port, `GET /metrics HTTP/1.1\r\n${H}\r\n`);
    assert.equal(m.status, 404);
  }, {
    healthPath: "/healthz",
    healthAllowlist: ["192.0.2.0/24"],
    metricsPath: "/metrics",
    metricsAllowlist: ["10.0.0.0/8"],
  }));

Deno.test("HEALTH_PATH answers 503 once the server is draining", async () => {
  const s = await startTestServer({ healthPath: "/healthz" });
  const c = await RawClient.connect(s.port);
  try {
    // Half a head: the connection is busy with a request when shutdown starts, so it is answered.
    await c.send(`GET /healthz HTTP/1.1\r\n`);
    await new Promise((r) => setTimeout(r, 50));
    const stopping = s.vento.shutdown();
    await c.send(`${H}\r\n`);
    const r = await c.read();
    assert.equal(r.status, 503);
    assert.equal(r.text, "draining\n");
    assert.equal(r.headers.get("connection"), "close");
    await stopping;
  } finally {
    c.close();
    await s.stop();
  }
});

// --- ECHO=off --------------------------------------------------------------------------------------

Deno.test("ECHO=off: /api/echo is an ordinary path (POST 405, GET 404)", () =>
  withServer(async (s) => {
    const post = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`);
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD, OPTIONS");
    const get = await request(s.port, `GET /api/echo HTTP/1.1\r\n${H}\r\n`);
    assert.equal(get.status, 404);
  }, { echo: false }));

Deno.test("ECHO=on (the default) still echoes", () =>
  withServer(async (s) => {
    const post = await request(s.port, `POST /api/echo HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`);
    assert.equal(post.status, 200);
    assert.equal(post.text, "hi");
  }));

// --- _headers and _redirects ---------------------------------------------------------------------

const PASSWORD_HASH = await hashPassword("open sesame", 10_000);
const basic = (user: string, password: string) => `Authorization: Basic ${btoa(`${user}:${password}`)}\r\n`;

const SITE: Files = {
  "index.html": "<!doctype html><title>home</title>\n",
  "404.html": "<!doctype html><title>missing</title><h1>not here</h1>\n",
  "assets/app.js": "console.log(1);\n",
  "app/index.html": "<!doctype html><title>spa</title><div id=app></div>\n",
  "app/main.js": "// the spa's script\n",
  "admin/index.html": "<!doctype html><title>admin</title>\n",
  "exists.html": "<!doctype html><title>a real file</title>\n",
  "forced.html": "<!doctype html><title>forced away</title>\n",
  "_headers": [
    "# every page",
    "/*",
    "  X-Frame-Options: DENY",
    "  Strict-Transport-Security: max-age=63072000",
    "/assets/*",
    "  Cache-Control: public, max-age=31536000, immutable",
    "/api-like/*",
    "  Access-Control-Allow-Origin: https://app.example",
    "  Access-Control-Allow-Methods: GET, OPTIONS",
    "  Access-Control-Allow-Headers: Content-Type",
    "  Access-Control-Max-Age: 600",
    "/admin/*",
    `  Basic-Auth: ann:${PASSWORD_HASH}`,
    "",
  ].join("\n"),
  "_redirects": [
    "/old            /exists.html        301",
    "/temp           /exists.html        302",
    "/see            /exists.html        303",
    "/keep           /exists.html        307",
    "/perm           /exists.html        308",
    "/default        /exists.html",
    "/news/:year/:id /posts/:year-:id    301",
    "/go/*           https://example.com/:splat 302",
    "/exists.html    /elsewhere          301",
    "/forced.html    /exists.html        302!",
    "/app/*          /app/index.html     200",
    "/peek           /_headers           200",
    "/blog/*         /blog/404.html      404",
    "",
  ].join("\n"),
  "api-like/data.json": '{"ok":true}\n',
  "blog/post.html": "<!doctype html><title>a post</title>\n",
  "blog/404.html": "<!doctype html><title>no such post</title>\n",
};

const withSite = (fn: (s: TestServer) => Promise<void>) => withServer(fn, {}, SITE);

Deno.test("_headers: headers reach cached responses (hot path, repeated), 304 and 206 alike", () =>
  withSite(async (s) => {
    const c = await RawClient.connect(s.port);
    try {
      for (let i = 0; i < 3; i++) {
        await c.send(`GET /assets/app.js HTTP/1.1\r\n${H}\r\n`);
        const r = await c.read();
        assert.equal(r.status, 200);
        assert.equal(r.text, "console.log(1);\n");
        assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
        assert.equal(r.headers.get("x-frame-options"), "DENY");
        assert.equal(r.headers.get("strict-transport-security"), "max-age=63072000");
      }
      await c.send(`GET / HTTP/1.1\r\n${H}\r\n`);
      const home = await c.read();
      assert.equal(home.headers.get("x-frame-options"), "DENY");
      assert.equal(
        home.headers.get("cache-control"),
        "no-cache",
        "Vento's own Cache-Control where no rule sets one",
      );
      const etag = home.headers.get("etag")!;
      await c.send(`GET / HTTP/1.1\r\n${H}If-None-Match: ${etag}\r\n\r\n`);
      const notModified = await c.read();
      assert.equal(notModified.status, 304);
      assert.equal(notModified.headers.get("x-frame-options"), "DENY");
      await c.send(`GET /assets/app.js HTTP/1.1\r\n${H}Range: bytes=0-6\r\n\r\n`);
      const part = await c.read();
      assert.equal(part.status, 206);
      assert.equal(part.text, "console");
      assert.equal(part.headers.get("cache-control"), "public, max-age=31536000, immutable");
    } finally {
      c.close();
    }
  }));

Deno.test("_headers and _redirects are never served, not even through a rewrite", () =>
  withSite(async (s) => {
    for (const path of ["/_headers", "/_redirects", "/peek", "/%5Fheaders"]) {
      const r = await request(s.port, `GET ${path} HTTP/1.1\r\n${H}\r\n`);
      assert.equal(r.status, 404, path);
      assert.match(r.text, /not here/);
    }
  }));

Deno.test("_redirects: each status with Location, query passed on, placeholders and splats filled", () =>
  withSite(async (s) => {
    const cases: Array<[string, number, string]> = [
      ["/old", 301, "/exists.html"],
      ["/temp?x=1", 302, "/exists.html?x=1"],
      ["/see", 303, "/exists.html"],
      ["/keep/", 307, "/exists.html"],
      ["/perm", 308, "/exists.html"],
      ["/default", 301, "/exists.html"],
      ["/news/2024/7", 301, "/posts/2024-7"],
      ["/go/a/b?q=2", 302, "https://example.com/a/b?q=2"],
      ["/forced.html", 302, "/exists.html"],
    ];
    for (const [path, status, location] of cases) {
      const r = await request(s.port, `GET ${path} HTTP/1.1\r\n${H}\r\n`);
      assert.equal(r.status, status, path);
      assert.equal(r.headers.get("location"), location, path);
      assert.equal(r.headers.get("content-length"), "0");
    }
    // Not forced: the file at the path shadows its rule.
    const shadowed = await request(s.port, `GET /exists.html HTTP/1.1\r\n${H}\r\n`);
    assert.equal(shadowed.status, 200);
    assert.match(shadowed.text, /a real file/);
  }));

Deno.test("SPA fallback: /app/* serves /app/index.html for routes, real files stay themselves", () =>
  withSite(async (s) => {
    for (const path of ["/app/some/spa/route", "/app/settings?tab=2", "/app/"]) {
      const r = await request(s.port, `GET ${path} HTTP/1.1\r\n${H}\r\n`);
      assert.equal(r.status, 200, path);
      assert.match(r.text, /<title>spa<\/title>/, path);
      assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
    }
    const js = await request(s.port, `GET /app/main.js HTTP/1.1\r\n${H}\r\n`);
    assert.equal(js.text, "// the spa's script\n");
    const dir = await request(s.port, `GET /app HTTP/1.1\r\n${H}\r\n`);
    assert.equal(dir.status, 301, "the directory exists: its usual trailing-slash redirect");
  }));

Deno.test("Basic-Auth: 401 with a challenge, wrong password 401, right one 200 and private", () =>
  withSite(async (s) => {
    const none = await request(s.port, `GET /admin/ HTTP/1.1\r\n${H}\r\n`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Basic realm="Restricted", charset="UTF-8"');
    // The same protection whatever spelling of the path (percent-encoding, dot segments).
    for (const path of ["/%61dmin/", "/app/../admin/index.html", "/admin//index.html"]) {
      assert.equal((await request(s.port, `GET ${path} HTTP/1.1\r\n${H}\r\n`)).status, 401, path);
    }
    const wrong = await request(s.port, `GET /admin/ HTTP/1.1\r\n${H}${basic("ann", "nope")}\r\n`);
    assert.equal(wrong.status, 401);
    const stranger = await request(s.port, `GET /admin/ HTTP/1.1\r\n${H}${basic("bob", "open sesame")}\r\n`);
    assert.equal(stranger.status, 401);
    const c = await RawClient.connect(s.port);
    try {
      for (let i = 0; i < 3; i++) {
        await c.send(`GET /admin/ HTTP/1.1\r\n${H}${basic("ann", "open sesame")}\r\n`);
        const ok = await c.read();
        assert.equal(ok.status, 200);
        assert.match(ok.text, /<title>admin<\/title>/);
        assert.equal(ok.headers.get("cache-control"), "private, no-cache");
      }
    } finally {
      c.close();
    }
    if (HAS_CURL) {
      const r = await curl(["-u", "ann:open sesame", `http://127.0.0.1:${s.port}/admin/`]);
      assert.equal(r.status, 200);
      assert.equal((await curl([`http://127.0.0.1:${s.port}/admin/`])).status, 401);
    }
  }));

Deno.test("CORS: a preflight to a path with Access-Control rules gets them; others get plain OPTIONS", () =>
  withSite(async (s) => {
    const pre = await request(
      s.port,
      `OPTIONS /api-like/data.json HTTP/1.1\r\n${H}Origin: https://app.example\r\n` +
        `Access-Control-Request-Method: GET\r\n\r\n`,
    );
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");
    assert.equal(pre.headers.get("access-control-allow-methods"), "GET, OPTIONS");
    assert.equal(pre.headers.get("access-control-max-age"), "600");
    assert.equal(pre.headers.get("x-frame-options"), undefined, "only the CORS headers");
    const get = await request(
      s.port,
      `GET /api-like/data.json HTTP/1.1\r\n${H}Origin: https://app.example\r\n\r\n`,
    );
    assert.equal(get.headers.get("access-control-allow-origin"), "https://app.example");
    const plain = await request(s.port, `OPTIONS /index.html HTTP/1.1\r\n${H}\r\n`);
    assert.equal(plain.status, 204);
    assert.equal(plain.headers.get("access-control-allow-origin"), undefined);
    if (HAS_CURL) {
      const r = await curl([
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example",
        "-H",
        "Access-Control-Request-Method: GET",
        `http://127.0.0.1:${s.port}/api-like/data.json`,
      ]);
      assert.equal(r.status, 204);
      assert.match(r.headers, /access-control-allow-origin: https:\/\/app\.example/);
    }
  }));

Deno.test("a bad rule line refuses the start with PATH:LINE; --check says the same and exits 2", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${root}/index.html`, "hi");
    await Deno.writeTextFile(`${root}/_headers`, "/*\n  X-Ok: 1\n  Content-Length: 3\n");
    await Deno.writeTextFile(`${root}/_redirects`, "/a /b 302\n/c /d 418\n");
    await assert.rejects(
      () => startTestServer({ documentRoot: root }),
      (e: Error) => {
        assert.equal(
          e.message,
          `${root}/_headers:3: Content-Length would break the response framing (Vento sets it)\n` +
            `${root}/_redirects:2: status must be 200, 301, 302, 303, 307, 308 or 404 (optionally with !), got "418"`,
        );
        return true;
      },
    );
    await Deno.writeTextFile(
      `${root}/vento.conf`,
      `DOCUMENT_ROOT=${root}\nADMIN_SOCKET=off\nACCESS_LOG=off\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../main.ts", import.meta.url).pathname,
        "--check",
        "--config",
        `${root}/vento.conf`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, new RegExp(`vento: ${root}/_headers:3: Content-Length would break`));
    assert.match(stderr, new RegExp(`vento: ${root}/_redirects:2: status must be`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a changed _headers applies on reload; a broken one is refused and the old rules stay", () =>
  withServer(async (s) => {
    const get = () => request(s.port, `GET / HTTP/1.1\r\n${H}\r\n`);
    assert.equal((await get()).headers.get("x-version"), undefined);
    await Deno.writeTextFile(`${s.root}/_headers`, "/*\n  X-Version: 1\n");
    assert.deepEqual(await s.vento.reload(), { applied: ["_headers"], needsRestart: [] });
    assert.equal((await get()).headers.get("x-version"), "1");
    await Deno.writeTextFile(`${s.root}/_headers`, "/*\n  Transfer-Encoding: chunked\n");
    const refused = await s.vento.reload();
    assert.deepEqual(refused, {
      errors: [
        `${s.vento.config.documentRoot}/_headers:2: Transfer-Encoding would break the response framing`,
      ],
    });
    assert.equal((await get()).headers.get("x-version"), "1");
    await Deno.writeTextFile(`${s.root}/_redirects`, "/ /elsewhere 302!\n");
    await Deno.remove(`${s.root}/_headers`);
    assert.deepEqual(await s.vento.reload(), { applied: ["_headers", "_redirects"], needsRestart: [] });
    const moved = await get();
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.get("location"), "/elsewhere");
  }));

// --- docs/site.md, as written ----------------------------------------------------------------------

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const SITE_DOC = await Deno.readTextFile(`${REPO}/docs/site.md`);

/** The fenced blocks of a language in docs/site.md, without the indentation of their fence. */
function blocks(lang: string): string[] {
  return [...SITE_DOC.matchAll(new RegExp("^( *)```" + lang + "\\n([^]*?)^ *```$", "gm"))].map((m) => {
    const indent = m[1].length;
    return m[2].split("\n").map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join("\n");
  });
}

Deno.test("docs/site.md: every _headers and _redirects example parses, and its Basic-Auth hashes verify", async () => {
  const examples = blocks("text").filter((b) =>
    b.split("\n").find((l) => l !== "" && !l.startsWith("#"))?.startsWith("/")
  );
  assert.ok(examples.length >= 3, `found ${examples.length} examples`);
  for (const text of examples) {
    const isHeaders = text.split("\n").some((l) => /^\s+\S/.test(l));
    const r = isHeaders ? parseHeadersFile(text) : parseRedirectsFile(text);
    assert.ok(r.ok, `${JSON.stringify(r)}\n${text}`);
  }
  const withAuth = examples.find((t) => t.includes("Basic-Auth"))!;
  const parsed = parseHeadersFile(withAuth);
  assert.ok(parsed.ok);
  const creds = parsed.rules[0].auth!;
  const auth = new BasicAuth();
  const basicOf = (u: string, p: string) => `Basic ${btoa(`${u}:${p}`)}`;
  assert.equal(await auth.check(creds, basicOf("ann", "open sesame")), "ok");
  assert.equal(await auth.check(creds, basicOf("bob", "correct horse")), "ok");
});

Deno.test("docs/site.md: deno task hash-password from a pipe prints a hash that verifies", async () => {
  const line = blocks("sh").join("\n").split("\n").find((l) =>
    l.startsWith("printf") && l.includes("hash-password")
  )!;
  const command = line.replace(/\s+#.*$/, "");
  const out = await new Deno.Command("sh", {
    args: ["-c", command],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const hash = new TextDecoder().decode(out.stdout).trim();
  const parsed = parseHeadersFile(`/x\n  Basic-Auth: ann:${hash}\n`);
  assert.ok(parsed.ok, hash);
  assert.equal(await new BasicAuth().check(parsed.rules[0].auth!, `Basic ${btoa("ann:open sesame")}`), "ok");
});

Deno.test("docs/site.md: --check and the probe curl commands work as shown", async () => {
  const sh = blocks("sh").join("\n").split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) =>
    l !== ""
  );
  const check = sh.find((l) => l.endsWith("--check"))!;
  const out = await new Deno.Command("sh", {
    args: ["-c", check],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  // The probe commands (the compression and listing sections' commands are run by their own tests).
  const curls = sh.filter((l) => l.startsWith("curl") && /\/(healthz|metrics)\b/.test(l));
  assert.equal(curls.length, 2);
  if (!HAS_CURL) return;
  await withServer(async (s) => {
    for (const c of curls) {
      const cmd = c.replace("127.0.0.1:8080", `127.0.0.1:${s.port}`);
      const r = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" })
        .output();
      assert.equal(r.code, 0, cmd);
      const text = new TextDecoder().decode(r.stdout);
      assert.match(
        text,
        cmd.includes("healthz") ? /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok\n$/ : /^vento_requests_total \d+\n$/m,
      );
    }
  }, { healthPath: "/healthz", metricsPath: "/metrics" });
});

Deno.test("_redirects 404: a section's own not-found page, with status 404; existing files shadow it", () =>
  withSite(async (s) => {
    const missing = await request(s.port, `GET /blog/nope HTTP/1.1\r\n${H}\r\n`);
    assert.equal(missing.status, 404);
    assert.match(missing.text, /no such post/);
    assert.equal(missing.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(missing.headers.get("etag"), undefined, "no validators on a 404");
    const head = await request(s.port, `HEAD /blog/nope HTTP/1.1\r\n${H}\r\n`, "HEAD");
    assert.equal(head.status, 404);
    assert.equal(head.body.length, 0);
    const post = await request(s.port, `GET /blog/post.html HTTP/1.1\r\n${H}\r\n`);
    assert.equal(post.status, 200);
    assert.match(post.text, /a post/);
    const elsewhere = await request(s.port, `GET /nope HTTP/1.1\r\n${H}\r\n`);
    assert.equal(elsewhere.status, 404);
    assert.match(elsewhere.text, /not here/, "the site-wide 404.html outside /blog");
  }));
