import assert from "node:assert/strict";
import {
  evaluatePreconditions,
  formatHttpDate,
  ifRangeAllows,
  makeEtag,
  parseEtagList,
  parseHttpDate,
  truncateToSecond,
} from "../../src/static/conditional.ts";

const LM = Date.UTC(2025, 5, 1, 12, 0, 0);
const V = { etag: makeEtag(1234, LM + 567), lastModifiedMs: truncateToSecond(LM + 567) };
const LM_TEXT = "Sun, 01 Jun 2025 12:00:00 GMT";

Deno.test("ETag is strong, derived from size and mtime, and differs per coding", () => {
  assert.equal(makeEtag(255, 4096), '"ff-1000"');
  assert.notEqual(makeEtag(255, 4096, "br"), makeEtag(255, 4096));
  assert.notEqual(makeEtag(255, 4096, "br"), makeEtag(255, 4096, "gzip"));
  assert.notEqual(makeEtag(256, 4096), makeEtag(255, 4096));
});

Deno.test("HTTP dates format as IMF-fixdate and parse in all three forms", () => {
  assert.equal(formatHttpDate(LM), LM_TEXT);
  assert.equal(parseHttpDate(LM_TEXT), LM);
  assert.equal(parseHttpDate("Sunday, 01-Jun-25 12:00:00 GMT"), LM);
  assert.equal(parseHttpDate("Sun Jun  1 12:00:00 2025"), LM);
  for (
    const bad of [
      "",
      "yesterday",
      "Sun, 31 Feb 2025 12:00:00 GMT",
      "Sun, 01 Jun 2025 12:00:00 UTC",
      "1717243200",
    ]
  ) {
    assert.ok(Number.isNaN(parseHttpDate(bad)), bad);
  }
});

Deno.test("entity-tag lists parse quoted tags containing commas and reject garbage", () => {
  assert.equal(parseEtagList(" * "), "*");
  assert.deepEqual(parseEtagList('"a,b", W/"c"'), [{ weak: false, tag: '"a,b"' }, {
    weak: true,
    tag: '"c"',
  }]);
  assert.equal(parseEtagList("abc"), null);
  assert.equal(parseEtagList('"abc'), null);
  assert.equal(parseEtagList('"a" x'), null);
});

Deno.test("If-Match uses strong comparison and fails with 412", () => {
  assert.equal(evaluatePreconditions({ ifMatch: V.etag }, V), "ok");
  assert.equal(evaluatePreconditions({ ifMatch: `"x", ${V.etag}` }, V), "ok");
  assert.equal(evaluatePreconditions({ ifMatch: "*" }, V), "ok");
  assert.equal(evaluatePreconditions({ ifMatch: `W/${V.etag}` }, V), 412);
  assert.equal(evaluatePreconditions({ ifMatch: '"other"' }, V), 412);
  // If-Match wins over If-Unmodified-Since
  assert.equal(
    evaluatePreconditions({ ifMatch: V.etag, ifUnmodifiedSince: "Sun, 01 Jun 2000 00:00:00 GMT" }, V),
    "ok",
  );
});

Deno.test("If-Unmodified-Since fails when modified later; invalid dates are ignored", () => {
  assert.equal(evaluatePreconditions({ ifUnmodifiedSince: LM_TEXT }, V), "ok");
  assert.equal(evaluatePreconditions({ ifUnmodifiedSince: "Sun, 01 Jun 2025 11:59:59 GMT" }, V), 412);
  assert.equal(evaluatePreconditions({ ifUnmodifiedSince: "garbage" }, V), "ok");
});

Deno.test("If-None-Match uses weak comparison, answers 304, and wins over If-Modified-Since", () => {
  assert.equal(evaluatePreconditions({ ifNoneMatch: V.etag }, V), 304);
  assert.equal(evaluatePreconditions({ ifNoneMatch: `W/${V.etag}` }, V), 304);
  assert.equal(evaluatePreconditions({ ifNoneMatch: "*" }, V), 304);
  assert.equal(evaluatePreconditions({ ifNoneMatch: '"nope"' }, V), "ok");
  assert.equal(evaluatePreconditions({ ifNoneMatch: '"nope"', ifModifiedSince: LM_TEXT }, V), "ok");
  assert.equal(evaluatePreconditions({ ifMatch: '"nope"', ifNoneMatch: V.etag }, V), 412);
});

Deno.test("If-Modified-Since answers 304 when not modified since; invalid dates are ignored", () => {
  assert.equal(evaluatePreconditions({ ifModifiedSince: LM_TEXT }, V), 304);
  assert.equal(evaluatePreconditions({ ifModifiedSince: "Mon, 02 Jun 2025 00:00:00 GMT" }, V), 304);
  assert.equal(evaluatePreconditions({ ifModifiedSince: "Sun, 01 Jun 2025 11:59:59 GMT" }, V), "ok");
  assert.equal(evaluatePreconditions({ ifModifiedSince: "not a date" }, V), "ok");
});

Deno.test("If-Range allows ranges only for the strong ETag or the exact Last-Modified", () => {
  assert.equal(ifRangeAllows(V.etag, V), true);
  assert.equal(ifRangeAllows(`W/${V.etag}`, V), false);
  assert.equal(ifRangeAllows('"other"', V), false);
  assert.equal(ifRangeAllows(LM_TEXT, V), true);
  assert.equal(ifRangeAllows("Mon, 02 Jun 2025 00:00:00 GMT", V), false);
  assert.equal(ifRangeAllows("junk", V), false);
});
