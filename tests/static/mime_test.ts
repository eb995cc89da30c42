import assert from "node:assert/strict";
import db from "mime-db";
import { contentTypeFor, DEFAULT_CONTENT_TYPE } from "../../src/static/mime.ts";
import { buildMimeTable, renderMimeModule } from "../../src/static/mime_gen.ts";

Deno.test("content types by extension, case-insensitive, with utf-8 where it applies", () => {
  assert.equal(contentTypeFor("index.html"), "text/html; charset=utf-8");
  assert.equal(contentTypeFor("A/B/PAGE.HTM"), "text/html; charset=utf-8");
  assert.equal(contentTypeFor("app.js"), "text/javascript; charset=utf-8");
  assert.equal(contentTypeFor("data.json"), "application/json; charset=utf-8");
  assert.equal(contentTypeFor("style.css"), "text/css; charset=utf-8");
  assert.equal(contentTypeFor("logo.svg"), "image/svg+xml");
  assert.equal(contentTypeFor("photo.JPG"), "image/jpeg");
  assert.equal(contentTypeFor("movie.mp4"), "video/mp4");
  assert.equal(contentTypeFor("x.wasm"), "application/wasm");
  assert.equal(contentTypeFor("archive.tar.gz"), "application/gzip");
});

Deno.test("unknown or missing extensions are application/octet-stream", () => {
  assert.equal(contentTypeFor("README"), DEFAULT_CONTENT_TYPE);
  assert.equal(contentTypeFor("file.unknownext"), DEFAULT_CONTENT_TYPE);
  assert.equal(contentTypeFor("dir.d/file"), DEFAULT_CONTENT_TYPE);
  assert.equal(contentTypeFor("trailingdot."), DEFAULT_CONTENT_TYPE);
});

Deno.test("the committed mime table is what the generator produces from mime-db", async () => {
  const generated = renderMimeModule(buildMimeTable(db as Record<string, { extensions?: string[] }>));
  const committed = await Deno.readTextFile(new URL("../../src/static/mime_types.ts", import.meta.url));
  assert.equal(committed, generated, "run `deno task gen:mime`");
});

Deno.test("mime generator prefers IANA types, and an application type it met first on ties", () => {
  const table = buildMimeTable({
    "application/x-foo": { source: "apache", extensions: ["foo"] },
    "text/foo": { source: "iana", extensions: ["foo"] },
    "application/bar": { source: "iana", extensions: ["bar"] },
    "image/bar": { source: "iana", extensions: ["bar"] },
    "application/baz": { source: "iana", charset: "UTF-8", extensions: ["baz"] },
    "text/qux": { source: "iana", extensions: ["qux"] },
    "image/qux": { source: "iana", extensions: ["qux"] },
  });
  assert.equal(table.get("foo"), "text/foo; charset=utf-8");
  assert.equal(table.get("bar"), "application/bar");
  assert.equal(table.get("baz"), "application/baz; charset=utf-8");
  assert.equal(table.get("qux"), "image/qux");
});
