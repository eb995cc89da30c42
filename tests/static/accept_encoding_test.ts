import assert from "node:assert/strict";
import { chooseEncoding, parseAcceptEncoding } from "../../src/static/accept_encoding.ts";

const pick = (header: string | undefined, br = true, gzip = true) =>
  chooseEncoding(parseAcceptEncoding(header), br, gzip);

Deno.test("br wins over gzip on equal q; absent header means identity", () => {
  assert.equal(pick("gzip, deflate, br"), "br");
  assert.equal(pick("br;q=0.5, gzip;q=0.5"), "br");
  assert.equal(pick(undefined), null);
  assert.equal(pick(""), null);
});

Deno.test("q-values are honoured and q=0 forbids", () => {
  assert.equal(pick("br;q=0.5, gzip;q=0.8"), "gzip");
  assert.equal(pick("br;q=0, gzip"), "gzip");
  assert.equal(pick("br;q=0, gzip;q=0"), null);
  assert.equal(pick("gzip;Q=0.001"), "gzip");
  assert.equal(pick("gzip;q=1.000"), "gzip");
});

Deno.test("only codings with a sidecar on disk are chosen", () => {
  assert.equal(pick("br, gzip", false, true), "gzip");
  assert.equal(pick("br", false, true), null);
  assert.equal(pick("gzip", true, false), null);
});

Deno.test("* covers codings not named, x-gzip is gzip, identity can be preferred", () => {
  assert.equal(pick("*"), "br");
  assert.equal(pick("*;q=0.5, br;q=0"), "gzip");
  assert.equal(pick("*;q=0"), null);
  assert.equal(pick("x-gzip", false, true), "gzip");
  assert.equal(pick("identity;q=1, gzip;q=0.5"), null);
  assert.equal(pick("identity;q=0.1, gzip;q=0.5"), "gzip");
});

Deno.test("invalid elements are skipped without throwing", () => {
  assert.equal(pick("br;q=2, gzip"), "gzip");
  assert.equal(pick("br;q=abc, gzip;q=0.3"), "gzip");
  assert.equal(pick("br;foo, gzip"), "gzip");
  assert.equal(pick(",,, ;;; ,br"), "br");
  assert.equal(pick("GZIP"), "gzip");
});
