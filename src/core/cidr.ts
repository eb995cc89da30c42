/**
 * IP addresses and CIDR blocks as numbers: a strict byte-level parser for IPv4 and IPv6 text (no regex),
 * RFC 5952 canonical formatting, and prefix matching by comparing 16-bit groups.
 *
 * An address lives in a reusable `IpAddr` (eight 16-bit groups plus a family), so parsing and matching
 * on the request path allocate nothing. A v4-mapped IPv6 address (`::ffff:a.b.c.d`) is normalised to
 * IPv4 at parse time, so one client never has two identities.
 *
 * Pure: never mentions `Deno.`; never throws on input (a parse answers `false` / `null`).
 */

const COLON = 0x3a;
const DOT = 0x2e;
const SLASH = 0x2f;

/** Address family: 4, 6, or 0 for "nothing parsed yet". */
export type IpFamily = 0 | 4 | 6;

/**
 * A mutable, reusable address. IPv4 uses groups 0..1 (high and low 16 bits); IPv6 uses all eight,
 * most significant first. Reuse one per caller to keep hot paths allocation-free.
 */
export class IpAddr {
  family: IpFamily = 0;
  readonly groups: Uint16Array = new Uint16Array(8);

  /** Copies `other` into this address. */
  copyFrom(other: IpAddr): void {
    this.family = other.family;
    this.groups.set(other.groups);
  }
}

/** A parsed CIDR block; host bits are zeroed, so equal blocks have equal `text`. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly groups: Uint16Array;
  /** Prefix length: 0..32 for IPv4, 0..128 for IPv6. */
  readonly bits: number;
  /** Canonical text (`10.0.0.0/8`, `2001:db8::/32`); a whole address keeps its `/32` or `/128`. */
  readonly text: string;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * Dotted-quad IPv4 in `text[start, end)` into `groups[at]`, `groups[at + 1]`. Strict: four decimal
 * octets 0..255, no leading zeros (they read as octal in some stacks, so two parsers could disagree).
 */
function parseV4(text: string, start: number, end: number, groups: Uint16Array, at: number): boolean {
  let parts = 0;
  let value = 0;
  let digits = 0;
  let acc = 0;
  for (let i = start; i <= end; i++) {
    // A virtual dot at `end` closes the last octet.
    const c = i < end ? text.charCodeAt(i) : DOT;
    if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return false;
      value = value * 10 + (c - 0x30);
      digits++;
      if (value > 255) return false;
    } else if (c === DOT) {
      if (digits === 0 || parts === 4) return false;
      acc = acc * 256 + value;
      parts++;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  if (parts !== 4) return false;
  groups[at] = acc >>> 16;
  groups[at + 1] = acc & 0xffff;
  return true;
}

/** IPv6 text (RFC 4291 §2.2, including `::` and a trailing dotted IPv4) into all eight groups. */
function parseV6(text: string, start: number, end: number, groups: Uint16Array): boolean {
  if (end - start < 2) return false;
  let n = 0;
  let gap = -1;
  let i = start;
  if (text.charCodeAt(i) === COLON) {
    if (text.charCodeAt(i + 1) !== COLON) return false;
    gap = 0;
    i += 2;
  }
  while (i < end) {
    if (n === 8) return false;
    let value = 0;
    let digits = 0;
    let j = i;
    while (j < end) {
      const h = hexValue(text.charCodeAt(j));
      if (h < 0) break;
      if (++digits > 4) return false;
      value = value * 16 + h;
      j++;
    }
    if (j < end && text.charCodeAt(j) === DOT) {
      // Embedded IPv4 must be the last 32 bits.
      if (n > 6 || !parseV4(text, i, end, groups, n)) return false;
      n += 2;
      break;
    }
    if (digits === 0) return false;
    groups[n++] = value;
    if (j === end) break;
    if (text.charCodeAt(j) !== COLON) return false;
    j++;
    if (j < end && text.charCodeAt(j) === COLON) {
      if (gap >= 0) return false;
      gap = n;
      j++;
    } else if (j === end) {
      return false; // a single trailing colon
    }
    i = j;
  }
  if (gap < 0) return n === 8;
  if (n > 7) return false; // `::` stands for at least one zero group
  const tail = n - gap;
  for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k];
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  return true;
}

/** Whether an IPv6 address in `groups` is v4-mapped (`::ffff:0:0/96`). */
function isV4Mapped(groups: Uint16Array): boolean {
  return groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 &&
    groups[5] === 0xffff;
}

/**
 * Parses a bare IPv4 or IPv6 address in `text[start, end)` into `out`. No zone, no brackets, no port,
 * no surrounding whitespace (callers trim and strip). Returns false, leaving `out` unspecified, when
 * the text is not exactly one address. Allocation-free.
 */
export function parseIp(text: string, start: number, end: number, out: IpAddr): boolean {
  let hasColon = false;
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) === COLON) {
      hasColon = true;
      break;
    }
  }
  const g = out.groups;
  if (!hasColon) {
    if (!parseV4(text, start, end, g, 0)) return false;
    g.fill(0, 2);
    out.family = 4;
    return true;
  }
  if (!parseV6(text, start, end, g)) return false;
  if (isV4Mapped(g)) {
    g[0] = g[6];
    g[1] = g[7];
    g.fill(0, 2);
    out.family = 4;
  } else {
    out.family = 6;
  }
  return true;
}

/** Zeroes every bit of `groups` after the first `bits`. */
export function maskGroups(groups: Uint16Array, bits: number): void {
  const full = bits >>> 4;
  const rem = bits & 15;
  let i = full;
  if (rem !== 0 && i < 8) {
    groups[i] &= (0xffff << (16 - rem)) & 0xffff;
    i++;
  }
  for (; i < 8; i++) groups[i] = 0;
}

/** The address as text: dotted IPv4, or RFC 5952 IPv6 (lower case, longest zero run as `::`). */
export function formatIp(addr: IpAddr): string {
  const g = addr.groups;
  if (addr.family === 4) return `${g[0] >>> 8}.${g[0] & 0xff}.${g[1] >>> 8}.${g[1] & 0xff}`;
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += "::";
      i += bestLen - 1;
      continue;
    }
    if (s !== "" && !s.endsWith(":")) s += ":";
    s += g[i].toString(16);
  }
  return s;
}

/** Whether `addr` lies inside `cidr`. Numeric, allocation-free. */
export function cidrContains(cidr: Cidr, addr: IpAddr): boolean {
  if (cidr.family !== addr.family) return false;
  const full = cidr.bits >>> 4;
  const a = addr.groups;
  const c = cidr.groups;
  for (let i = 0; i < full; i++) if (a[i] !== c[i]) return false;
  const rem = cidr.bits & 15;
  if (rem === 0) return true;
  return (a[full] & ((0xffff << (16 - rem)) & 0xffff)) === c[full];
}

/**
 * Parses `addr` or `addr/bits` (IPv4 or IPv6; v4-mapped blocks of /96 or longer become IPv4). Host
 * bits are cleared. Returns null on anything else.
 */
export function parseCidr(text: string): Cidr | null {
  const s = text.trim();
  let slash = -1;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) === SLASH) {
      slash = i;
      break;
    }
  }
  const addr = new IpAddr();
  const addrEnd = slash < 0 ? s.length : slash;
  // Parse as IPv6 first when it has a colon so `::ffff:10.0.0.0/104` keeps its v6 prefix length.
  let mappedV4 = false;
  let hasColon = false;
  for (let i = 0; i < addrEnd; i++) if (s.charCodeAt(i) === COLON) hasColon = true;
  if (hasColon) {
    if (!parseV6(s, 0, addrEnd, addr.groups)) return null;
    addr.family = 6;
    mappedV4 = isV4Mapped(addr.groups);
  } else if (!parseIp(s, 0, addrEnd, addr)) {
    return null;
  }
  const maxBits = addr.family === 4 ? 32 : 128;
  let bits = maxBits;
  if (slash >= 0) {
    const digits = s.slice(slash + 1);
    if (digits.length === 0 || digits.length > 3) return null;
    bits = 0;
    for (let i = 0; i < digits.length; i++) {
      const c = digits.charCodeAt(i);
      if (c < 0x30 || c > 0x39 || (i === 0 && c === 0x30 && digits.length > 1)) return null;
      bits = bits * 10 + (c - 0x30);
    }
    if (bits > maxBits) return null;
  }
  if (mappedV4 && bits >= 96) {
    const g = addr.groups;
    g[0] = g[6];
    g[1] = g[7];
    g.fill(0, 2);
    addr.family = 4;
    bits -= 96;
  }
  maskGroups(addr.groups, bits);
  const family = addr.family === 4 ? 4 : 6;
  return { family, groups: addr.groups, bits, text: `${formatIp(addr)}/${bits}` };
}

/** A small list of CIDRs matched by linear scan (trusted proxies, allowlist: a handful of entries). */
export class CidrSet {
  readonly #cidrs: Cidr[];

  /** Builds a set from CIDR texts; `invalid` receives the entries that did not parse. */
  constructor(texts: readonly string[], invalid: string[] = []) {
    this.#cidrs = [];
    for (const t of texts) {
      const c = parseCidr(t);
      if (c === null) invalid.push(t);
      else this.#cidrs.push(c);
    }
  }

  get size(): number {
    return this.#cidrs.length;
  }

  /** Whether any block contains `addr`. Allocation-free. */
  contains(addr: IpAddr): boolean {
    const list = this.#cidrs;
    for (let i = 0; i < list.length; i++) if (cidrContains(list[i], addr)) return true;
    return false;
  }
}
