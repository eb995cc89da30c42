/**
 * Per-path site rules in the format Netlify and Cloudflare Pages read from a site's root: `_headers`
 * (response headers, and `Basic-Auth`, for path patterns) and `_redirects` (redirects and 200 rewrites).
 * Owns their strict parsers (every problem a line-numbered error; headers that would break framing or
 * security refused), pattern matching (`/*` splats, `:placeholders`, query-less, trailing slash optional)
 * and the merge of custom headers into Vento's own.
 *
 * Pure: strings in, data out; never mentions `Deno.`, never throws on input. Matching is a linear walk over
 * the rules; the responder remembers its result per request path, so it runs once per path, not per request.
 */

/** Largest `_headers` or `_redirects` file read, in bytes; a larger one is an error at start and reload. */
export const MAX_RULES_FILE_BYTES = 1024 * 1024;
/** Most rules in one file (Netlify advises far fewer); more is an error. */
export const MAX_RULES = 10_000;
/** Longest header value in `_headers`, in bytes. */
export const MAX_HEADER_VALUE_BYTES = 8 * 1024;
/** PBKDF2 iterations a `Basic-Auth` hash may name (below the floor is too weak, above it a CPU hazard). */
export const MIN_HASH_ITERATIONS = 10_000;
export const MAX_HASH_ITERATIONS = 10_000_000;

/** One problem, on a 1-based line of the file it was found in. */
export interface RuleError {
  line: number;
  message: string;
}

/** A compiled path pattern: literal segments, `:name` segments, and an optional final `*` splat. */
export interface Pattern {
  readonly text: string;
  /** Segments after the leading `/`, trailing slash dropped; a `:name` segment captures one segment. */
  readonly segments: readonly string[];
  readonly splat: boolean;
  /** Names captured (`splat` included when the pattern ends with `*`). */
  readonly names: readonly string[];
}

/** A PBKDF2-SHA256 password hash (`$pbkdf2-sha256$i=N$salt$hash`, PHC string format, unpadded base64). */
export interface PasswordHash {
  readonly iterations: number;
  readonly salt: Uint8Array;
  readonly hash: Uint8Array;
}

export interface Credential {
  readonly user: string;
  readonly password: PasswordHash;
}

export interface HeaderRule {
  readonly line: number;
  readonly pattern: Pattern;
  /** Headers set, in file order (values may hold `:placeholders` of the pattern). */
  readonly set: ReadonlyArray<readonly [string, string]>;
  /** Lower-case names removed (`! Name`) from whatever the matching rules set. */
  readonly detach: readonly string[];
  readonly auth: readonly Credential[] | null;
}

export type RedirectStatus = 200 | 301 | 302 | 303 | 307 | 308 | 404;

export interface RedirectRule {
  readonly line: number;
  readonly pattern: Pattern;
  /** A path on this site, or (redirects only) an absolute http(s) URL; may hold `:placeholders`. */
  readonly to: string;
  readonly status: RedirectStatus;
  /** `!`: applies even when a file exists at the requested path (otherwise the file shadows the rule). */
  readonly force: boolean;
}

/** Both files, parsed. `null` rules (no files) cost nothing on any path. */
export interface SiteRules {
  readonly headers: readonly HeaderRule[];
  readonly redirects: readonly RedirectRule[];
  readonly hasAuth: boolean;
}

export type Parsed<T> = { ok: true; rules: T[] } | { ok: false; errors: RuleError[] };

/** What a path's matching header rules add up to. */
export interface PathHeaders {
  /** Headers to add to (or replace in) the response, in rule order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Credentials of the last matching rule with `Basic-Auth`, or null when the path is open. */
  readonly auth: readonly Credential[] | null;
  /** A value was filled in from the path (`:name`, `:splat`): the headers differ from path to path. */
  readonly perPath: boolean;
}

/** The rule a path matched in `_redirects`, with its destination filled in (query not yet added). */
export interface RedirectMatch {
  readonly rule: RedirectRule;
  readonly to: string;
}

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([200, 301, 302, 303, 307, 308, 404]);
/** Netlify's default; Cloudflare Pages defaults to 302, so portable files write the code. */
export const DEFAULT_REDIRECT_STATUS: RedirectStatus = 301;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Visible ASCII: what a URL path in a request line may hold, and so what a pattern or destination may. */
const PATH_CHARS = /^[\x21-\x7e]+$/;
/** Header value: visible ASCII, space and tab (RFC 9110 §5.5 without obs-text). */
const VALUE_CHARS = /^[\x20-\x7e\t]*$/;
const PLACEHOLDER = /:([A-Za-z_][A-Za-z0-9_]*)/g;

/** Header names `_headers` may not set, with why (framing, hop-by-hop, or Vento's own). */
const REFUSED_HEADERS: ReadonlyMap<string, string> = new Map([
  ["content-length", "would break the response framing (Vento sets it)"],
  ["transfer-encoding", "would break the response framing"],
  ["content-range", "would break the response framing (Vento sets it for ranges)"],
  ["trailer", "would break the response framing"],
  ["connection", "is hop-by-hop (Vento manages the connection)"],
  ["keep-alive", "is hop-by-hop (Vento manages the connection)"],
  ["proxy-connection", "is hop-by-hop"],
  ["te", "is hop-by-hop"],
  ["upgrade", "is hop-by-hop"],
  ["proxy-authenticate", "is hop-by-hop"],
  ["proxy-authorization", "is hop-by-hop"],
  ["date", "is set by Vento on every response"],
  ["server", "is set by Vento on every response"],
  ["content-encoding", "would misdescribe the body (Vento sets it when it sends a compressed file)"],
  ["etag", "is set by Vento (validators must match what it compares)"],
  ["last-modified", "is set by Vento (validators must match what it compares)"],
  ["accept-ranges", "is set by Vento"],
  ["location", "belongs in _redirects"],
  ["www-authenticate", "is sent by Basic-Auth"],
  ["status", "is not a header"],
]);

// --- patterns ----------------------------------------------------------------------------------------

/** Splits a path into segments after the leading `/`, dropping one trailing slash (`/a/` ≡ `/a`). */
function segmentsOf(path: string): string[] {
  const body = path.length > 1 && path.endsWith("/") ? path.slice(1, -1) : path.slice(1);
  return body === "" ? [] : body.split("/");
}

/**
 * A literal segment in the one encoding request paths are matched in (decoded, then encoded as
 * `encodeURIComponent` does), so `/caf%C3%A9`, `/caf%c3%a9` and `/café` all name one path. Null when the
 * segment holds a malformed escape.
 */
function canonicalSegment(s: string): string | null {
  try {
    return encodeURIComponent(decodeURIComponent(s));
  } catch {
    return null;
  }
}

/**
 * Compiles a source pattern, or says what is wrong with it. Paths are matched in their canonical form
 * (decoded once, dot segments resolved, re-encoded: see `encodePath`), so `/%61dmin/` cannot slip past a
 * rule written for `/admin/*`.
 */
export function compilePattern(text: string): Pattern | string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    return `host-specific rules ("${text}") are not supported: write the path only`;
  }
  if (!text.startsWith("/")) return `a path pattern must start with "/", got "${text}"`;
  if (!PATH_CHARS.test(text)) {
    return `a path pattern must be visible ASCII (percent-encode the rest), got "${text}"`;
  }
  if (text.includes("?") || text.includes("#")) {
    return `"${text}": rules match the path only (query and fragment conditions are not supported)`;
  }
  const segments = segmentsOf(text);
  const names: string[] = [];
  let splat = false;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s.includes("*")) {
      if (s !== "*" || i !== segments.length - 1) {
        return `"${text}": a splat (*) may only be the whole last segment, as in /assets/*`;
      }
      splat = true;
      names.push("splat");
    } else if (s.startsWith(":")) {
      const name = s.slice(1);
      if (!NAME.test(name)) return `"${text}": a placeholder is ":" and a name of letters, digits and _`;
      if (name === "splat" || names.includes(name)) return `"${text}": placeholder :${name} is used twice`;
      names.push(name);
    } else if (s === "" || s === "." || s === "..") {
      return `"${text}": empty and dot segments never match a request path`;
    } else {
      const canonical = canonicalSegment(s);
      if (canonical === null) return `"${text}": a malformed percent-escape`;
      segments[i] = canonical;
    }
  }
  return { text, segments: splat ? segments.slice(0, -1) : segments, splat, names };
}

/**
 * Matches `path` (no query, in the canonical form `compilePattern` describes) against `p`, with a trailing
 * slash optional on both. Returns the captured values by name (the splat may be empty: `/app/*` matches `/app`), or null.
 */
export function matchPattern(p: Pattern, path: string): Record<string, string> | null {
  const segs = segmentsOf(path);
  const n = p.segments.length;
  if (p.splat ? segs.length < n : segs.length !== n) return null;
  let captured: Record<string, string> | null = null;
  for (let i = 0; i < n; i++) {
    const want = p.segments[i];
    if (want.charCodeAt(0) === 0x3a) {
      if (segs[i] === "") return null;
      (captured ??= {})[want.slice(1)] = segs[i];
    } else if (want !== segs[i]) return null;
  }
  if (p.splat) {
    let rest = segs.slice(n).join("/");
    // Keep a trailing slash the client sent inside the splat (`/app/a/` → `a/`).
    if (rest !== "" && path.endsWith("/")) rest += "/";
    (captured ??= {}).splat = rest;
  }
  return captured ?? {};
}

/** Replaces `:name` (captured names only) in `text`. */
function fill(text: string, values: Record<string, string>): string {
  return text.replace(PLACEHOLDER, (m, name: string) => values[name] ?? m);
}

/** Placeholders `text` uses that `p` does not capture (a typo that would be sent literally). */
function unknownPlaceholders(text: string, p: Pattern): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(PLACEHOLDER)) if (!p.names.includes(m[1])) out.push(`:${m[1]}`);
  return out;
}

// --- _headers ----------------------------------------------------------------------------------------

function decodeBase64(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9+/]+$/.test(s)) return null;
  try {
    const bin = atob(s + "=".repeat((4 - (s.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** Unpadded standard base64 (the PHC string format's). */
export function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/=+$/, "");
}

/** Parses `$pbkdf2-sha256$i=N$salt$hash`; a string says what is wrong. */
export function parsePasswordHash(text: string): PasswordHash | string {
  const m = /^\$pbkdf2-sha256\$i=(\d{1,9})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(text);
  if (m === null) return "is not a $pbkdf2-sha256$i=ITERATIONS$SALT$HASH hash";
  const iterations = Number(m[1]);
  if (iterations < MIN_HASH_ITERATIONS || iterations > MAX_HASH_ITERATIONS) {
    return `must use ${MIN_HASH_ITERATIONS} to ${MAX_HASH_ITERATIONS} iterations, not ${iterations}`;
  }
  const salt = decodeBase64(m[2]);
  const hash = decodeBase64(m[3]);
  if (salt === null || salt.length < 8) return "needs a salt of at least 8 bytes";
  if (hash === null || hash.length !== 32) return "needs a 32-byte hash";
  return { iterations, salt, hash };
}

const HASH_HINT = "store a hash made by `deno task hash-password`, never the password itself";

/** `user:hash user2:hash2`, as Netlify's `Basic-Auth` header; a string says what is wrong. */
function parseBasicAuth(value: string): Credential[] | string {
  const creds: Credential[] = [];
  const items = value.split(/[ \t]+/).filter((x) => x !== "");
  if (items.length === 0) return "Basic-Auth needs at least one user:hash";
  for (const item of items) {
    const colon = item.indexOf(":");
    if (colon <= 0) return `Basic-Auth: expected user:hash, got "${item.slice(0, 40)}"`;
    const user = item.slice(0, colon);
    if (creds.some((c) => c.user === user)) return `Basic-Auth: user "${user}" is listed twice`;
    const password = parsePasswordHash(item.slice(colon + 1));
    // The value is not quoted back: it may be a password typed in by mistake.
    if (typeof password === "string") {
      return `Basic-Auth: the password of "${user}" ${password}; ${HASH_HINT}`;
    }
    creds.push({ user, password });
  }
  return creds;
}

/**
 * Parses a `_headers` file: a path pattern on its own line, then its headers indented below it
 * (`  Name: value`, or `  ! Name` to remove a header another matching rule set). `#` starts a comment line.
 */
export function parseHeadersFile(text: string): Parsed<HeaderRule> {
  const errors: RuleError[] = [];
  const rules: HeaderRule[] = [];
  let current: {
    line: number;
    pattern: Pattern;
    set: Array<readonly [string, string]>;
    detach: string[];
    auth: Credential[] | null;
    lines: number;
  } | null = null;
  const finish = () => {
    if (current === null) return;
    if (current.lines === 0) {
      errors.push({ line: current.line, message: `"${current.pattern.text}" has no header lines below it` });
    } else if (current.set.length > 0 || current.detach.length > 0 || current.auth !== null) {
      rules.push(current);
    }
    current = null;
  };
  // The last pattern line was refused: its header lines are skipped without an error each.
  let underBadPattern = false;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i];
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const indented = raw.charCodeAt(0) === 0x20 || raw.charCodeAt(0) === 0x09;
    if (!indented) {
      finish();
      if (rules.length >= MAX_RULES) {
        errors.push({ line, message: `more than ${MAX_RULES} rules` });
        break;
      }
      const p = compilePattern(trimmed);
      underBadPattern = typeof p === "string";
      if (typeof p === "string") errors.push({ line, message: p });
      else current = { line, pattern: p, set: [], detach: [], auth: null, lines: 0 };
      continue;
    }
    if (current === null) {
      if (!underBadPattern) errors.push({ line, message: "a header line must follow a path pattern line" });
      continue;
    }
    const rule = current as NonNullable<typeof current>;
    rule.lines++;
    if (trimmed.startsWith("!")) {
      const name = trimmed.slice(1).trim();
      if (!TOKEN.test(name)) errors.push({ line, message: `"! ${name}": expected a header name to remove` });
      else rule.detach.push(name.toLowerCase());
      continue;
    }
    const colon = trimmed.indexOf(":");
    if (colon <= 0) {
      errors.push({ line, message: `expected "Name: value", got "${trimmed.slice(0, 60)}"` });
      continue;
    }
    const name = trimmed.slice(0, colon).trim();
    const value = trimmed.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (!TOKEN.test(name)) {
      errors.push({ line, message: `"${name.slice(0, 60)}" is not a valid header name` });
      continue;
    }
    if (lower === "basic-auth") {
      if (rule.auth !== null) {
        errors.push({
          line,
          message: "Basic-Auth is set twice for this pattern: list every user:hash on one line",
        });
        continue;
      }
      const creds = parseBasicAuth(value);
      if (typeof creds === "string") errors.push({ line, message: creds });
      else rule.auth = creds;
      continue;
    }
    const why = REFUSED_HEADERS.get(lower);
    if (why !== undefined) {
      errors.push({ line, message: `${name} ${why}` });
      continue;
    }
    if (!VALUE_CHARS.test(value)) {
      errors.push({
        line,
        message: `${name}: a value must be printable ASCII (no control or non-ASCII characters)`,
      });
      continue;
    }
    if (value.length > MAX_HEADER_VALUE_BYTES) {
      errors.push({ line, message: `${name}: value longer than ${MAX_HEADER_VALUE_BYTES} bytes` });
      continue;
    }
    if (lower === "x-content-type-options") {
      // Vento sends `nosniff` on every response already; anything else would contradict it.
      if (value.toLowerCase() !== "nosniff") {
        errors.push({ line, message: "X-Content-Type-Options is always nosniff (Vento sends it)" });
      }
      continue;
    }
    // `:name` of a name the pattern captures is filled in per path; any other `:` (URLs, CSP's `https:`)
    // is sent as written.
    rule.set.push([name, value]);
  }
  finish();
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules };
}

/** The headers and auth every header rule matching `path` (no query) gives, merged in rule order. */
export function headersFor(rules: readonly HeaderRule[], path: string): PathHeaders {
  let out: Array<[string, string]> | null = null;
  let detach: string[] | null = null;
  let auth: readonly Credential[] | null = null;
  let perPath = false;
  for (const rule of rules) {
    const values = matchPattern(rule.pattern, path);
    if (values === null) continue;
    if (rule.auth !== null) auth = rule.auth;
    if (rule.detach.length > 0) (detach ??= []).push(...rule.detach);
    for (const [name, template] of rule.set) {
      const value = rule.pattern.names.length > 0 ? fill(template, values) : template;
      if (value !== template) perPath = true;
      out ??= [];
      const lower = name.toLowerCase();
      // The same header from several rules is one field, values joined (Set-Cookie stays one per line).
      const same = lower === "set-cookie" ? undefined : out.find((h) => h[0].toLowerCase() === lower);
      if (same !== undefined) same[1] = `${same[1]}, ${value}`;
      else out.push([name, value]);
    }
  }
  if (out !== null && detach !== null) out = out.filter((h) => !detach!.includes(h[0].toLowerCase()));
  return { headers: out ?? [], auth, perPath };
}

// --- _redirects --------------------------------------------------------------------------------------

/**
 * Parses a `_redirects` file: `FROM TO [STATUS][!]` per line, whitespace separated, `#` comments.
 * STATUS is 301 (the default), 302, 303, 307, 308, 200 for a rewrite (the URL stays, the content is
 * TO's), or 404 (TO's content as this path's "not found" page); `!` forces the rule over an existing file.
 */
export function parseRedirectsFile(text: string): Parsed<RedirectRule> {
  const errors: RuleError[] = [];
  const rules: RedirectRule[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const trimmed = lines[i].trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    if (rules.length >= MAX_RULES) {
      errors.push({ line, message: `more than ${MAX_RULES} rules` });
      break;
    }
    // A comment may also end a rule line.
    const tokens = trimmed.replace(/\s+#.*$/, "").split(/\s+/);
    if (tokens.length < 2) {
      errors.push({ line, message: `expected "FROM TO [STATUS]", got "${trimmed.slice(0, 80)}"` });
      continue;
    }
    const pattern = compilePattern(tokens[0]);
    if (typeof pattern === "string") {
      errors.push({ line, message: pattern });
      continue;
    }
    const to = tokens[1];
    const absolute = /^https?:\/\/[^/?#\s]+/i.test(to);
    if (!absolute && !to.startsWith("/")) {
      errors.push({
        line,
        message: `the destination must be a path (/…) or an http(s) URL, got "${to.slice(0, 80)}"` +
          (to.includes("=") ? " (query conditions are not supported)" : ""),
      });
      continue;
    }
    if (!PATH_CHARS.test(to) || to.startsWith("//")) {
      errors.push({ line, message: `"${to.slice(0, 80)}" is not a valid destination` });
      continue;
    }
    let status: RedirectStatus = DEFAULT_REDIRECT_STATUS;
    let force = false;
    if (tokens.length > 2) {
      const m = /^(\d{3})(!?)$/.exec(tokens[2]);
      if (m === null || !REDIRECT_STATUSES.has(Number(m[1]))) {
        errors.push({
          line,
          message:
            `status must be 200, 301, 302, 303, 307, 308 or 404 (optionally with !), got "${tokens[2]}"` +
            (tokens[2].includes("=") ? " (conditions are not supported)" : ""),
        });
        continue;
      }
      status = Number(m[1]) as RedirectStatus;
      force = m[2] === "!";
    }
    if (tokens.length > 3) {
      errors.push({
        line,
        message: `unexpected "${tokens[3].slice(0, 40)}" after the status (conditions are not supported)`,
      });
      continue;
    }
    if (status === 404 && absolute) {
      errors.push({ line, message: "a 404 rule serves a page of this site: TO must be a path" });
      continue;
    }
    if (status === 200 && absolute) {
      errors.push({
        line,
        message: "a rewrite (200) must stay on this site: proxying to another origin is not supported",
      });
      continue;
    }
    const unknown = unknownPlaceholders(absolute ? to.replace(/^https?:\/\/[^/]*/i, "") : to, pattern);
    if (unknown.length > 0) {
      errors.push({
        line,
        message: `"${to}" uses ${unknown.join(", ")}, which "${pattern.text}" does not capture`,
      });
      continue;
    }
    rules.push({ line, pattern, to, status, force });
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules };
}

/** The first redirect rule matching `path` (no query), with its destination filled in; null when none. */
export function redirectFor(rules: readonly RedirectRule[], path: string): RedirectMatch | null {
  for (const rule of rules) {
    const values = matchPattern(rule.pattern, path);
    if (values === null) continue;
    let to = rule.pattern.names.length > 0 ? fill(rule.to, values) : rule.to;
    // A captured value may start with "/" (`/go/* /:splat`, asked for `/go//evil.example`): never let the
    // result become a scheme-relative `//host` URL that leaves the site.
    if (to.startsWith("//")) to = "/" + to.replace(/^\/+/, "");
    return { rule, to };
  }
  return null;
}

/** Appends the request's query (`?…` or "") unless the destination has its own, as both hosts do. */
export function withQuery(to: string, query: string): string {
  return query === "" || to.includes("?") ? to : to + query;
}

// --- heads -------------------------------------------------------------------------------------------

/**
 * Vento's own header pairs with the custom ones folded in: a custom header replaces Vento's of the same
 * name (Cache-Control, Content-Type…), except Vary, whose tokens are combined; the rest are appended.
 */
export function mergeHeaders(
  own: ReadonlyArray<readonly [string, string]>,
  custom: ReadonlyArray<readonly [string, string]>,
): Array<readonly [string, string]> {
  if (custom.length === 0) return [...own];
  const out: Array<readonly [string, string]> = [...own];
  for (const [name, value] of custom) {
    const lower = name.toLowerCase();
    const at = lower === "set-cookie" ? -1 : out.findIndex((h) => h[0].toLowerCase() === lower);
    if (at < 0) out.push([name, value]);
    else if (lower === "vary") {
      const tokens = out[at][1].split(",").map((t) => t.trim()).filter((t) => t !== "");
      for (const t of value.split(",").map((x) => x.trim())) {
        if (t !== "" && !tokens.some((x) => x.toLowerCase() === t.toLowerCase())) tokens.push(t);
      }
      out[at] = [out[at][0], tokens.join(", ")];
    } else out[at] = [out[at][0], value];
  }
  return out;
}

/**
 * The Cache-Control of a response behind Basic-Auth: never `public` (which would let a shared cache keep
 * and hand out a protected page, RFC 9111 §3.5), always `private`.
 */
export function privateCacheControl(value: string): string {
  const tokens = value.split(",").map((t) => t.trim()).filter((t) =>
    t !== "" && t.toLowerCase() !== "public"
  );
  if (!tokens.some((t) => t.toLowerCase() === "private")) tokens.unshift("private");
  return tokens.join(", ");
}
