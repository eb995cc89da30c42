/**
 * `deno task precompress` / `vento --precompress [DIR]` as a user runs it (a subprocess with the task's
 * own permissions): sidecars for what COMPRESS_TYPES selects, decompressing to their files, fresh ones
 * skipped, edits redone, links, dot-directories and odd files left alone; then the server sends them.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { request } from "../_helpers/raw_client.ts";
import { startTestServer } from "../_helpers/server.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const PAGE = "<!doctype html>\n" + "<p>precompressed paragraph</p>\n".repeat(400);
const CSS = "body { margin: 0; padding: 0; color: #123456; }\n".repeat(100);

async function run(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    // The permissions `deno task precompress` runs with.
    args: ["run", "--allow-read", "--allow-write", MAIN, "--precompress", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("--precompress writes fresh .br/.gz sidecars for compressible files only, and the server sends them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-precompress-" });
  try {
    const www = `${dir}/www`;
    await Deno.mkdir(`${www}/css`, { recursive: true });
    await Deno.mkdir(`${www}/.git`);
    await Deno.writeTextFile(`${www}/index.html`, PAGE);
    await Deno.writeTextFile(`${www}/css/site.css`, CSS);
    await Deno.writeTextFile(`${www}/tiny.txt`, "tiny\n");
    await Deno.writeFile(`${www}/photo.png`, new Uint8Array(5000));
    await Deno.writeTextFile(`${www}/.git/config`, CSS);
    await Deno.writeTextFile(`${dir}/outside.css`, CSS);
    await Deno.symlink(`${dir}/outside.css`, `${www}/linked.css`);
    await Deno.writeFile(`${www}/random.txt`, crypto.getRandomValues(new Uint8Array(3000))); // incompressible
    await Deno.writeTextFile(`${www}/app.js`, "console.log('app');\n".repeat(100));
    await Deno.mkdir(`${www}/app.js.gz`); // not a file: left alone and reported
    await Deno.writeTextFile(`${dir}/vento.conf`, "DOCUMENT_ROOT=www\n");

    const first = await run(dir, []);
    assert.equal(first.code, 1, "one sidecar could not be written: exit 1");
    assert.match(first.stderr, /app\.js\.gz: exists and is not a regular file; left alone/);
    assert.match(
      first.stdout,
      /4 files to compress; 5 sidecars written, 0 already fresh, 2 skipped as not smaller/,
    );
    for (const [path, text] of [["index.html", PAGE], ["css/site.css", CSS]]) {
      const br = await Deno.readFile(`${www}/${path}.br`);
      const gz = await Deno.readFile(`${www}/${path}.gz`);
      assert.equal(new TextDecoder().decode(zlib.brotliDecompressSync(br)), text);
      assert.equal(new TextDecoder().decode(zlib.gunzipSync(gz)), text);
      assert.equal(
        (await Deno.stat(`${www}/${path}.br`)).mtime?.getTime(),
        (await Deno.stat(`${www}/${path}`)).mtime?.getTime(),
        "a sidecar takes its file's modification time",
      );
    }
    for (const skipped of ["tiny.txt", "photo.png", ".git/config", "linked.css", "random.txt"]) {
      assert.ok(!(await exists(`${www}/${skipped}.br`)), skipped);
    }
    assert.ok(!(await exists(`${dir}/outside.css.br`)), "a link is never followed");
    assert.deepEqual(
      [...Deno.readDirSync(www)].map((e) => e.name).filter((n) => n.includes(".tmp-")),
      [],
      "no temporary files are left",
    );

    // Nothing changed: everything is fresh. Then an edit is compressed again.
    await Deno.remove(`${www}/app.js.gz`);
    const second = await run(dir, ["www"]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /1 sidecars written, 5 already fresh, 2 skipped as not smaller/);
    const later = new Date(Date.now() + 5000);
    await Deno.writeTextFile(`${www}/index.html`, PAGE + "<p>edited</p>\n");
    await Deno.utime(`${www}/index.html`, later, later);
    const third = await run(dir, []);
    assert.match(third.stdout, /2 sidecars written, 4 already fresh/);
    assert.match(
      new TextDecoder().decode(zlib.gunzipSync(await Deno.readFile(`${www}/index.html.gz`))),
      /edited/,
    );

    // The server sends the sidecar's bytes as they are.
    const s = await startTestServer({ documentRoot: www });
    try {
      const r = await request(s.port, "GET /css/site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n");
      assert.equal(r.headers.get("content-encoding"), "br");
      assert.deepEqual(r.body, await Deno.readFile(`${www}/css/site.css.br`));
    } finally {
      await s.stop();
    }

    const missing = await run(dir, ["nope"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--precompress: nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
