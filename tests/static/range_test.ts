import assert from "node:assert/strict";
import { parseRange, planMultipart } from "../../src/static/range.ts";

const MAX = 16;

Deno.test("range parser accepts the three single-range forms and clamps to the file", () => {
  assert.deepEqual(parseRange("bytes=0-9", 100, MAX), { kind: "ranges", ranges: [{ start: 0, end: 9 }] });
  assert.deepEqual(parseRange("bytes=90-", 100, MAX), { kind: "ranges", ranges: [{ start: 90, end: 99 }] });
  assert.deepEqual(parseRange("bytes=-10", 100, MAX), { kind: "ranges", ranges: [{ start: 90, end: 99 }] });
  assert.deepEqual(parseRange("bytes=-1000", 100, MAX), { kind: "ranges", ranges: [{ start: 0, end: 99 }] });
  assert.deepEqual(parseRange("bytes=50-1000", 100, MAX), {
    kind: "ranges",
    ranges: [{ start: 50, end: 99 }],
  });
  assert.deepEqual(parseRange("Bytes = 1-1", 100, MAX), { kind: "ranges", ranges: [{ start: 1, end: 1 }] });
  assert.deepEqual(parseRange("bytes=0-99999999999999999999999", 100, MAX), {
    kind: "ranges",
    ranges: [{ start: 0, end: 99 }],
  });
});

Deno.test("range parser ignores syntactically invalid headers (200 whole)", () => {
  for (
    const h of [
      "bytes=",
      "bytes=a-b",
      "bytes=5-1",
      "bytes=1",
      "items=0-1",
      "bytes 0-1",
      "bytes=0-1-2",
      "bytes=--1",
      "bytes=+1-2",
      "bytes=0x1-2",
      "bytes=1.5-2",
    ]
  ) {
    assert.deepEqual(parseRange(h, 100, MAX), { kind: "none" }, h);
  }
});

Deno.test("range parser answers unsatisfiable when no range overlaps the file", () => {
  assert.deepEqual(parseRange("bytes=100-", 100, MAX), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=200-300, 150-", 100, MAX), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=-0", 100, MAX), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=0-", 0, MAX), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=-5", 0, MAX), { kind: "unsatisfiable" });
  // an unsatisfiable member is dropped when another is satisfiable
  assert.deepEqual(parseRange("bytes=200-, 0-0", 100, MAX), {
    kind: "ranges",
    ranges: [{ start: 0, end: 0 }],
  });
});

Deno.test("range parser keeps multiple disjoint ranges in request order", () => {
  assert.deepEqual(parseRange("bytes=50-59, 0-9", 100, MAX), {
    kind: "ranges",
    ranges: [{ start: 50, end: 59 }, { start: 0, end: 9 }],
  });
  assert.deepEqual(parseRange("bytes=0-0,,  2-2", 100, MAX), {
    kind: "ranges",
    ranges: [{ start: 0, end: 0 }, { start: 2, end: 2 }],
  });
});

Deno.test("range parser refuses amplification: too many, overlapping, or more than the file", () => {
  const many = "bytes=" + Array.from({ length: MAX + 1 }, (_, i) => `${i}-${i}`).join(",");
  assert.deepEqual(parseRange(many, 1000, MAX), { kind: "none" });
  const exactly = "bytes=" + Array.from({ length: MAX }, (_, i) => `${i * 2}-${i * 2}`).join(",");
  assert.equal(parseRange(exactly, 1000, MAX).kind, "ranges");
  assert.deepEqual(parseRange("bytes=0-10, 5-20", 100, MAX), { kind: "none" });
  assert.deepEqual(parseRange("bytes=50-60, 0-50", 100, MAX), { kind: "none" }, "unsorted overlap");
  assert.deepEqual(parseRange("bytes=0-, -1", 100, MAX), { kind: "none" });
  assert.deepEqual(parseRange("bytes=0-0, 0-0", 100, MAX), { kind: "none" });
});

Deno.test("multipart plan lays out parts with an exact total length", () => {
  const plan = planMultipart([{ start: 0, end: 1 }, { start: 5, end: 7 }], 10, "text/plain", "XYZ");
  assert.equal(plan.contentType, "multipart/byteranges; boundary=XYZ");
  const data = new TextEncoder().encode("0123456789");
  const chunks: Uint8Array[] = [];
  for (const p of plan.parts) chunks.push(p.header, data.subarray(p.start, p.end + 1));
  chunks.push(plan.trailer);
  const text = chunks.map((c) => new TextDecoder().decode(c)).join("");
  assert.equal(
    text,
    "--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01" +
      "\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-7/10\r\n\r\n567" +
      "\r\n--XYZ--\r\n",
  );
  assert.equal(plan.length, new TextEncoder().encode(text).length);
});
