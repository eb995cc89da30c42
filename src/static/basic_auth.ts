/**
 * HTTP Basic authentication (RFC 7617) for paths a `_headers` rule protects with `Basic-Auth`. Passwords
 * are stored as PBKDF2-SHA256 hashes (`$pbkdf2-sha256$i=ITERATIONS$SALT$HASH`, PHC string format, unpadded
 * base64; made by `deno task hash-password`), derived with WebCrypto off the event loop and compared in
 * constant time. The user name is found without an early exit, and an unknown user costs one derivation
 * like a known one, so timing tells neither which users exist nor how much of a password was right.
 *
 * A verified `Authorization` value is remembered (by its SHA-256, per credential list) so that a logged-in
 * browser's every request does not pay a derivation; a failed one is never remembered. At most
 * `MAX_AUTH_VERIFICATIONS_IN_FLIGHT` derivations run at once; beyond that a guess is answered "busy".
 *
 * Never throws on input.
 */

import { createHash } from "node:crypto";
import type { Credential, PasswordHash } from "./rules.ts";
import { encodeBase64, parsePasswordHash } from "./rules.ts";

/** Derivations (each tens of milliseconds of CPU) allowed at once; more are answered 503 + Retry-After. */
export const MAX_AUTH_VERIFICATIONS_IN_FLIGHT = 4;
/** Verified `Authorization` values remembered per credential list; the set is emptied when full. */
export const AUTH_CACHE_ENTRIES = 1024;
/** Iterations `deno task hash-password` uses: about 50 ms of one core on the build machine. */
export const DEFAULT_HASH_ITERATIONS = 100_000;
/** Longest `Authorization` value considered; longer is simply wrong. */
const MAX_AUTHORIZATION_BYTES = 4096;

export type AuthVerdict = "ok" | "denied" | "busy";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function sha256(data: string | Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** Equal-length comparison whose time does not depend on where the inputs differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function derive(password: Uint8Array, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  // WebCrypto wants views over plain ArrayBuffers: copies (a few bytes) make sure of it.
  const key = await crypto.subtle.importKey("raw", new Uint8Array(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(salt), iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/** A new hash string for `password` (random 16-byte salt). */
export async function hashPassword(password: string, iterations = DEFAULT_HASH_ITERATIONS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await derive(encoder.encode(password), salt, iterations);
  const text = `$pbkdf2-sha256$i=${iterations}$${encodeBase64(salt)}$${encodeBase64(hash)}`;
  if (typeof parsePasswordHash(text) === "string") {
    throw new RangeError(`iterations out of range: ${iterations}`);
  }
  return text;
}

/** `Basic <base64(user:password)>` → its parts, or null when it is not that. */
function parseBasic(value: string): { user: string; password: Uint8Array } | null {
  const m = /^basic[ ]+([A-Za-z0-9+/=._~-]+)[ ]*$/i.exec(value);
  if (m === null) return null;
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
  const colon = bytes.indexOf(0x3a);
  if (colon < 0) return null;
  return { user: decoder.decode(bytes.subarray(0, colon)), password: bytes.subarray(colon + 1) };
}

export class BasicAuth {
  #verified = new WeakMap<readonly Credential[], Set<string>>();
  #inFlight = 0;

  /**
   * Whether `authorization` (the header's value, if any) names one of `creds` with its password.
   * Synchronous for a missing or malformed header and for a value verified before.
   */
  check(creds: readonly Credential[], authorization: string | undefined): AuthVerdict | Promise<AuthVerdict> {
    if (authorization === undefined || authorization.length > MAX_AUTHORIZATION_BYTES) return "denied";
    const digest = createHash("sha256").update(authorization).digest("hex");
    const known = this.#verified.get(creds);
    if (known !== undefined && known.has(digest)) return "ok";
    const given = parseBasic(authorization);
    if (given === null) return "denied";
    if (this.#inFlight >= MAX_AUTH_VERIFICATIONS_IN_FLIGHT) return "busy";
    this.#inFlight++;
    return this.#verify(creds, given).then((ok) => {
      if (!ok) return "denied";
      let set = this.#verified.get(creds);
      if (set === undefined) this.#verified.set(creds, set = new Set());
      if (set.size >= AUTH_CACHE_ENTRIES) set.clear();
      set.add(digest);
      return "ok";
    }).finally(() => this.#inFlight--);
  }

  async #verify(
    creds: readonly Credential[],
    given: { user: string; password: Uint8Array },
  ): Promise<boolean> {
    // Every name is compared (as digests, so lengths do not show) and none ends the loop early.
    const userDigest = sha256(given.user);
    let match: PasswordHash | null = null;
    for (const c of creds) {
      if (constantTimeEqual(sha256(c.user), userDigest) && match === null) match = c.password;
    }
    const target = match ?? creds[0].password;
    const derived = await derive(given.password, target.salt, target.iterations);
    return constantTimeEqual(derived, target.hash) && match !== null;
  }
}
