/**
 * Real clients against the real server: Deno's `fetch` and `curl` download files and ranges and verify
 * the bytes by sha256, revalidate with ETag and If-Modified-Since (304), send HEAD, and decode the
 * precompressed sidecars they negotiate. Our raw reader is not involved, so a framing mistake that it
 * happens to tolerate still fails here.
 *
 * The curl tests are skipped (with the reason in their name) when curl is not installed.
 */

import assert from "node:assert/strict";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { startTestServer, type TestServer } from "../_helpers/server.ts";

/** Deterministic bytes (xorshift32) so every range has distinct content. */
function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** 8 MiB: streamed (above the cache's per-file limit), big enough for many socket writes. */
const BIG = pattern(8 * 1024 * 1024, 3);
const SMALL = pattern(20_000, 5);
const SCRIPT = "export const greeting = 'hello from vento';\n".repeat(200);
const SCRIPT_BYTES = new TextEncoder().encode(SCRIPT);

const FILES: Record<string, string | Uint8Array> = {
  "index.html": "<!doctype html><title>clients</title><h1>hello</h1>\n",
  "404.html": "<h1>client 404</h1>\n",
  "big.bin": BIG,
  "small.bin": SMALL,
  "app.js": SCRIPT,
  "app.js.gz": gzipSync(SCRIPT_BYTES),
  "app.js.br": brotliCompressSync(SCRIPT_BYTES),
  "docs/index.html": "<h1>docs</h1>\n",
};

async function withServer(fn: (s: TestServer, base: string) => Promise<void>): Promise<void> {
  const s = await startTestServer({}, FILES);
  try {
    await fn(s, `http://127.0.0.1:${s.port}`);
    assert.deepEqual(s.errors, []);
  } finally {
    await s.stop();
  }
}

// ------------------------------------------------------------------------------------------------
// fetch

Deno.test("fetch downloads a streamed file and a cached one with matching sha256", () =>
  withServer(async (_s, base) => {
    const big = await fetch(`${base}/big.bin`);
    assert.equal(big.status, 200);
    assert.equal(big.headers.get("content-length"), String(BIG.length));
    assert.equal(big.headers.get("accept-ranges"), "bytes");
    assert.equal(sha256(new Uint8Array(await big.arrayBuffer())), sha256(BIG));
    const small = await fetch(`${base}/small.bin`);
    assert.equal(sha256(new Uint8Array(await small.arrayBuffer())), sha256(SMALL));
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), "<h1>client 404</h1>\n");
  }));

Deno.test("fetch gets single ranges as 206 with exact bytes", () =>
  withServer(async (_s, base) => {
    const cases: Array<[string, string, number, number]> = [
      ["/big.bin", "bytes=1000-1999", 1000, 1999],
      ["/big.bin", "bytes=-4096", BIG.length - 4096, BIG.length - 1],
      ["/big.bin", `bytes=${BIG.length - 10}-`, BIG.length - 10, BIG.length - 1],
      ["/small.bin", "bytes=5-14", 5, 14],
    ];
    for (const [path, range, start, end] of cases) {
      const bytes = path === "/big.bin" ? BIG : SMALL;
      const r = await fetch(`${base}${path}`, { headers: { range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers.get("content-range"), `bytes ${start}-${end}/${bytes.length}`);
      assert.equal(sha256(new Uint8Array(await r.arrayBuffer())), sha256(bytes.subarray(start, end + 1)));
    }
    const unsatisfiable = await fetch(`${base}/small.bin`, { headers: { range: "bytes=999999-" } });
    assert.equal(unsatisfiable.status, 416);
    assert.equal(unsatisfiable.headers.get("content-range"), `bytes */${SMALL.length}`);
    await unsatisfiable.body?.cancel();
  }));

Deno.test("fetch revalidates with If-None-Match and If-Modified-Since (304), and HEAD has no body", () =>
  withServer(async (_s, base) => {
    for (const path of ["/small.bin", "/big.bin"]) {
      const first = await fetch(`${base}${path}`);
      await first.body?.cancel();
      const etag = first.headers.get("etag")!;
      const lastModified = first.headers.get("last-modified")!;
      const byTag = await fetch(`${base}${path}`, { headers: { "if-none-match": etag } });
      assert.equal(byTag.status, 304, path);
      assert.equal((await byTag.arrayBuffer()).byteLength, 0);
      const byDate = await fetch(`${base}${path}`, { headers: { "if-modified-since": lastModified } });
      assert.equal(byDate.status, 304, path);
      await byDate.body?.cancel();
      const head = await fetch(`${base}${path}`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("etag"), etag);
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    }
  }));

Deno.test("fetch negotiates a precompressed sidecar and decodes it to the original bytes", () =>
  withServer(async (_s, base) => {
    // fetch sends its own Accept-Encoding (gzip, br) and decodes transparently.
    const auto = await fetch(`${base}/app.js`);
    assert.equal(auto.status, 200);
    assert.equal(auto.headers.get("vary"), "Accept-Encoding");
    assert.equal(await auto.text(), SCRIPT);
    for (const coding of ["gzip", "br"]) {
      const r = await fetch(`${base}/app.js`, { headers: { "accept-encoding": coding } });
      assert.equal(r.headers.get("content-encoding"), coding);
      assert.equal(await r.text(), SCRIPT, coding);
    }
  }));

Deno.test("fetch follows a directory redirect to its index", () =>
  withServer(async (_s, base) => {
    const manual = await fetch(`${base}/docs?x=1`, { redirect: "manual" });
    assert.equal(manual.status, 301);
    assert.equal(manual.headers.get("location"), "/docs/?x=1");
    await manual.body?.cancel();
    const followed = await fetch(`${base}/docs?x=1`);
    assert.equal(followed.status, 200);
    assert.equal(followed.url, `${base}/docs/?x=1`);
    assert.equal(await followed.text(), "<h1>docs</h1>\n");
  }));

// ------------------------------------------------------------------------------------------------
// curl

async function curlVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command("curl", { args: ["--version"], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).split("\n")[0] : null;
  } catch {
    return null;
  }
}

const CURL = await curlVersion();
const curlTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name: CURL === null ? `${name} (skipped: curl is not installed)` : name,
    ignore: CURL === null,
    fn,
  });

interface CurlResult {
  code: number;
  /** What `-w` printed. */
  written: string;
  stderr: string;
}

/** Runs curl silently (errors shown), failing the test if curl itself fails. */
async function curl(args: string[]): Promise<CurlResult> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `curl ${args.join(" ")}: ${stderr}`);
  return { code: out.code, written: new TextDecoder().decode(out.stdout), stderr };
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vento-curl-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

curlTest(
  "curl downloads files and ranges with matching sha256",
  () =>
    withServer((_s, base) =>
      withTemp(async (dir) => {
        const big = await curl([
          "-o",
          `${dir}/big`,
          "-w",
          "%{http_code} %{size_download}",
          `${base}/big.bin`,
        ]);
        assert.equal(big.written, `200 ${BIG.length}`);
        assert.equal(sha256(await Deno.readFile(`${dir}/big`)), sha256(BIG));

        const range = await curl([
          "-r",
          "4096-8191",
          "-o",
          `${dir}/range`,
          "-w",
          "%{http_code}",
          `${base}/big.bin`,
        ]);
        assert.equal(range.written, "206");
        assert.equal(sha256(await Deno.readFile(`${dir}/range`)), sha256(BIG.subarray(4096, 8192)));

        const suffix = await curl([
          "-r",
          "-100",
          "-o",
          `${dir}/suffix`,
          "-w",
          "%{http_code}",
          `${base}/small.bin`,
        ]);
        assert.equal(suffix.written, "206");
        assert.deepEqual(await Deno.readFile(`${dir}/suffix`), SMALL.subarray(SMALL.length - 100));

        const multi = await curl([
          "-r",
          "0-9,100-109",
          "-o",
          `${dir}/multi`,
          "-w",
          "%{http_code} %{content_type}",
          `${base}/small.bin`,
        ]);
        assert.match(multi.written, /^206 multipart\/byteranges; boundary=\S+$/);

        // Resuming a partial download (-C -) continues from the local file's size.
        await Deno.writeFile(`${dir}/resume`, BIG.subarray(0, 3_000_000));
        const resumed = await curl([
          "-C",
          "-",
          "-o",
          `${dir}/resume`,
          "-w",
          "%{http_code}",
          `${base}/big.bin`,
        ]);
        assert.equal(resumed.written, "206");
        assert.equal(sha256(await Deno.readFile(`${dir}/resume`)), sha256(BIG));
      })
    ),
);

curlTest(
  "curl revalidates with -z (If-Modified-Since) and --etag-compare (If-None-Match) → 304",
  () =>
    withServer((_s, base) =>
      withTemp(async (dir) => {
        for (const path of ["/small.bin", "/big.bin"]) {
          const first = await curl([
            "-o",
            `${dir}/body`,
            "--etag-save",
            `${dir}/etag`,
            "-D",
            `${dir}/headers`,
            "-w",
            "%{http_code}",
            `${base}${path}`,
          ]);
          assert.equal(first.written, "200");
          const headers = await Deno.readTextFile(`${dir}/headers`);
          const lastModified = /^last-modified: (.+)\r$/im.exec(headers)?.[1];
          assert.ok(lastModified !== undefined, "Last-Modified is sent");

          const byDate = await curl([
            "-z",
            lastModified,
            "-o",
            `${dir}/x`,
            "-w",
            "%{http_code}",
            `${base}${path}`,
          ]);
          assert.equal(byDate.written, "304", `${path} -z`);
          const older = await curl([
            "-z",
            "Sat, 01 Jan 2000 00:00:00 GMT",
            "-o",
            `${dir}/x`,
            "-w",
            "%{http_code}",
            `${base}${path}`,
          ]);
          assert.equal(older.written, "200", `${path} -z with an old date`);

          const byTag = await curl([
            "--etag-compare",
            `${dir}/etag`,
            "-o",
            `${dir}/x`,
            "-w",
            "%{http_code}",
            `${base}${path}`,
          ]);
          assert.equal(byTag.written, "304", `${path} --etag-compare`);
        }
      })
    ),
);

curlTest(
  "curl -I sends HEAD and reads the same headers as GET, reusing the connection",
  () =>
    withServer(async (s, base) => {
      const head = await curl(["-I", `${base}/big.bin`]);
      assert.match(head.written, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(head.written, new RegExp(`\\r\\ncontent-length: ${BIG.length}\\r\\n`, "i"));
      assert.match(head.written, /\r\naccept-ranges: bytes\r\n/i);
      assert.match(head.written, /\r\netag: "[^"]+"\r\n/i);
      // Several HEADs and GETs in one curl run share one keep-alive connection: HEAD framing is right.
      const before = s.vento.stats.accepted;
      const many = await curl([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        `${base}/small.bin`,
        "-I",
        "-o",
        "/dev/null",
        `${base}/big.bin`,
        "-o",
        "/dev/null",
        `${base}/index.html`,
      ]);
      assert.equal(s.vento.stats.accepted - before, 1, `one connection for three requests: ${many.written}`);
    }),
);

curlTest(
  "curl --compressed decodes the sidecar it negotiated",
  () =>
    withServer((_s, base) =>
      withTemp(async (dir) => {
        const r = await curl([
          "--compressed",
          "-o",
          `${dir}/app.js`,
          "-w",
          "%{http_code} %{size_download}",
          `${base}/app.js`,
        ]);
        const [code, downloaded] = r.written.split(" ");
        assert.equal(code, "200");
        assert.ok(Number(downloaded) < SCRIPT_BYTES.length, "the compressed form travelled");
        assert.equal(await Deno.readTextFile(`${dir}/app.js`), SCRIPT);
      })
    ),
);

curlTest("curl --path-as-is traversal gets a 404, never the file", () =>
  withServer(async (_s, base) => {
    for (const path of ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/docs/../../etc/hostname"]) {
      const r = await curl(["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", `${base}${path}`]);
      assert.equal(r.written, "404", path);
    }
  }));
