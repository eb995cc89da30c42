/**
 * The admin protocol's pure half: request validation for every op, every error code, response
 * decoding, target syntax, rate derivation and the Prometheus rendering.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ADMIN_ERROR_CODES,
  decodeRequest,
  decodeResponse,
  deriveRates,
  encodeError,
  encodeEvent,
  encodeOk,
  encodeRequest,
  isIpOrCidr,
  MAX_BAN_MS,
  OPS,
} from "../../src/admin/protocol.ts";
import { formatMetrics } from "../../src/admin/metrics.ts";
import { Stats } from "../../src/stats/stats.ts";

const req = (op: string, args?: unknown, extra: Record<string, unknown> = {}) =>
  decodeRequest(JSON.stringify({ v: 1, id: 5, op, ...(args === undefined ? {} : { args }), ...extra }));

function codeOf(line: string): string | null {
  const r = decodeRequest(line);
  return r.ok ? null : r.failure.error.code;
}

Deno.test("protocol accepts every op without arguments where none are needed", () => {
  for (const op of ["hello", "stats", "conns", "bans", "reload", "drain", "metrics", "unsubscribe"]) {
    const r = req(op);
    assert.ok(r.ok, op);
    assert.deepEqual(r.request, { v: 1, id: 5, op, args: {} });
  }
});

Deno.test("protocol fills defaults for clients and subscribe", () => {
  const c = req("clients");
  assert.ok(c.ok && c.request.op === "clients" && c.request.args.limit === 20);
  const s = req("subscribe");
  assert.ok(s.ok);
  assert.deepEqual(s.request.args, { intervalMs: 1000, conns: false, bans: false, clients: 0 });
});

Deno.test("protocol validates the arguments of every op that takes some", async (t) => {
  const cases: [string, unknown, boolean][] = [
    ["clients", { limit: 5 }, true],
    ["clients", { limit: 0 }, false],
    ["clients", { limit: 1.5 }, false],
    ["clients", { limit: "5" }, false],
    ["ban", { target: "203.0.113.9", ms: 600_000, reason: "flood" }, true],
    ["ban", { target: "2001:db8::/32", ms: 1_000 }, true],
    ["ban", { target: "::ffff:1.2.3.4", ms: 1_000 }, true],
    ["ban", { target: "203.0.113.9", ms: 999 }, false],
    ["ban", { target: "203.0.113.9", ms: MAX_BAN_MS + 1 }, false],
    ["ban", { target: "203.0.113.9" }, false],
    ["ban", { target: "example.com", ms: 60_000 }, false],
    ["ban", { target: "10.0.0.0/33", ms: 60_000 }, false],
    ["ban", { target: "203.0.113.9", ms: 60_000, reason: 7 }, false],
    ["ban", { target: "203.0.113.9", ms: 60_000, reason: "line\nbreak" }, false],
    ["ban", { target: "203.0.113.9", ms: 60_000, reason: "x".repeat(201) }, false],
    ["unban", { target: "10.0.0.0/8" }, true],
    ["unban", {}, false],
    ["kick", { id: 42 }, true],
    ["kick", { id: -1 }, false],
    ["kick", {}, false],
    ["subscribe", { intervalMs: 100, conns: true, bans: true, clients: 10 }, true],
    ["subscribe", { intervalMs: 99 }, false],
    ["subscribe", { intervalMs: 60_001 }, false],
    ["subscribe", { conns: "yes" }, false],
    ["subscribe", { clients: 1001 }, false],
  ];
  for (const [op, args, ok] of cases) {
    await t.step(`${op} ${JSON.stringify(args).slice(0, 60)} → ${ok ? "ok" : "BAD_ARGS"}`, () => {
      const r = req(op, args);
      if (ok) assert.ok(r.ok, JSON.stringify(r));
      else {
        assert.ok(!r.ok);
        assert.equal(r.failure.error.code, "BAD_ARGS");
        assert.equal(r.failure.id, 5);
      }
    });
  }
});

Deno.test("protocol maps each malformed request to its stable error code", () => {
  assert.equal(codeOf("{"), "BAD_JSON");
  assert.equal(codeOf("[1,2]"), "BAD_JSON");
  assert.equal(codeOf("null"), "BAD_JSON");
  assert.equal(codeOf(JSON.stringify({ id: 1, op: "stats" })), "BAD_VERSION");
  assert.equal(codeOf(JSON.stringify({ v: 2, id: 1, op: "stats" })), "BAD_VERSION");
  assert.equal(codeOf(JSON.stringify({ v: 1, op: "stats" })), "BAD_REQUEST");
  assert.equal(codeOf(JSON.stringify({ v: 1, id: -3, op: "stats" })), "BAD_REQUEST");
  assert.equal(codeOf(JSON.stringify({ v: 1, id: 1 })), "BAD_REQUEST");
  assert.equal(codeOf(JSON.stringify({ v: 1, id: 1, op: "toString" })), "UNKNOWN_OP");
  assert.equal(codeOf(JSON.stringify({ v: 1, id: 1, op: "__proto__" })), "UNKNOWN_OP");
  assert.equal(codeOf(JSON.stringify({ v: 1, id: 1, op: "stats", args: [] })), "BAD_ARGS");
});

Deno.test("protocol echoes the id in failures when it could be read", () => {
  const r = decodeRequest(JSON.stringify({ v: 1, id: 77, op: "nope" }));
  assert.ok(!r.ok);
  assert.equal(r.failure.id, 77);
  const j = decodeRequest("not json");
  assert.ok(!j.ok);
  assert.equal(j.failure.id, null);
});

Deno.test("protocol never throws on arbitrary input lines", () => {
  fc.assert(fc.property(fc.string(), (s) => {
    decodeRequest(s);
    decodeResponse(s);
  }));
  fc.assert(fc.property(fc.jsonValue(), (v) => {
    decodeRequest(JSON.stringify(v));
    decodeRequest(JSON.stringify({ v: 1, id: 1, op: "ban", args: v }));
  }));
});

Deno.test("protocol round-trips requests, replies, events and errors as single lines", () => {
  for (const op of OPS) {
    const line = encodeRequest(3, op);
    assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"));
  }
  const k = decodeRequest(encodeRequest(9, "kick", { id: 4 }).trimEnd());
  assert.ok(k.ok && k.request.op === "kick" && k.request.args.id === 4 && k.request.id === 9);
  assert.deepEqual(decodeResponse(encodeOk(1, { a: "x\ny" }).trimEnd()), {
    v: 1,
    id: 1,
    ok: true,
    data: { a: "x\ny" },
  });
  const err = decodeResponse(encodeError(null, { code: "LINE_TOO_LONG", message: "m" }).trimEnd());
  assert.deepEqual(err, { v: 1, id: null, ok: false, error: { code: "LINE_TOO_LONG", message: "m" } });
  const ev = decodeResponse(encodeEvent(2, { stats: null as never }).trimEnd());
  assert.ok(ev !== null && ev.ok && ev.event === "snapshot");
  assert.equal(decodeResponse('{"v":1,"id":1,"ok":false,"error":"x"}'), null);
  assert.equal(decodeResponse('{"v":1,"id":1,"ok":true}'), null);
  assert.equal(decodeResponse('{"v":2,"id":1,"ok":true,"data":1}'), null);
});

Deno.test("protocol error codes are the documented stable set", () => {
  assert.deepEqual([...ADMIN_ERROR_CODES].sort(), [
    "BAD_ARGS",
    "BAD_JSON",
    "BAD_REQUEST",
    "BAD_VERSION",
    "BUSY",
    "INTERNAL",
    "LINE_TOO_LONG",
    "NOT_FOUND",
    "REFUSED",
    "UNKNOWN_OP",
  ]);
});

Deno.test("isIpOrCidr accepts addresses and prefixes and rejects everything else", () => {
  for (
    const ok of [
      "0.0.0.0",
      "255.255.255.255",
      "10.0.0.0/8",
      "::",
      "::1",
      "2001:db8::/64",
      "fe80::1:2:3:4",
      "::ffff:192.0.2.1",
      "1:2:3:4:5:6:7:8",
    ]
  ) {
    assert.ok(isIpOrCidr(ok), ok);
  }
  for (
    const bad of [
      "",
      "256.0.0.1",
      "1.2.3",
      "01.2.3.4",
      "1.2.3.4/",
      "1.2.3.4/33",
      "::/129",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "gggg::",
      "a b",
      "1.2.3.4/8/8",
    ]
  ) {
    assert.ok(!isIpOrCidr(bad), bad);
  }
});

Deno.test("deriveRates divides counter differences by the snapshot interval", () => {
  const s = new Stats();
  const a = s.snapshot(1_000, 0);
  s.requests = 500;
  s.bytesOut = 2_000_000;
  s.refused.banned = 4;
  const b = s.snapshot(3_000, 0);
  const r = deriveRates(a, b);
  assert.equal(r.windowMs, 2_000);
  assert.equal(r.requestsPerSec, 250);
  assert.equal(r.bytesOutPerSec, 1_000_000);
  assert.equal(r.refusedPerSec, 2);
  assert.equal(deriveRates(b, b).requestsPerSec, 0);
  // A counter that went backwards (restart) gives 0, never negative.
  assert.equal(deriveRates(b, { ...a, atMs: 5_000 }).requestsPerSec, 0);
});

Deno.test("metrics follow the Prometheus 0.0.4 text format", () => {
  const s = new Stats();
  s.requests = 10;
  s.refused.global_cap = 3;
  s.countResponse(200);
  s.countResponse(429);
  const text = formatMetrics(s.snapshot(0, 0), 4096, 61_500);
  assert.ok(text.endsWith("\n"));
  assert.match(
    text,
    /^# HELP vento_requests_total Requests started\.\n# TYPE vento_requests_total counter\nvento_requests_total 10$/m,
  );
  assert.match(text, /^vento_connections_refused_total\{reason="global_cap"\} 3$/m);
  assert.match(text, /^vento_responses_total\{class="4xx"\} 1$/m);
  assert.match(text, /^# TYPE vento_connections_open gauge$/m);
  assert.match(text, /^vento_uptime_seconds 61\.5$/m);
  for (const l of text.trimEnd().split("\n")) {
    assert.match(
      l,
      /^(# (HELP|TYPE) vento_[a-z0-9_]+ .+|vento_[a-z0-9_]+(\{[a-z]+="[^"]*"\})? [0-9.e+-]+)$/,
      l,
    );
  }
  // Every counter family ends in _total.
  for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) assert.ok(m[1].endsWith("_total"), m[1]);
});

Deno.test("pure admin modules never mention Deno and import only pure modules", async () => {
  const pure = [
    "src/admin/protocol.ts",
    "src/admin/metrics.ts",
    "cli/render.ts",
    "cli/keys.ts",
    "cli/format.ts",
  ];
  for (const rel of pure) {
    const text = await Deno.readTextFile(new URL(`../../${rel}`, import.meta.url));
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.ok(!/\bDeno\./.test(code), `${rel} mentions Deno.`);
    for (const m of code.matchAll(/from "([^"]+)"/g)) {
      assert.ok(
        !/server\.ts|terminal\.ts|client\.ts|top\.ts|commands\.ts|^node:/.test(m[1]),
        `${rel} imports ${m[1]}`,
      );
    }
  }
});
