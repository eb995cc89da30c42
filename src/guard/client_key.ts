/**
 * Client identity: which key a peer's limits, counters and bans are kept under, and which address an
 * `X-Forwarded-For` chain names when (and only when) the peer is a trusted proxy.
 *
 * Key = the IPv4 address, or the IPv6 prefix of `ipv6PrefixBits` (one host usually owns a whole /64,
 * so keying by address would let it rotate through 2^64 identities). v4-mapped IPv6 becomes IPv4.
 *
 * Pure: never mentions `Deno.`; never throws on input; the walk allocates nothing.
 */

import {
  cidrContains,
  type CidrSet,
  formatIp,
  IpAddr,
  maskGroups,
  parseCidr,
  parseIp,
} from "../core/cidr.ts";

const PERCENT = 0x25;
const COMMA = 0x2c;
const SPACE = 0x20;
const TAB = 0x09;

/**
 * Parses a peer address as the runtime reports it (`1.2.3.4`, `2001:db8::1`, `::ffff:1.2.3.4`,
 * `fe80::1%eth0`: the zone is dropped, it names our interface, not the client). Allocation-free.
 */
export function parsePeerIp(ip: string, out: IpAddr): boolean {
  let end = ip.length;
  for (let i = 0; i < ip.length; i++) {
    if (ip.charCodeAt(i) === PERCENT) {
      end = i;
      break;
    }
  }
  return parseIp(ip, 0, end, out);
}

/** The key of an address: dotted IPv4, the address itself for a /128, or the canonical prefix `…/bits`. */
export function keyOf(addr: IpAddr, ipv6PrefixBits: number): string {
  if (addr.family !== 6 || ipv6PrefixBits >= 128) return formatIp(addr);
  const masked = new IpAddr();
  masked.copyFrom(addr);
  maskGroups(masked.groups, ipv6PrefixBits);
  return `${formatIp(masked)}/${ipv6PrefixBits}`;
}

/**
 * The client key of a peer address. IPv4 → dotted; `::ffff:a.b.c.d` → `a.b.c.d`; IPv6 → canonical
 * prefix such as `2001:db8:1:2::/64`. Text that is no address at all is its own key (still limited).
 */
export function clientKey(ip: string, ipv6PrefixBits: number): string {
  const addr = new IpAddr();
  return parsePeerIp(ip, addr) ? keyOf(addr, ipv6PrefixBits) : ip;
}

/**
 * Normalises an operator's ban target. A bare address, an IPv4 /32 or an IPv6 block of exactly the
 * key prefix is a client key (`{ key }`); any other valid block is a CIDR (`{ cidr }` canonical text).
 */
export function banTarget(
  text: string,
  ipv6PrefixBits: number,
): { key: string; addr: IpAddr } | { cidr: string } | null {
  const s = text.trim();
  if (!s.includes("/")) {
    const addr = new IpAddr();
    return parsePeerIp(s, addr) ? { key: keyOf(addr, ipv6PrefixBits), addr } : null;
  }
  const c = parseCidr(s);
  if (c === null) return null;
  const keyBits = c.family === 4 ? 32 : Math.min(ipv6PrefixBits, 128);
  if (c.bits === keyBits) {
    const addr = new IpAddr();
    addr.family = c.family;
    addr.groups.set(c.groups);
    return { key: keyOf(addr, ipv6PrefixBits), addr };
  }
  return { cidr: c.text };
}

/**
 * Walks an `X-Forwarded-For` value right to left (each proxy appends the address it saw) to the first
 * address that is not a trusted proxy, and leaves it in `out`. A malformed or empty entry stops the
 * walk: everything left of it is unverifiable, so the last good address (a trusted proxy) is kept.
 * Returns false when not even the rightmost entry is usable: the caller keeps the peer's own key.
 * `scratch` is a second reusable address; nothing is allocated.
 */
export function forwardedClient(xff: string, trusted: CidrSet, out: IpAddr, scratch: IpAddr): boolean {
  let found = false;
  let end = xff.length;
  while (end >= 0) {
    let start = end - 1;
    while (start >= 0 && xff.charCodeAt(start) !== COMMA) start--;
    // The entry is xff[start + 1, end); trim optional whitespace (RFC 9110 §5.6.1).
    let s = start + 1;
    let e = end;
    while (s < e && (xff.charCodeAt(s) === SPACE || xff.charCodeAt(s) === TAB)) s++;
    while (e > s && (xff.charCodeAt(e - 1) === SPACE || xff.charCodeAt(e - 1) === TAB)) e--;
    if (s === e || !parseIp(xff, s, e, scratch)) return found;
    out.copyFrom(scratch);
    found = true;
    if (!trusted.contains(scratch)) return true;
    end = start;
  }
  return found;
}

/**
 * All `X-Forwarded-For` field values of a flat `[name, value, …]` header list, joined in order with
 * `,` (RFC 9110 §5.3), or undefined when there is none. Proxies that add their own field line instead
 * of appending would otherwise have their entry missed and the client's forged one believed.
 * Allocates only when the field appears more than once.
 */
export function forwardedForOf(headers: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== "x-forwarded-for") continue;
    value = value === undefined ? headers[i + 1] : `${value},${headers[i + 1]}`;
  }
  return value;
}

/** Whether `addr` is inside `cidr` text (convenience for tests and the admin channel; allocates). */
export function addressInCidr(addr: string, cidr: string): boolean {
  const a = new IpAddr();
  const c = parseCidr(cidr);
  return c !== null && parsePeerIp(addr, a) && cidrContains(c, a);
}
