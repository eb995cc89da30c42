/**
 * The GUARD_STORE setting's grammar: `memory`, or `redis[s]://[[user]:password@]host:port[/db]`, parsed
 * into a target (secrets percent-decoded, the password never in any printed form) and redacted for
 * messages. Shared by config validation and the Redis store, so `--check` and the server agree.
 *
 * Pure: never mentions `Deno.`; never throws.
 */

/** Where the store lives, parsed from GUARD_STORE (plus the secrets loaded beside it). */
export interface StoreTarget {
  host: string;
  port: number;
  db: number;
  /** `rediss://`: TLS to Redis, the certificate checked against the system roots plus `caCerts`. */
  tls: boolean;
  /** ACL user sent with AUTH; null: Redis's `default` user. */
  user: string | null;
  /** AUTH password; null: no AUTH. Read only by the connector: never logged, shown or put in an error. */
  password: string | null;
  /** Extra trusted CA certificates (PEM) for `rediss://` with a private CA; empty: system roots only. */
  caCerts: string[];
  /** The URL as configured with the password shown as `***`: the only form of it ever printed. */
  url: string;
}

/** Secrets kept out of the URL: GUARD_STORE_PASSWORD_FILE's content and GUARD_STORE_CA_FILE's PEM. */
export interface StoreSecrets {
  /** Wins over a password in the URL. */
  password?: string | null;
  caCerts?: readonly string[];
}

/** `parseGuardStore`'s answer: a target (null for `memory`), or why the text is not a store URL. */
export type ParseGuardStoreResult = { ok: true; target: StoreTarget | null } | { ok: false; reason: string };

/**
 * The GUARD_STORE URL: scheme, userinfo (up to the last `@`; checked apart, so a raw `@` in a password
 * gets its own reason), host (an IPv6 literal in brackets), port, db.
 */
const STORE_URL =
  /^(rediss?):\/\/(?:(.*)@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})(?:\/(\d{1,2}))?\/?$/;
/** RFC 3986 userinfo characters; anything else (`@`, `/`, `#`, space…) must be percent-encoded. */
const USERINFO = /^[A-Za-z0-9\-._~!$&'()*+,;=%:]*$/;
/** Redis's default build has 16 databases (`databases 16`). */
const MAX_DB = 15;

/**
 * `memory` → null (the embedded table); `redis://[[user]:password@]host:port[/db]` (or `rediss://`, TLS)
 * → its target, user and password percent-decoded; anything else an error whose reason never quotes the
 * userinfo. `secrets.password` (from GUARD_STORE_PASSWORD_FILE) overrides the URL's password.
 */
export function parseGuardStore(text: string, secrets: StoreSecrets = {}): ParseGuardStoreResult {
  if (text === "memory") return { ok: true, target: null };
  const m = STORE_URL.exec(text);
  if (m === null) return { ok: false, reason: "not memory or a redis:// / rediss:// URL with host:port" };
  const [, scheme, userinfo, rawHost, rawPort, rawDb] = m;
  const port = Number(rawPort);
  const db = rawDb === undefined ? 0 : Number(rawDb);
  if (port < 1 || port > 65535) return { ok: false, reason: "port must be between 1 and 65535" };
  if (db > MAX_DB) return { ok: false, reason: `db must be between 0 and ${MAX_DB}` };
  let user: string | null = null;
  let password: string | null = null;
  let rawUser = "";
  if (userinfo !== undefined) {
    if (!USERINFO.test(userinfo)) {
      return { ok: false, reason: "user and password must percent-encode reserved characters" };
    }
    const colon = userinfo.indexOf(":");
    rawUser = colon < 0 ? userinfo : userinfo.slice(0, colon);
    try {
      if (rawUser !== "") user = decodeURIComponent(rawUser);
      if (colon >= 0) password = decodeURIComponent(userinfo.slice(colon + 1));
    } catch {
      return { ok: false, reason: "bad percent-encoding in the user or password" };
    }
    if (user === null && password === null) return { ok: false, reason: "empty user and password before @" };
    if (password === "") return { ok: false, reason: "empty password after :" };
  }
  if (secrets.password !== undefined && secrets.password !== null) password = secrets.password;
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  const rest = text.slice(scheme.length + 3 + (userinfo === undefined ? 0 : userinfo.length + 1));
  const shownUserinfo = password !== null ? `${rawUser}:***@` : user !== null ? `${rawUser}@` : "";
  return {
    ok: true,
    target: {
      host,
      port,
      db,
      tls: scheme === "rediss",
      user,
      password,
      caCerts: [...(secrets.caCerts ?? [])],
      url: `${scheme}://${shownUserinfo}${rest}`,
    },
  };
}

/**
 * `text` (a GUARD_STORE value, valid or not) with everything between `://` and the last `@` shown as
 * `***`: for messages about a value that did not parse, where user and password cannot be told apart.
 */
export function redactGuardStore(text: string): string {
  const at = text.lastIndexOf("@");
  if (at < 0) return text;
  const sep = text.indexOf("://");
  const start = sep >= 0 && sep < at ? sep + 3 : 0;
  return `${text.slice(0, start)}***${text.slice(at)}`;
}
