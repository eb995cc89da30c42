/**
 * The static file responder: request head → `Reply`. Owns confinement to the document root (real
 * paths and inode checks on top of the pure resolver), the small-file cache and its hot path,
 * validators, ranges, precompressed sidecars, directory handling and error pages.
 *
 * Never reads outside the real document root; never opens anything but a regular file; never throws
 * to its caller (file-system errors become 403/404/500); never writes to a socket (streams are piped
 * by the connection). A fresh cache hit is answered synchronously with no syscall and no allocation.
 */

import type { Clock } from "../core/clock.ts";
import { headerValue, type RequestHead } from "../http/head.ts";
import { buildHead, type Reply } from "../http/response.ts";
import { chooseEncoding, type Encoding, type EncodingPrefs, parseAcceptEncoding } from "./accept_encoding.ts";
import { BufferPool } from "../core/buffer_pool.ts";
import {
  type Conditionals,
  evaluatePreconditions,
  formatHttpDate,
  ifRangeAllows,
  makeEtag,
  truncateToSecond,
  type Validators,
} from "./conditional.ts";
import { type CachedFile, FileCache, type FileIdentity } from "./file_cache.ts";
import { CompressedFileStream, CompressibleTypes, type CompressOptions, Compressor } from "./compress.ts";
import { FileStream, START_CHUNK_BYTES, type StreamBuffers, type StreamSegment } from "./file_stream.ts";
import { ConfinedFs, type Found, isNotFound } from "./confined_fs.ts";
import { ErrorPages, MAX_ERROR_PAGE_BYTES } from "./error_pages.ts";
import {
  type ListingEntry,
  parseListingQuery,
  prefersJson,
  renderListingHtml,
  renderListingJson,
} from "./listing.ts";
import { contentTypeFor, isHtml } from "./mime.ts";
import { type ByteRange, contentRange, parseRange, planMultipart } from "./range.ts";
import { encodePath, resolvePath } from "./resolve.ts";
import type { Config } from "../config/config.ts";
import { type AuthVerdict, BasicAuth } from "./basic_auth.ts";
import {
  type Credential,
  headersFor,
  mergeHeaders,
  privateCacheControl,
  redirectFor,
  type SiteRules,
  withQuery,
} from "./rules.ts";
import { HEADERS_FILE, REDIRECTS_FILE } from "./site_rules.ts";

/** Everything the responder reads from `Config` (pass the `Config` itself; each key is documented there). */
export type StaticOptions = Pick<
  Config,
  | "documentRoot"
  | "indexFile"
  | "dotfiles"
  | "directoryListing"
  | "cacheControlHtml"
  | "cacheControl"
  | "fileCacheMaxFileBytes"
  | "fileCacheMaxBytes"
  | "fileCacheRevalidateMs"
  | "streamChunkBytes"
  | "maxRanges"
  | "precompressed"
  | keyof CompressOptions
>;

/** Methods we answer; sent in `Allow` on 405 and OPTIONS. */
export const ALLOWED_METHODS = "GET, HEAD, OPTIONS";
/** Request paths whose resolution is remembered; beyond it the oldest is forgotten. */
export const MAX_ROUTES = 10_000;
/**
 * Distinct folded heads kept per cached file (rule sets that match its paths differently); the set is
 * emptied when full. Paths matched by the same rules share one.
 */
export const MAX_HEAD_VARIANTS = 64;
/** Distinct Accept-Encoding values whose parse is remembered; the table is emptied when full. */
export const MAX_ENCODING_PREFS = 256;
/** Entries shown in one directory listing; the rest are dropped and the page says so. */
export const MAX_LISTING_ENTRIES = 10_000;
/** Directory entries a listing stats at once (each is one `lstat`; the batch bounds the syscalls in flight). */
export const LISTING_STAT_BATCH = 64;
/** Idle stream buffers kept in the pool (each `streamChunkBytes`). */
export const POOL_MAX_IDLE_BUFFERS = 8;
/** Idle small (slow-start) stream buffers kept. */
export const POOL_MAX_IDLE_SMALL_BUFFERS = 64;
/**
 * Memory all large stream buffers together may take (64 × 256 KiB by default); transfers beyond it keep
 * their small buffer. With the small ones this bounds streaming memory at about
 * `MAX_CONNS × 16 KiB + 16 MiB` whatever the clients do.
 */
export const LARGE_BUFFER_BUDGET_BYTES = 16 * 1024 * 1024;

const encoder = new TextEncoder();

/** The Basic challenge of a 401 (RFC 7617: credentials are UTF-8). */
export const AUTH_CHALLENGE = 'Basic realm="Restricted", charset="UTF-8"';

/** A remembered resolution of one raw request path, trusted for `fileCacheRevalidateMs`. */
type Route =
  | {
    kind: "file";
    /** Relative path of the file served (the index file for a directory). */
    rel: string;
    contentType: string;
    cacheControl: string;
    /** A br representation exists: a `.br` sidecar, or on-the-fly compression (`autoBr`). */
    hasBr: boolean;
    hasGzip: boolean;
    /** br is compressed on the fly (no sidecar; a compressible type at least COMPRESS_MIN_BYTES long). */
    autoBr: boolean;
    autoGzip: boolean;
    identity: CachedFile | null;
    /**
     * Headers `_headers` gives this request path (Cache-Control made private behind Basic-Auth), folded
     * into every head built for it; null when none (the cache entries' own shared replies are used).
     */
    extra: ReadonlyArray<readonly [string, string]> | null;
    /** `extra` as one string: routes with equal keys share their folded replies (and their whole forms). */
    extraKey: string;
    /**
     * `extra` holds values filled in from this path: its replies are this route's alone, so they are not
     * marked reusable (no whole-response copy per path that a client could multiply by asking many paths).
     */
    extraPerPath: boolean;
    /** With `extra`: each cache entry's 200 replies with the rules folded in, built once per entry. */
    custom: Map<CachedFile, { get: Reply; head: Reply }> | null;
    br: CachedFile | null;
    gzip: CachedFile | null;
    checkedAtMs: number;
  }
  | { kind: "status"; status: number; checkedAtMs: number }
  | { kind: "reply"; get: Reply; head: Reply; checkedAtMs: number };

type FileRoute = Extract<Route, { kind: "file" }>;

/** What the conditional/range headers ask for, given the representation's validators and size. */
type Decision =
  | { kind: "full" }
  | { kind: "notModified" }
  | { kind: "status"; status: 412 }
  | { kind: "unsatisfiable" }
  | { kind: "ranges"; ranges: ByteRange[] };

const FULL: Decision = Object.freeze({ kind: "full" }) as Decision;

/**
 * The file opened is not the one looked up (another inode: renamed over, or a symlink swapped in
 * between). The slow path looks the path up again once; a second mismatch answers 404.
 */
class FileReplaced extends Error {
  constructor() {
    super("the file was replaced between lookup and open");
    this.name = "FileReplaced";
  }
}

/** Bits for the request headers that take a request off the hot path. */
const H_CONDITIONAL = 1;
const H_RANGE = 2;

function scanFlags(head: RequestHead): number {
  const h = head.headers;
  let flags = 0;
  for (let i = 0; i < h.length; i += 2) {
    switch (h[i]) {
      case "if-match":
      case "if-none-match":
      case "if-modified-since":
      case "if-unmodified-since":
        flags |= H_CONDITIONAL;
        break;
      case "range":
        flags |= H_RANGE;
        break;
    }
  }
  return flags;
}

function identityOf(info: Deno.FileInfo): FileIdentity {
  return { size: info.size, mtimeMs: info.mtime?.getTime() ?? 0, ino: info.ino ?? 0, dev: info.dev };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino && a.dev === b.dev;
}

function frozenReply(status: number, head: Uint8Array, body: Uint8Array | null, length: number): Reply {
  return Object.freeze({ status, head, body, stream: null, length, close: false, reusable: true });
}

export class StaticResponder {
  readonly #opts: StaticOptions;
  readonly #clock: Clock;
  readonly #fs: ConfinedFs;
  readonly #cache: FileCache;
  readonly #pool: BufferPool;
  readonly #buffers: StreamBuffers;
  readonly #routes = new Map<string, Route>();
  readonly #encodingPrefs = new Map<string, EncodingPrefs>();
  readonly #errorPages: ErrorPages;
  readonly #options: Reply;
  /** COMPRESS_TYPES (a reload that changes a COMPRESS_* setting builds a new responder). */
  readonly #compressible: CompressibleTypes;
  /** Whole-file compressions in flight, by key and file version: concurrent requests share one. */
  readonly #compressing = new Map<string, Promise<CachedFile | null>>();
  /** On-the-fly compressions running (jobs and streams), at most `compressMaxJobs`. */
  #compressJobs = 0;
  /** The compressor thread (started on the first compression). */
  readonly #compressor = new Compressor();

  readonly #logError: (message: string) => void;

  private constructor(
    options: StaticOptions,
    clock: Clock,
    fs: ConfinedFs,
    logError: (message: string) => void,
  ) {
    this.#logError = logError;
    this.#opts = options;
    this.#clock = clock;
    this.#fs = fs;
    this.#errorPages = new ErrorPages(fs, clock, options.fileCacheRevalidateMs, logError);
    this.#cache = new FileCache(options.fileCacheMaxBytes, options.fileCacheMaxFileBytes);
    this.#pool = new BufferPool(options.streamChunkBytes, POOL_MAX_IDLE_BUFFERS);
    this.#buffers = {
      small: new BufferPool(
        Math.min(START_CHUNK_BYTES, options.streamChunkBytes),
        POOL_MAX_IDLE_SMALL_BUFFERS,
      ),
      large: this.#pool,
      maxLargeInUse: Math.max(1, Math.floor(LARGE_BUFFER_BUDGET_BYTES / options.streamChunkBytes)),
    };
    this.#options = frozenReply(204, buildHead(204, [["Allow", ALLOWED_METHODS]]), null, 0);
    this.#compressible = new CompressibleTypes(options.compressTypes);
  }

  /**
   * Resolves the real document root; throws a clear Error if it is missing or not a directory. `fs`, when
   * given, is the confined file system to use (opened on `options.documentRoot`; tests wrap one).
   */
  /** `logError` receives one line per unexpected file-system failure (a 500, an unreadable error page). */
  static async create(
    options: StaticOptions,
    clock: Clock,
    fs?: ConfinedFs,
    logError: (message: string) => void = (m) => console.error(m),
  ): Promise<StaticResponder> {
    return new StaticResponder(options, clock, fs ?? await ConfinedFs.open(options.documentRoot), logError);
  }

  /** Cache occupancy, for stats and tests. */
  cacheStats(): { entries: number; bytes: number; buffersInUse: number } {
    return {
      entries: this.#cache.size,
      bytes: this.#cache.bytes,
      buffersInUse: this.#pool.inUse + this.#buffers.small.inUse,
    };
  }

  /**
   * Answers one request. Returns a Reply synchronously on a fresh cache hit (the hot path: two map
   * lookups and a header scan), else a Promise. Never rejects.
   */
  handle(head: RequestHead): Reply | Promise<Reply> {
    const rules = this.#rules;
    // OPTIONS is exempt: a CORS preflight never carries credentials, and its answer holds no content.
    if (rules !== null && rules.hasAuth && head.method !== "OPTIONS") {
      const creds = this.#authFor(head.path);
      if (creds !== null) {
        const verdict = this.#auth.check(creds, headerValue(head, "authorization"));
        if (verdict instanceof Promise) {
          return verdict.then((v) => v === "ok" ? this.#handle(head) : this.#authRefusal(v, head));
        }
        if (verdict !== "ok") return this.#authRefusal(verdict, head);
      }
    }
    return this.#handle(head);
  }

  #handle(head: RequestHead): Reply | Promise<Reply> {
    const method = head.method;
    const isHead = method === "HEAD";
    if (!isHead && method !== "GET") {
      if (method === "OPTIONS") return this.#rules === null ? this.#options : this.#optionsFor(head.path);
      return this.#error(405, false, false, [["Allow", ALLOWED_METHODS]]);
    }
    const path = head.path;
    const route = this.#routes.get(path);
    const now = this.#clock.nowMs();
    const maxAge = this.#opts.fileCacheRevalidateMs;
    // While one request re-checks a stale path, the others keep using what was cached a moment ago:
    // otherwise every concurrent request for a hot file would stat and realpath it at once.
    const revalidating = this.#revalidating.has(path);
    if (route !== undefined && (revalidating || now - route.checkedAtMs < maxAge)) {
      if (route.kind === "status") return this.#error(route.status, isHead);
      if (route.kind === "reply") return isHead ? route.head : route.get;
      const encoding = route.hasBr || route.hasGzip ? this.#negotiate(head, route) : null;
      const entry = encoding === null ? route.identity : encoding === "br" ? route.br : route.gzip;
      if (entry !== null && entry.live && (revalidating || now - entry.checkedAtMs < maxAge)) {
        this.#cache.touch(entry);
        const flags = scanFlags(head);
        if (flags === 0) {
          if (route.extra === null) return isHead ? entry.headReply : entry.getReply;
          return this.#customReply(route, entry, isHead);
        }
        return this.#fromCache(entry, head, isHead, route);
      }
    }
    if (revalidating) return this.#slow(head, isHead);
    if (route === undefined) return this.#resolveOnce(head, isHead);
    this.#revalidating.add(path);
    return this.#slow(head, isHead).finally(() => this.#revalidating.delete(path));
  }

  /** An error reply (the `<status>.html` page when present, else a built-in one), e.g. for other layers. */
  errorReply(status: number, close = false): Reply | Promise<Reply> {
    return this.#error(status, false, close);
  }

  /**
   * Replaces the `_headers` / `_redirects` rules (start-up and reload). Every remembered resolution is
   * dropped, so heads with the old rules folded in are rebuilt; cached file bytes stay.
   */
  setRules(rules: SiteRules | null): void {
    this.#rules = rules;
    this.#routes.clear();
    this.#authByPath.clear();
  }

  #rules: SiteRules | null = null;
  /** Folded replies by cache entry and `extraKey`, shared by the routes whose rules agree. */
  readonly #customByEntry = new WeakMap<CachedFile, Map<string, { get: Reply; head: Reply }>>();
  readonly #auth = new BasicAuth();
  /** Credentials guarding each request path seen (null: open), bounded like `#routes`. */
  readonly #authByPath = new Map<string, readonly Credential[] | null>();

  /**
   * The rules' canonical form of a request path (decoded once, dot segments resolved, re-encoded) and its
   * query; null when the path is malformed or climbs above the root (it is refused anyway).
   */
  #canonical(path: string): { path: string; query: string } | null {
    const r = resolvePath(path, { dotfiles: "allow" });
    if (!r.ok) return null;
    return { path: encodePath(r.segments, r.trailingSlash), query: r.query };
  }

  /** Who may see `path`: its own Basic-Auth, else (for a 200 rewrite) the destination's. */
  #authFor(path: string): readonly Credential[] | null {
    const known = this.#authByPath.get(path);
    if (known !== undefined) return known;
    const rules = this.#rules!;
    const c = this.#canonical(path);
    let creds: readonly Credential[] | null = null;
    if (c !== null) {
      creds = headersFor(rules.headers, c.path).auth;
      const m = creds === null ? redirectFor(rules.redirects, c.path) : null;
      if (m !== null && m.rule.status === 200) {
        const target = this.#canonical(m.to);
        if (target !== null) creds = headersFor(rules.headers, target.path).auth;
      }
    }
    if (this.#authByPath.size >= MAX_ROUTES) this.#authByPath.delete(this.#authByPath.keys().next().value!);
    this.#authByPath.set(path, creds);
    return creds;
  }

  /** 401 with the Basic challenge, or 503 when too many passwords are being checked at once. */
  #authRefusal(verdict: Exclude<AuthVerdict, "ok">, head: RequestHead): Reply | Promise<Reply> {
    const isHead = head.method === "HEAD";
    if (verdict === "busy") return this.#error(503, isHead, false, [["Retry-After", "1"]]);
    return this.#error(401, isHead, false, [["WWW-Authenticate", AUTH_CHALLENGE]]);
  }

  /** OPTIONS on a path: 204 with Allow, plus the CORS headers `_headers` gives the path (the preflight). */
  #optionsFor(path: string): Reply {
    const c = this.#canonical(path);
    if (c === null) return this.#options;
    const cors = headersFor(this.#rules!.headers, c.path).headers.filter((h) => {
      const lower = h[0].toLowerCase();
      return lower.startsWith("access-control-") || lower === "vary";
    });
    if (cors.length === 0) return this.#options;
    return {
      status: 204,
      head: buildHead(204, [["Allow", ALLOWED_METHODS], ...cors]),
      body: null,
      stream: null,
      length: 0,
      close: false,
    };
  }

  /** The 200 replies of `entry` with `route.extra` folded in, built on first use and kept on the route. */
  #customReply(route: FileRoute, entry: CachedFile, isHead: boolean): Reply {
    let memo = route.custom?.get(entry);
    if (memo === undefined) {
      // Every path the same rules match (an SPA's routes) shares one pair of replies per cache entry.
      let variants = this.#customByEntry.get(entry);
      if (variants === undefined) this.#customByEntry.set(entry, variants = new Map());
      memo = route.extraPerPath ? undefined : variants.get(route.extraKey);
      if (memo === undefined) {
        const pairs = this.#fullHeadPairs(route, entry.encoding, entry.bytes.length, entry.validatorHeaders);
        const h = buildHead(200, mergeHeaders(pairs, route.extra!));
        const n = entry.bytes.length;
        memo = route.extraPerPath
          ? {
            get: Object.freeze({
              status: 200,
              head: h,
              body: entry.bytes,
              stream: null,
              length: n,
              close: false,
            }),
            head: Object.freeze({ status: 200, head: h, body: null, stream: null, length: n, close: false }),
          }
          : { get: frozenReply(200, h, entry.bytes, n), head: frozenReply(200, h, null, n) };
        if (!route.extraPerPath) {
          if (variants.size >= MAX_HEAD_VARIANTS) variants.clear();
          variants.set(route.extraKey, memo);
        }
      }
      route.custom ??= new Map();
      // Entries replaced on disk leave stale keys behind: a handful per route at most.
      if (route.custom.size >= 4) route.custom.clear();
      route.custom.set(entry, memo);
    }
    return isHead ? memo.head : memo.get;
  }

  /** `_headers`' headers for the request path `path`, ready to fold into heads (null when none). */
  #extraFor(
    path: string,
    cacheControl: string,
  ): Pick<FileRoute, "extra" | "extraKey" | "extraPerPath"> {
    const none = { extra: null, extraKey: "", extraPerPath: false };
    const rules = this.#rules;
    if (rules === null || rules.headers.length === 0) return none;
    const c = this.#canonical(path);
    if (c === null) return none;
    const found = headersFor(rules.headers, c.path);
    let extra = found.headers;
    if (rules.hasAuth && this.#authFor(path) !== null) {
      const cc = extra.find((h) => h[0].toLowerCase() === "cache-control")?.[1] ?? cacheControl;
      extra = [...extra.filter((h) => h[0].toLowerCase() !== "cache-control"), [
        "Cache-Control",
        privateCacheControl(cc),
      ]];
    }
    if (extra.length === 0) return none;
    const extraKey = extra.map((h) => `${h[0]}: ${h[1]}`).join("\r\n");
    return { extra, extraKey, extraPerPath: found.perPath };
  }

  /** Paths a request is re-checking right now (bounded by the number of requests in flight). */
  #revalidating = new Set<string>();

  /**
   * Paths nothing is remembered for that a request is resolving right now, and when it is done (bounded by
   * the number of requests in flight).
   */
  readonly #resolving = new Map<string, Promise<void>>();

  /**
   * Serves a path nothing is remembered for (first asked, or forgotten). Requests for it that arrive while
   * one resolves it wait for that one and are then answered from what it remembered: a cold cache under load
   * (a restart with thousands of clients asking for the same page) costs one lookup, open and read per path,
   * not one per request and a descriptor each. What it did not remember (a file too large to cache, an
   * error) each resolves on its own, as before.
   */
  #resolveOnce(head: RequestHead, isHead: boolean): Promise<Reply> {
    const path = head.path;
    const pending = this.#resolving.get(path);
    if (pending !== undefined) {
      return pending.then(() => this.#routes.has(path) ? this.#handle(head) : this.#slow(head, isHead));
    }
    const reply = this.#slow(head, isHead);
    const forget = () => {
      this.#resolving.delete(path);
    };
    this.#resolving.set(path, reply.then(forget, forget));
    return reply;
  }

  /** Drops caches and pooled buffers and stops the compressor thread. There are no timers or watchers. */
  close(): void {
    this.#cache.clear();
    this.#routes.clear();
    this.#errorPages.clear();
    this.#encodingPrefs.clear();
    this.#pool.clear();
    this.#buffers.small.clear();
    this.#compressor.close();
  }

  // --- resolution (slow path) ------------------------------------------------------------------

  async #slow(head: RequestHead, isHead: boolean): Promise<Reply> {
    const rules = this.#rules;
    try {
      let reply: Reply;
      try {
        reply = await this.#resolveAndServe(head, isHead);
      } catch (e) {
        if (!(e instanceof FileReplaced)) throw e;
        // Renamed over between lookup and open: how deploy tools publish a file atomically. The new
        // file is as servable as the old one, so look it up again, once (confinement checked anew).
        reply = await this.#resolveAndServe(head, isHead);
      }
      // A reload replaced the rules while this request resolved: what it remembered may hold the old ones.
      if (this.#rules !== rules) this.#routes.delete(head.path);
      return reply;
    } catch (e) {
      if (e instanceof FileReplaced) return this.#error(404, isHead);
      if (isNotFound(e)) {
        this.#remember(head.path, { kind: "status", status: 404, checkedAtMs: this.#clock.nowMs() });
        return this.#error(404, isHead);
      }
      if (e instanceof Deno.errors.PermissionDenied) return this.#error(403, isHead);
      this.#logError(
        `static: serving ${JSON.stringify(head.path)}: ${(e as Error).name}: ${(e as Error).message}`,
      );
      return this.#error(500, isHead);
    }
  }

  /**
   * `_redirects` first (the first matching rule; unless forced with `!`, a file at the requested path
   * shadows it, as on Netlify), then the file itself.
   */
  async #resolveAndServe(head: RequestHead, isHead: boolean): Promise<Reply> {
    const rules = this.#rules;
    const c = rules !== null && rules.redirects.length > 0 ? this.#canonical(head.path) : null;
    const m = c === null ? null : redirectFor(rules!.redirects, c.path);
    if (m === null) return (await this.#serveTarget(head, head.path, isHead, false))!;
    if (!m.rule.force) {
      const shadowing = await this.#serveTarget(head, head.path, isHead, true);
      if (shadowing !== null) return shadowing;
    }
    const to = withQuery(m.to, c!.query);
    if (m.rule.status === 200) return (await this.#serveTarget(head, to, isHead, false))!;
    if (m.rule.status === 404) return await this.#notFoundPage(head, to, isHead);
    const h = buildHead(m.rule.status, [["Location", to], ["Content-Length", "0"]]);
    const get = frozenReply(m.rule.status, h, null, 0);
    this.#remember(head.path, { kind: "reply", get, head: get, checkedAtMs: this.#clock.nowMs() });
    return get;
  }

  /**
   * A `404` rule: TO's content (a regular file of at most `MAX_ERROR_PAGE_BYTES`, confined like any
   * request) with status 404, as the site's own page for this path; the built-in 404 when TO is missing.
   * Remembered under the request path like other answers. No validators: a 404 is never revalidated.
   */
  async #notFoundPage(head: RequestHead, to: string, isHead: boolean): Promise<Reply> {
    const r = resolvePath(to, this.#opts);
    const now = this.#clock.nowMs();
    const found = r.ok && !r.trailingSlash ? await this.#fs.findFile(this.#fs.pathOf(r.relative)) : null;
    const isRulesFile = found !== null &&
      (found.path === this.#fs.rootPrefix + HEADERS_FILE ||
        found.path === this.#fs.rootPrefix + REDIRECTS_FILE);
    let bytes: Uint8Array | null = null;
    if (found !== null && !isRulesFile && found.info.size <= MAX_ERROR_PAGE_BYTES) {
      bytes = (await this.#fs.readVerified(found))?.bytes ?? null;
    }
    if (bytes === null || !r.ok) {
      this.#remember(head.path, { kind: "status", status: 404, checkedAtMs: now });
      return await this.#error(404, isHead);
    }
    const h = buildHead(404, [
      ["Content-Type", contentTypeFor(r.relative)],
      ["Content-Length", String(bytes.length)],
      ["Cache-Control", "no-cache"],
    ]);
    const get = frozenReply(404, h, bytes, bytes.length);
    const headOnly = frozenReply(404, h, null, bytes.length);
    this.#remember(head.path, { kind: "reply", get, head: headOnly, checkedAtMs: now });
    return isHead ? headOnly : get;
  }

  /**
   * Serves what `target` (the request path, or a rewrite's destination) names, remembered under the
   * request path. With `shadowOnly`, nothing found is null (and not remembered): a rule applies instead.
   */
  async #serveTarget(
    head: RequestHead,
    target: string,
    isHead: boolean,
    shadowOnly: boolean,
  ): Promise<Reply | null> {
    const r = resolvePath(target, this.#opts);
    if (!r.ok) return shadowOnly && r.refuse === 404 ? null : this.#error(r.refuse, isHead);
    const requested = this.#fs.pathOf(r.relative);
    // The rule files configure the site; they are never part of it.
    const isRulesFile = (path: string) =>
      path === this.#fs.rootPrefix + HEADERS_FILE || path === this.#fs.rootPrefix + REDIRECTS_FILE;
    let found = isRulesFile(requested) ? null : await this.#fs.find(requested);
    if (found !== null && isRulesFile(found.path)) found = null;
    const now = this.#clock.nowMs();
    const notFound = (): Reply | Promise<Reply> | null => {
      if (shadowOnly) return null;
      this.#remember(head.path, { kind: "status", status: 404, checkedAtMs: now });
      return this.#error(404, isHead);
    };
    if (found === null) return notFound();
    let file = found;
    let fileRequested = requested;
    let rel = r.relative;
    if (found.info.isDirectory) {
      if (!r.trailingSlash) {
        // A path, never `//host`: encodePath always starts with exactly one slash.
        const location = encodePath(r.segments, true) + r.query;
        const h = buildHead(301, [["Location", location], ["Content-Length", "0"]]);
        const get = frozenReply(301, h, null, 0);
        this.#remember(head.path, { kind: "reply", get, head: get, checkedAtMs: now });
        return get;
      }
      fileRequested = requested + "/" + this.#opts.indexFile;
      rel = rel === "" ? this.#opts.indexFile : rel + "/" + this.#opts.indexFile;
      const index = await this.#fs.find(fileRequested);
      if (index === null || !index.info.isFile || isRulesFile(index.path)) {
        if (this.#opts.directoryListing) {
          return await this.#listing(found.path, r.segments, r.query, head, isHead);
        }
        return notFound();
      }
      file = index;
    } else if (!found.info.isFile || r.trailingSlash) {
      // FIFOs, sockets and devices are never opened (a FIFO open would block); `/file/` is not a dir.
      return notFound();
    }
    const probe = this.#opts.precompressed && !/\.(?:gz|br)$/i.test(rel);
    const [br, gzip] = probe
      ? await Promise.all([
        this.#fs.findFile(fileRequested + ".br"),
        this.#fs.findFile(fileRequested + ".gz"),
      ])
      : [null, null];
    const contentType = contentTypeFor(rel);
    const cacheControl = isHtml(contentType) ? this.#opts.cacheControlHtml : this.#opts.cacheControl;
    const auto = this.#opts.compress && file.info.size >= this.#opts.compressMinBytes &&
      this.#compressible.worthCompressing(rel, contentType);
    const route: FileRoute = {
      kind: "file",
      rel,
      contentType,
      cacheControl,
      hasBr: br !== null || auto,
      hasGzip: gzip !== null || auto,
      autoBr: auto && br === null,
      autoGzip: auto && gzip === null,
      identity: null,
      br: null,
      gzip: null,
      ...this.#extraFor(head.path, cacheControl),
      custom: null,
      checkedAtMs: now,
    };
    this.#remember(head.path, route);
    const encoding = route.hasBr || route.hasGzip ? this.#negotiate(head, route) : null;
    if (encoding !== null && isAuto(route, encoding)) {
      return await this.#serveCompressed(route, encoding, file, head, isHead);
    }
    const variant = encoding === "br" ? br! : encoding === "gzip" ? gzip! : file;
    return await this.#serveFile(route, encoding, variant, head, isHead);
  }

  #remember(path: string, route: Route): void {
    const old = this.#routes.get(path);
    if (old !== undefined && old.kind === "file" && route.kind !== "file") {
      // The file is gone (or became a directory): drop its bytes now rather than waiting for the LRU.
      for (const e of [old.identity, old.br, old.gzip]) if (e !== null && e.live) this.#cache.delete(e.key);
    }
    this.#routes.delete(path);
    if (this.#routes.size >= MAX_ROUTES) this.#routes.delete(this.#routes.keys().next().value!);
    this.#routes.set(path, route);
  }

  #negotiate(head: RequestHead, route: FileRoute): Encoding | null {
    const value = headerValue(head, "accept-encoding");
    if (value === undefined) return null;
    let prefs = this.#encodingPrefs.get(value);
    if (prefs === undefined) {
      if (this.#encodingPrefs.size >= MAX_ENCODING_PREFS) this.#encodingPrefs.clear();
      prefs = parseAcceptEncoding(value);
      this.#encodingPrefs.set(value, prefs);
    }
    const encoding = chooseEncoding(prefs, route.hasBr, route.hasGzip);
    // Ranges of a representation compressed on the fly are answered from the identity file: its bytes
    // are stable offsets a client can resume from, whatever compressor produced the other one.
    if (encoding !== null && isAuto(route, encoding) && (scanFlags(head) & H_RANGE) !== 0) return null;
    return encoding;
  }

  // --- files -------------------------------------------------------------------------------------

  /** Serves `variant` (the file or its chosen sidecar), from the cache when its identity still matches. */
  async #serveFile(
    route: FileRoute,
    encoding: Encoding | null,
    variant: Found,
    head: RequestHead,
    isHead: boolean,
  ): Promise<Reply> {
    const key = route.rel + "\0" + (encoding ?? "identity");
    const now = this.#clock.nowMs();
    const id = identityOf(variant.info);
    let entry = this.#cache.peek(key);
    if (entry !== undefined && sameIdentity(entry.identity, id)) {
      entry.checkedAtMs = now;
    } else if (this.#cache.accepts(id.size)) {
      if (entry !== undefined) this.#cache.delete(key); // changed on disk: reload
      entry = await this.#load(key, route, encoding, variant);
    } else {
      if (entry !== undefined) this.#cache.delete(key);
      return await this.#serveStream(route, encoding, variant, head, isHead);
    }
    this.#cache.touch(entry);
    if (encoding === null) route.identity = entry;
    else if (encoding === "br") route.br = entry;
    else route.gzip = entry;
    if (scanFlags(head) === 0) {
      if (route.extra === null) return isHead ? entry.headReply : entry.getReply;
      return this.#customReply(route, entry, isHead);
    }
    return await this.#fromCache(entry, head, isHead, route);
  }

  /** Reads a small file into a new cache entry; throws `FileReplaced` when the check-then-open test fails. */
  async #load(
    key: string,
    route: FileRoute,
    encoding: Encoding | null,
    variant: Found,
  ): Promise<CachedFile> {
    // A file that shrank while read is cached as read; its size no longer matches, so the next
    // revalidation reloads it.
    const read = await this.#fs.readVerified(variant);
    if (read === null) throw new FileReplaced();
    const { bytes, info } = read;
    const identity = { ...identityOf(info), size: bytes.length };
    const entry = this.#makeEntry(key, route, encoding, bytes, identity);
    this.#cache.set(entry);
    return entry;
  }

  #validatorHeaders(route: FileRoute, v: Validators): Array<readonly [string, string]> {
    const h: Array<readonly [string, string]> = [
      ["ETag", v.etag],
      ["Last-Modified", formatHttpDate(v.lastModifiedMs)],
      ["Cache-Control", route.cacheControl],
    ];
    if (route.hasBr || route.hasGzip) h.push(["Vary", "Accept-Encoding"]);
    return h;
  }

  /**
   * The head of a 200 with the whole representation (cached or streamed alike). A representation
   * compressed on the fly does not advertise ranges: they are answered from the identity file.
   */
  #fullHead(
    route: FileRoute,
    encoding: Encoding | null,
    size: number,
    validatorHeaders: ReadonlyArray<readonly [string, string]>,
    extra: ReadonlyArray<readonly [string, string]> | null = null,
  ): Uint8Array {
    const pairs = this.#fullHeadPairs(route, encoding, size, validatorHeaders);
    return buildHead(200, extra === null ? pairs : mergeHeaders(pairs, extra));
  }

  #fullHeadPairs(
    route: FileRoute,
    encoding: Encoding | null,
    size: number,
    validatorHeaders: ReadonlyArray<readonly [string, string]>,
  ): Array<readonly [string, string]> {
    // An on-the-fly compressed copy is not a stable byte sequence to take ranges of: ranges are answered
    // from the identity file.
    const ranges: Array<readonly [string, string]> = encoding !== null && isAuto(route, encoding)
      ? []
      : [["Accept-Ranges", "bytes"]];
    return [
      ...this.#entityHeaders(route, encoding),
      ["Content-Length", String(size)],
      ...ranges,
      ...validatorHeaders,
    ];
  }

  #entityHeaders(route: FileRoute, encoding: Encoding | null): Array<readonly [string, string]> {
    const h: Array<readonly [string, string]> = [["Content-Type", route.contentType]];
    if (encoding !== null) h.push(["Content-Encoding", encoding]);
    return h;
  }

  #makeEntry(
    key: string,
    route: FileRoute,
    encoding: Encoding | null,
    bytes: Uint8Array,
    identity: FileIdentity,
  ): CachedFile {
    const etag = makeEtag(identity.size, identity.mtimeMs, encoding);
    const lastModifiedMs = truncateToSecond(identity.mtimeMs);
    const validatorHeaders = this.#validatorHeaders(route, { etag, lastModifiedMs });
    const head200 = this.#fullHead(route, encoding, bytes.length, validatorHeaders);
    return {
      key,
      bytes,
      identity,
      etag,
      lastModifiedMs,
      contentType: route.contentType,
      encoding,
      validatorHeaders,
      getReply: frozenReply(200, head200, bytes, bytes.length),
      headReply: frozenReply(200, head200, null, bytes.length),
      notModified: null,
      checkedAtMs: this.#clock.nowMs(),
      prev: null,
      next: null,
      live: false,
    };
  }

  /** The conditional and range headers, evaluated in RFC 9110 §13.2.2 order. */
  #decide(head: RequestHead, v: Validators, size: number, isHead: boolean): Decision {
    const c: Conditionals = {
      ifMatch: headerValue(head, "if-match"),
      ifNoneMatch: headerValue(head, "if-none-match"),
      ifModifiedSince: headerValue(head, "if-modified-since"),
      ifUnmodifiedSince: headerValue(head, "if-unmodified-since"),
    };
    const pre = evaluatePreconditions(c, v);
    if (pre === 304) return { kind: "notModified" };
    if (pre === 412) return { kind: "status", status: 412 };
    if (isHead) return FULL; // ranges apply to GET only (RFC 9110 §14.2)
    const range = headerValue(head, "range");
    if (range === undefined) return FULL;
    const ifRange = headerValue(head, "if-range");
    if (ifRange !== undefined && !ifRangeAllows(ifRange, v)) return FULL;
    const parsed = parseRange(range, size, this.#opts.maxRanges);
    if (parsed.kind === "none") return FULL;
    if (parsed.kind === "unsatisfiable") return { kind: "unsatisfiable" };
    return { kind: "ranges", ranges: parsed.ranges };
  }

  #notModified(
    validatorHeaders: ReadonlyArray<readonly [string, string]>,
    extra: ReadonlyArray<readonly [string, string]> | null = null,
  ): Reply {
    const pairs = extra === null ? validatorHeaders : mergeHeaders(validatorHeaders, extra);
    return frozenReply(304, buildHead(304, pairs), null, 0);
  }

  /**
   * 412, or 416 with `Content-Range: bytes *\/size`. For a file with sidecars the answer depends on
   * Accept-Encoding (the size is the selected representation's), so it carries the same Vary as a 200.
   */
  #refusal(
    status: 412 | 416,
    size: number,
    isHead: boolean,
    validatorHeaders: ReadonlyArray<readonly [string, string]>,
  ): Reply | Promise<Reply> {
    const extra: Array<readonly [string, string]> = status === 416
      ? [["Content-Range", `bytes */${size}`]]
      : [];
    for (const h of validatorHeaders) if (h[0] === "Vary") extra.push(h);
    return this.#error(status, isHead, false, extra.length === 0 ? null : extra);
  }

  /** Answers from a cached entry when conditionals or ranges are present (still synchronous). */
  #fromCache(
    entry: CachedFile,
    head: RequestHead,
    isHead: boolean,
    route: FileRoute,
  ): Reply | Promise<Reply> {
    const size = entry.bytes.length;
    const d = this.#decide(head, entry, size, isHead);
    const extra = route.extra;
    switch (d.kind) {
      case "full":
        if (extra !== null) return this.#customReply(route, entry, isHead);
        return isHead ? entry.headReply : entry.getReply;
      case "notModified":
        if (extra !== null) return this.#notModified(entry.validatorHeaders, extra);
        return entry.notModified ??= this.#notModified(entry.validatorHeaders);
      case "status":
        return this.#refusal(d.status, size, isHead, entry.validatorHeaders);
      case "unsatisfiable":
        return this.#refusal(416, size, isHead, entry.validatorHeaders);
      case "ranges": {
        if (d.ranges.length === 1) {
          const r = d.ranges[0];
          const body = entry.bytes.subarray(r.start, r.end + 1);
          const range: Array<readonly [string, string]> = [["Content-Range", contentRange(r, size)]];
          const h = this.#partialHead(
            entry.encoding,
            entry.validatorHeaders,
            range,
            entry.contentType,
            body.length,
            extra,
          );
          return { status: 206, head: h, body, stream: null, length: body.length, close: false };
        }
        const plan = planMultipart(d.ranges, size, entry.contentType, newBoundary());
        const body = new Uint8Array(plan.length);
        let at = 0;
        for (const p of plan.parts) {
          body.set(p.header, at);
          at += p.header.length;
          body.set(entry.bytes.subarray(p.start, p.end + 1), at);
          at += p.end - p.start + 1;
        }
        body.set(plan.trailer, at);
        const h = this.#partialHead(
          entry.encoding,
          entry.validatorHeaders,
          [],
          plan.contentType,
          plan.length,
          extra,
        );
        return { status: 206, head: h, body, stream: null, length: plan.length, close: false };
      }
    }
  }

  #partialHead(
    encoding: Encoding | null,
    validatorHeaders: ReadonlyArray<readonly [string, string]>,
    extra: ReadonlyArray<readonly [string, string]>,
    contentType: string,
    length: number,
    custom: ReadonlyArray<readonly [string, string]> | null,
  ): Uint8Array {
    const headers: Array<readonly [string, string]> = [["Content-Type", contentType]];
    if (encoding !== null) headers.push(["Content-Encoding", encoding]);
    headers.push(["Content-Length", String(length)], ...extra, ...validatorHeaders);
    if (custom === null) return buildHead(206, headers);
    // A custom Content-Type describes the whole file, not a multipart/byteranges body: keep ours there.
    const fold = contentType.startsWith("multipart/")
      ? custom.filter((h) => h[0].toLowerCase() !== "content-type")
      : custom;
    return buildHead(206, mergeHeaders(headers, fold));
  }

  /** Large files: decide from the stat for HEAD (no open), else open, verify, and stream. */
  async #serveStream(
    route: FileRoute,
    encoding: Encoding | null,
    variant: Found,
    head: RequestHead,
    isHead: boolean,
  ): Promise<Reply> {
    if (isHead) return await this.#streamReply(route, encoding, variant.info, head, true, null);
    const opened = await this.#fs.openVerified(variant);
    if (opened === null) throw new FileReplaced();
    try {
      return await this.#streamReply(route, encoding, opened.info, head, false, opened.file, variant.path);
    } catch (e) {
      opened.file.close();
      throw e;
    }
  }

  /** Builds the reply for a streamed file; owns `file` (closed here unless handed to a FileStream). */
  #streamReply(
    route: FileRoute,
    encoding: Encoding | null,
    info: Deno.FileInfo,
    head: RequestHead,
    isHead: boolean,
    file: Deno.FsFile | null,
    path = "",
  ): Reply | Promise<Reply> {
    const id = identityOf(info);
    const v: Validators = {
      etag: makeEtag(id.size, id.mtimeMs, encoding),
      lastModifiedMs: truncateToSecond(id.mtimeMs),
    };
    const validatorHeaders = this.#validatorHeaders(route, v);
    const d = this.#decide(head, v, id.size, isHead);
    const stream = (segments: StreamSegment[], trailer: Uint8Array | null) =>
      file === null ? null : new FileStream(file, path, segments, trailer, this.#buffers);
    if (d.kind === "full") {
      const h = this.#fullHead(route, encoding, id.size, validatorHeaders, route.extra);
      return {
        status: 200,
        head: h,
        body: null,
        stream: stream([{ header: null, start: 0, end: id.size - 1 }], null),
        length: id.size,
        close: false,
      };
    }
    if (d.kind === "ranges") {
      if (d.ranges.length === 1) {
        const r = d.ranges[0];
        const length = r.end - r.start + 1;
        const h = this.#partialHead(
          encoding,
          validatorHeaders,
          [["Content-Range", contentRange(r, id.size)]],
          route.contentType,
          length,
          route.extra,
        );
        return {
          status: 206,
          head: h,
          body: null,
          stream: stream([{ header: null, start: r.start, end: r.end }], null),
          length,
          close: false,
        };
      }
      const plan = planMultipart(d.ranges, id.size, route.contentType, newBoundary());
      const h = this.#partialHead(encoding, validatorHeaders, [], plan.contentType, plan.length, route.extra);
      const segments = plan.parts.map((p) => ({ header: p.header, start: p.start, end: p.end }));
      return {
        status: 206,
        head: h,
        body: null,
        stream: stream(segments, plan.trailer),
        length: plan.length,
        close: false,
      };
    }
    file?.close();
    if (d.kind === "notModified") return this.#notModified(validatorHeaders, route.extra);
    if (d.kind === "unsatisfiable") return this.#refusal(416, id.size, isHead, validatorHeaders);
    return this.#refusal(d.status, id.size, isHead, validatorHeaders);
  }

  // --- compression on the fly ---------------------------------------------------------------------

  /**
   * Serves `encoding` of `file` compressed on the fly: from the cache when this version was compressed
   * before; compressed whole once (and cached) up to `compressCacheMaxFileBytes`; beyond that compressed
   * while it streams. Busy (`compressMaxJobs`) or HTTP/1.0 for a stream: the identity file instead.
   */
  async #serveCompressed(
    route: FileRoute,
    encoding: Encoding,
    file: Found,
    head: RequestHead,
    isHead: boolean,
  ): Promise<Reply> {
    const key = route.rel + "\0" + encoding;
    const id = identityOf(file.info);
    let entry: CachedFile | null | undefined = this.#cache.peek(key);
    if (entry !== undefined && sameIdentity(entry.identity, id)) {
      entry.checkedAtMs = this.#clock.nowMs();
    } else {
      if (entry !== undefined) this.#cache.delete(key);
      if (id.size > this.#opts.compressCacheMaxFileBytes) {
        return await this.#compressedStream(route, encoding, file, head, isHead);
      }
      entry = await this.#compressOnce(key, route, encoding, file, id);
      if (entry === null) return await this.#serveFile(route, null, file, head, isHead);
    }
    if (entry.live) this.#cache.touch(entry);
    if (encoding === "br") route.br = entry;
    else route.gzip = entry;
    if (scanFlags(head) === 0 && route.extra === null) return isHead ? entry.headReply : entry.getReply;
    return await this.#fromCache(entry, head, isHead, route);
  }

  /** The compressed entry for this version of the file, shared by concurrent requests; null when busy. */
  #compressOnce(
    key: string,
    route: FileRoute,
    encoding: Encoding,
    file: Found,
    id: FileIdentity,
  ): Promise<CachedFile | null> {
    const flightKey = `${key}\0${id.size}:${id.mtimeMs}:${id.ino}:${id.dev}`;
    const running = this.#compressing.get(flightKey);
    if (running !== undefined) return running;
    if (this.#compressJobs >= this.#opts.compressMaxJobs) return Promise.resolve(null);
    this.#compressJobs++;
    const job = this.#compressFile(key, route, encoding, file, id).finally(() => {
      this.#compressJobs--;
      this.#compressing.delete(flightKey);
    });
    this.#compressing.set(flightKey, job);
    return job;
  }

  async #compressFile(
    key: string,
    route: FileRoute,
    encoding: Encoding,
    file: Found,
    id: FileIdentity,
  ): Promise<CachedFile | null> {
    let source: Uint8Array;
    let identity = id;
    const cached = route.identity;
    if (cached !== null && cached.live && sameIdentity(cached.identity, id)) {
      source = cached.bytes; // the identity bytes are in memory already: no second read
    } else {
      const read = await this.#fs.readVerified(file);
      if (read === null) return null;
      source = read.bytes;
      identity = { ...identityOf(read.info), size: source.length };
    }
    const bytes = await this.#compressor.whole(source, encoding, this.#compressLevel(encoding));
    const entry = this.#makeEntry(key, route, encoding, bytes, identity);
    // Within the cache's byte budget; an entry the budget cannot hold still answers this request.
    this.#cache.set(entry, Math.max(this.#opts.compressCacheMaxFileBytes, this.#opts.fileCacheMaxFileBytes));
    return entry;
  }

  /** A large file compressed while it streams, with chunked framing (its length is not known before). */
  async #compressedStream(
    route: FileRoute,
    encoding: Encoding,
    file: Found,
    head: RequestHead,
    isHead: boolean,
  ): Promise<Reply> {
    // HTTP/1.0 has no chunked coding; a full house of compressors sends the identity file instead.
    if (head.version === 10 || this.#compressJobs >= this.#opts.compressMaxJobs) {
      return await this.#serveFile(route, null, file, head, isHead);
    }
    const id = identityOf(file.info);
    const v: Validators = {
      etag: makeEtag(id.size, id.mtimeMs, encoding),
      lastModifiedMs: truncateToSecond(id.mtimeMs),
    };
    const validatorHeaders = this.#validatorHeaders(route, v);
    const d = this.#decide(head, v, id.size, isHead);
    // The site's `_headers` apply as to every other answer for this file (a Cache-Control of `private`
    // under Basic-Auth above all).
    if (d.kind === "notModified") return this.#notModified(validatorHeaders, route.extra);
    if (d.kind === "status") return await this.#refusal(d.status, id.size, isHead, validatorHeaders);
    // (A Range request was given the identity file by #negotiate, so the answer here is the whole body.)
    const pairs: Array<readonly [string, string]> = [
      ...this.#entityHeaders(route, encoding),
      ["Transfer-Encoding", "chunked"],
      ...validatorHeaders,
    ];
    const h = buildHead(200, route.extra === null ? pairs : mergeHeaders(pairs, route.extra));
    if (isHead) return { status: 200, head: h, body: null, stream: null, length: 0, close: false };
    const opened = await this.#fs.openVerified(file);
    if (opened === null) return await this.#error(404, false);
    this.#compressJobs++;
    const stream = new CompressedFileStream(
      opened.file,
      this.#compressor,
      encoding,
      opened.info.size,
      this.#compressLevel(encoding),
      () => this.#compressJobs--,
    );
    // `length` is 0: a chunked body's size is known only once it has been sent.
    return { status: 200, head: h, body: null, stream, length: 0, close: false };
  }

  #compressLevel(encoding: Encoding): number {
    return encoding === "br" ? this.#opts.compressBrotliLevel : this.#opts.compressGzipLevel;
  }

  /** On-the-fly compressions running now (tests and stats). */
  get compressJobs(): number {
    return this.#compressJobs;
  }

  // --- directories -------------------------------------------------------------------------------

  async #listing(
    dir: string,
    segments: readonly string[],
    query: string,
    head: RequestHead,
    isHead: boolean,
  ): Promise<Reply> {
    const names: Deno.DirEntry[] = [];
    let truncated = false;
    for await (const e of Deno.readDir(dir)) {
      if (this.#opts.dotfiles === "hide" && e.name.startsWith(".")) continue;
      if (names.length >= MAX_LISTING_ENTRIES) {
        truncated = true;
        break;
      }
      names.push(e);
    }
    const entries: ListingEntry[] = [];
    for (let i = 0; i < names.length; i += LISTING_STAT_BATCH) {
      const batch = names.slice(i, i + LISTING_STAT_BATCH);
      entries.push(...await Promise.all(batch.map((e) => this.#listingEntry(dir, e))));
    }
    const urlPath = encodePath(segments, true);
    const view = parseListingQuery(query);
    const json = prefersJson(headerValue(head, "accept"));
    const text = json
      ? renderListingJson(urlPath, entries, truncated, view)
      : renderListingHtml(urlPath, entries, truncated, view);
    const body = encoder.encode(text);
    const h = buildHead(200, [
      ["Content-Type", json ? "application/json; charset=utf-8" : "text/html; charset=utf-8"],
      ["Content-Length", String(body.length)],
      ["Cache-Control", "no-cache"],
      ["Vary", "Accept"],
    ]);
    return {
      status: 200,
      head: h,
      body: isHead ? null : body,
      stream: null,
      length: body.length,
      close: false,
    };
  }

  /**
   * Size and date of one listed entry, by `lstat`: a symbolic link is never followed here (its target may
   * lie outside the root, whose metadata must not show), so it is listed without a size. An entry that
   * vanished or cannot be read is listed without either.
   */
  async #listingEntry(dir: string, e: Deno.DirEntry): Promise<ListingEntry> {
    try {
      const info = await Deno.lstat(`${dir}/${e.name}`);
      return {
        name: e.name,
        isDirectory: e.isDirectory,
        size: info.isFile ? info.size : null,
        mtimeMs: info.mtime?.getTime() ?? null,
      };
    } catch {
      return { name: e.name, isDirectory: e.isDirectory, size: null, mtimeMs: null };
    }
  }

  // --- errors ------------------------------------------------------------------------------------

  /** An error reply for `status`; synchronous while its page is fresh. */
  #error(
    status: number,
    isHead: boolean,
    close = false,
    extra: ReadonlyArray<readonly [string, string]> | null = null,
  ): Reply | Promise<Reply> {
    return this.#errorPages.reply(status, isHead, close, extra);
  }
}

/** Whether `encoding` of this file is compressed on the fly rather than read from a sidecar. */
function isAuto(route: FileRoute, encoding: Encoding): boolean {
  return encoding === "br" ? route.autoBr : route.autoGzip;
}

/** A multipart boundary: random hex, so it cannot be predicted or found in a part header. */
function newBoundary(): string {
  const b = crypto.getRandomValues(new Uint8Array(12));
  let s = "vento-";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
