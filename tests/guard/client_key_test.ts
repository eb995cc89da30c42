/**
 * Client identity: address parsing and canonical keys, CIDR matching, the X-Forwarded-For walk and the
 * allowlist, as the guard applies them.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { CidrSet, formatIp, IpAddr, parseCidr, parseIp } from "../../src/core/cidr.ts";
import {
  addressInCidr,
  banTarget,
  clientKey,
  forwardedClient,
  forwardedForOf,
} from "../../src/guard/client_key.ts";
import { Guard, type GuardOptions } from "../../src/guard/policy.ts";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";

Deno.test("client key of an IPv4 peer is its dotted address", () => {
  assert.equal(clientKey("203.0.113.9", 64), "203.0.113.9");
  assert.equal(clientKey("0.0.0.0", 64), "0.0.0.0");
  assert.equal(clientKey("255.255.255.255", 64), "255.255.255.255");
});

Deno.test("client key of a v4-mapped IPv6 peer is the IPv4 address", () => {
  assert.equal(clientKey("::ffff:1.2.3.4", 64), "1.2.3.4");
  assert.equal(clientKey("::FFFF:102:304", 64), "1.2.3.4");
  assert.equal(clientKey("0:0:0:0:0:ffff:1.2.3.4", 48), "1.2.3.4");
});

Deno.test("client key of an IPv6 peer is its canonical prefix", () => {
  assert.equal(clientKey("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:0DB8:0001:0002:abcd::1", 64), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:db8::1", 64), "2001:db8::/64");
  assert.equal(clientKey("2001:db8:1:2::", 64), "2001:db8:1:2::/64");
  assert.equal(clientKey("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
  assert.equal(clientKey("2001:db8:1:2:3:4:5:6", 56), "2001:db8:1::/56");
  assert.equal(clientKey("2001:db8:1:2ff:3:4:5:6", 56), "2001:db8:1:200::/56");
  assert.equal(clientKey("::1", 64), "::/64");
  assert.equal(clientKey("2001:db8::5", 128), "2001:db8::5");
});

Deno.test("client key drops an IPv6 zone", () => {
  assert.equal(clientKey("fe80::1%eth0", 64), "fe80::/64");
  assert.equal(clientKey("fe80::1:2:3:4%1", 128), "fe80::1:2:3:4");
});

Deno.test("client key of text that is no address is the text itself", () => {
  assert.equal(clientKey("not-an-ip", 64), "not-an-ip");
  assert.equal(clientKey("", 64), "");
});

Deno.test("ip parser rejects malformed addresses", () => {
  const a = new IpAddr();
  for (
    const bad of [
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4 ",
      "1..2.3",
      "1.2.3.",
      ":1",
      "1:",
      "1:::2",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:8::",
      "12345::",
      "g::1",
      "::1.2.3",
      "1.2.3.4::",
      "::ffff:1.2.3.4:5",
      "[::1]",
      "",
      "1.2.3.4:80",
    ]
  ) {
    assert.equal(parseIp(bad, 0, bad.length, a), false, bad);
  }
});

Deno.test("ip formatting follows RFC 5952", () => {
  const a = new IpAddr();
  const canon = (s: string) => (assert.ok(parseIp(s, 0, s.length, a), s), formatIp(a));
  assert.equal(canon("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  assert.equal(canon("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1"); // one zero group is not compressed
  assert.equal(canon("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1"); // the longest run wins
  assert.equal(canon("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1"); // first run on a tie
  assert.equal(canon("::"), "::");
  assert.equal(canon("1::"), "1::");
  assert.equal(canon("1:2:3:4:5:6:7::"), "1:2:3:4:5:6:7:0");
  assert.equal(canon("64:ff9b::192.0.2.33"), "64:ff9b::c000:221");
});

Deno.test("ip parse → format → parse is stable for arbitrary IPv6 addresses", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (groups) => {
      const text = groups.map((g) => g.toString(16)).join(":");
      const a = new IpAddr();
      assert.ok(parseIp(text, 0, text.length, a));
      const canon = formatIp(a);
      const b = new IpAddr();
      assert.ok(parseIp(canon, 0, canon.length, b), canon);
      assert.equal(b.family, a.family);
      assert.deepEqual([...b.groups], [...a.groups]);
    }),
  );
});

Deno.test("cidr matching is numeric for IPv4 and IPv6", () => {
  assert.ok(addressInCidr("10.1.2.3", "10.0.0.0/8"));
  assert.ok(!addressInCidr("11.0.0.1", "10.0.0.0/8"));
  assert.ok(addressInCidr("192.168.1.129", "192.168.1.128/25"));
  assert.ok(!addressInCidr("192.168.1.127", "192.168.1.128/25"));
  assert.ok(addressInCidr("1.2.3.4", "1.2.3.4"));
  assert.ok(addressInCidr("::ffff:10.9.9.9", "10.0.0.0/8"), "v4-mapped peers match IPv4 blocks");
  assert.ok(addressInCidr("10.9.9.9", "::ffff:10.0.0.0/104"), "v4-mapped blocks match IPv4 peers");
  assert.ok(addressInCidr("2001:db8:abcd::1", "2001:db8::/32"));
  assert.ok(!addressInCidr("2001:db9::1", "2001:db8::/32"));
  assert.ok(addressInCidr("2001:db8::7fff", "2001:db8::/113"));
  assert.ok(!addressInCidr("2001:db8::8000", "2001:db8::/113"));
  assert.ok(addressInCidr("8.8.8.8", "0.0.0.0/0"));
  assert.ok(!addressInCidr("::1", "0.0.0.0/0"), "families never mix");
  assert.ok(!addressInCidr("1.2.3.4", "::/0"));
});

Deno.test("cidr parser canonicalises and rejects bad blocks", () => {
  assert.equal(parseCidr("10.1.2.3/8")?.text, "10.0.0.0/8");
  assert.equal(parseCidr(" 2001:DB8::1/32 ")?.text, "2001:db8::/32");
  assert.equal(parseCidr("1.2.3.4")?.text, "1.2.3.4/32");
  for (
    const bad of ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/a", "x/8", "10.0.0.0/8/8"]
  ) {
    assert.equal(parseCidr(bad), null, bad);
  }
});

Deno.test("xff walk stops at the first address that is not a trusted proxy", () => {
  const trusted = new CidrSet(["10.0.0.0/8", "2001:db8:ffff::/48"]);
  const out = new IpAddr();
  const scratch = new IpAddr();
  const walk = (xff: string) => forwardedClient(xff, trusted, out, scratch) ? formatIp(out) : null;
  assert.equal(walk("203.0.113.7"), "203.0.113.7");
  assert.equal(walk("198.51.100.1, 203.0.113.7, 10.0.0.2"), "203.0.113.7", "right to left, skipping proxies");
  assert.equal(walk("1.1.1.1,203.0.113.7"), "203.0.113.7", "a forged left entry is never reached");
  assert.equal(walk("  203.0.113.7 ,\t10.1.1.1\t"), "203.0.113.7");
  assert.equal(walk("2001:db8::9, 2001:db8:ffff::1"), "2001:db8::9");
  assert.equal(walk("::ffff:203.0.113.7"), "203.0.113.7");
  assert.equal(walk("10.0.0.3, 10.0.0.2"), "10.0.0.3", "all trusted: the leftmost");
});

Deno.test("xff walk stops at a malformed entry and keeps the last good address", () => {
  const trusted = new CidrSet(["10.0.0.0/8"]);
  const out = new IpAddr();
  const scratch = new IpAddr();
  const walk = (xff: string) => forwardedClient(xff, trusted, out, scratch) ? formatIp(out) : null;
  assert.equal(walk("203.0.113.7, garbage, 10.0.0.2"), "10.0.0.2");
  assert.equal(walk("203.0.113.7,,10.0.0.2"), "10.0.0.2");
  assert.equal(walk("garbage"), null, "nothing usable: the peer's key stands");
  assert.equal(walk(""), null);
  assert.equal(walk("203.0.113.7,"), null);
  assert.equal(walk("203.0.113.7:443"), null, "ports are not accepted");
  assert.equal(walk("unknown, 10.0.0.2, 10.0.0.1"), "10.0.0.2");
});

Deno.test("xff field lines are joined in order", () => {
  assert.equal(forwardedForOf(["host", "a", "x-forwarded-for", "1.1.1.1"]), "1.1.1.1");
  assert.equal(
    forwardedForOf(["x-forwarded-for", "1.1.1.1", "accept", "*/*", "x-forwarded-for", "2.2.2.2"]),
    "1.1.1.1,2.2.2.2",
  );
  assert.equal(forwardedForOf(["host", "a"]), undefined);
});

Deno.test("operator ban targets normalise to client keys or CIDRs", () => {
  const key = (s: string) => {
    const t = banTarget(s, 64);
    return t === null ? null : "key" in t ? t.key : `cidr ${t.cidr}`;
  };
  assert.equal(key("1.2.3.4"), "1.2.3.4");
  assert.equal(key("1.2.3.4/32"), "1.2.3.4");
  assert.equal(key("::ffff:1.2.3.4"), "1.2.3.4");
  assert.equal(key("2001:db8:1:2::77"), "2001:db8:1:2::/64");
  assert.equal(key("2001:db8:1:2::/64"), "2001:db8:1:2::/64");
  assert.equal(key("10.0.0.0/8"), "cidr 10.0.0.0/8");
  assert.equal(key("2001:db8::/32"), "cidr 2001:db8::/32");
  assert.equal(key("2001:db8::1/128"), "cidr 2001:db8::1/128");
  assert.equal(key("nonsense"), null);
});

function options(overrides: Partial<GuardOptions>): GuardOptions {
  return { ...DEFAULT_CONFIG, ...overrides };
}

Deno.test("guard keys requests by the forwarded client only behind a trusted proxy", () => {
  const stats = new Stats();
  const clock = new FakeClock(1_000);
  const guard = new Guard(
    options({ trustedProxies: ["10.0.0.0/8"], requestBurst: 2, requestRatePerSec: 1 }),
    clock,
    stats,
    () => {},
  );
  const proxy = guard.decideConnection("10.0.0.1");
  assert.ok(proxy.ok);
  // Two clients behind the proxy each get their own burst of 2.
  for (const client of ["203.0.113.1", "203.0.113.2"]) {
    assert.equal(guard.decideRequest(proxy.ticket, client), 0);
    assert.equal(guard.decideRequest(proxy.ticket, `${client}, 10.0.0.5`), 0);
    assert.ok(guard.decideRequest(proxy.ticket, client) > 0, `${client} is limited`);
  }
  // A forged XFF from an untrusted peer is ignored: the peer's own key is limited.
  const direct = guard.decideConnection("198.51.100.9");
  assert.ok(direct.ok);
  assert.equal(guard.decideRequest(direct.ticket, "203.0.113.50"), 0);
  assert.equal(guard.decideRequest(direct.ticket, "203.0.113.51"), 0);
  assert.ok(guard.decideRequest(direct.ticket, "203.0.113.52") > 0);
  assert.ok(guard.clients(10).some((c) => c.key === "203.0.113.1"));
  assert.ok(!guard.clients(10).some((c) => c.key === "203.0.113.50"));
});

Deno.test("guard trusts a proxy per address, not per IPv6 key", () => {
  const guard = new Guard(
    options({ trustedProxies: ["2001:db8::10"], requestBurst: 1 }),
    new FakeClock(),
    new Stats(),
    () => {},
  );
  const proxy = guard.decideConnection("2001:db8::10");
  const neighbour = guard.decideConnection("2001:db8::11"); // same /64 key, not trusted
  assert.ok(proxy.ok && neighbour.ok);
  assert.equal(proxy.key, neighbour.key);
  assert.equal(guard.decideRequest(neighbour.ticket, "203.0.113.1"), 0);
  assert.ok(guard.decideRequest(neighbour.ticket, "203.0.113.2") > 0, "neighbour's XFF is not believed");
  assert.equal(guard.decideRequest(proxy.ticket, "203.0.113.3"), 0, "the proxy's XFF is believed");
});

Deno.test("guard allowlist skips rate limits and bans", () => {
  const stats = new Stats();
  const guard = new Guard(
    options({ allowlist: ["192.0.2.0/24"], requestBurst: 1, connBurst: 1, maxConnsPerClient: 1 }),
    new FakeClock(),
    stats,
    () => {},
  );
  for (let i = 0; i < 20; i++) {
    const v = guard.decideConnection("192.0.2.7");
    assert.ok(v.ok);
    assert.equal(v.ticket, -1);
    for (let j = 0; j < 10; j++) assert.equal(guard.decideRequest(v.ticket, undefined), 0);
  }
  const ban = guard.ban("192.0.2.7", 60_000, "test");
  assert.equal(ban.ok, false);
  assert.ok(guard.ban("192.0.2.0/24", 60_000, "block").ok);
  assert.ok(guard.decideConnection("192.0.2.7").ok, "the allowlist wins over a CIDR ban");
  assert.equal(stats.refused.banned, 0);
  assert.equal(guard.clients(10).length, 0, "allowlisted peers take no table slot");
});

Deno.test("an allowlisted peer's request reads no clock; one relaying X-Forwarded-For as a trusted proxy is judged", () => {
  let reads = 0;
  const clock = new (class extends FakeClock {
    override nowMs(): number {
      reads++;
      return super.nowMs();
    }
  })();
  const guard = new Guard(
    options({
      allowlist: ["192.0.2.0/24"],
      trustedProxies: ["192.0.2.9"],
      requestBurst: 1,
      requestRatePerSec: 1,
    }),
    clock,
    new Stats(),
    () => {},
  );
  const peer = guard.decideConnection("192.0.2.7");
  assert.ok(peer.ok);
  reads = 0;
  for (let i = 0; i < 5; i++) {
    assert.equal(guard.decideRequest(peer.ticket, undefined), 0);
    assert.equal(guard.admitRequest(peer.ticket, undefined), 0);
  }
  assert.equal(reads, 0, "nothing to judge, no clock read");
  const proxy = guard.decideConnection("192.0.2.9");
  assert.ok(proxy.ok);
  assert.equal(
    guard.decideRequest(proxy.ticket, "203.0.113.5"),
    0,
    "the client behind the proxy: first request",
  );
  assert.ok(
    guard.decideRequest(proxy.ticket, "203.0.113.5") > 0,
    "…and over its rate: judged, not waved through",
  );
});
