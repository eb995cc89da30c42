/** Basic auth: hash format round trip, verdicts, the verified cache, the in-flight bound. */

import assert from "node:assert/strict";
import {
  BasicAuth,
  constantTimeEqual,
  hashPassword,
  MAX_AUTH_VERIFICATIONS_IN_FLIGHT,
} from "../../src/static/basic_auth.ts";
import { type Credential, parsePasswordHash, type PasswordHash } from "../../src/static/rules.ts";

const header = (user: string, password: string) =>
  "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${password}`)));

async function creds(): Promise<Credential[]> {
  const ann = parsePasswordHash(await hashPassword("pässword", 10_000)) as PasswordHash;
  const bob = parsePasswordHash(await hashPassword("other", 10_000)) as PasswordHash;
  return [{ user: "ann", password: ann }, { user: "bob", password: bob }];
}

Deno.test("hashPassword makes a hash the _headers parser accepts, salted differently each time", async () => {
  const a = await hashPassword("x", 10_000);
  const b = await hashPassword("x", 10_000);
  assert.match(a, /^\$pbkdf2-sha256\$i=10000\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.notEqual(a, b);
  assert.equal(typeof parsePasswordHash(a), "object");
  await assert.rejects(() => hashPassword("x", 10));
});

Deno.test("check: right user and password ok (UTF-8), anything else denied", async () => {
  const list = await creds();
  const auth = new BasicAuth();
  assert.equal(await auth.check(list, header("ann", "pässword")), "ok");
  assert.equal(await auth.check(list, header("bob", "other")), "ok");
  assert.equal(await auth.check(list, header("ann", "other")), "denied");
  assert.equal(await auth.check(list, header("carol", "other")), "denied");
  assert.equal(auth.check(list, undefined), "denied");
  assert.equal(auth.check(list, "Bearer abc"), "denied");
  assert.equal(auth.check(list, "Basic !!!"), "denied");
  assert.equal(auth.check(list, "Basic " + btoa("no-colon")) instanceof Promise, false);
});

Deno.test("a verified header is answered synchronously afterwards; a failed one never is", async () => {
  const list = await creds();
  const auth = new BasicAuth();
  const good = header("ann", "pässword");
  assert.ok(auth.check(list, good) instanceof Promise);
  assert.equal(await auth.check(list, good), "ok");
  assert.equal(auth.check(list, good), "ok", "remembered: no derivation");
  const bad = header("ann", "guess");
  assert.equal(await auth.check(list, bad), "denied");
  assert.ok(auth.check(list, bad) instanceof Promise, "a failure is derived again every time");
  assert.ok(
    auth.check([...list], good) instanceof Promise,
    "remembered per credential list (a reload resets)",
  );
});

Deno.test("at most MAX_AUTH_VERIFICATIONS_IN_FLIGHT derivations at once; more are busy", async () => {
  const list = await creds();
  const auth = new BasicAuth();
  const pending = [];
  for (let i = 0; i < MAX_AUTH_VERIFICATIONS_IN_FLIGHT; i++) {
    pending.push(auth.check(list, header("ann", `g${i}`)));
  }
  assert.equal(auth.check(list, header("ann", "one more")), "busy");
  await Promise.all(pending);
  assert.equal(await auth.check(list, header("ann", "pässword")), "ok");
});

Deno.test("constantTimeEqual compares whole arrays", () => {
  assert.ok(constantTimeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])));
  assert.ok(!constantTimeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])));
  assert.ok(!constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3])));
});
