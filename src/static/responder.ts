/**
 * The static file responder: request head → `Reply`. Owns confinement to the document root (real
 * paths and inode checks on top of the pure resolver), the small-file cache and its hot path,
 * validators, ranges, precompressed sidecars, directory handling and error pages.
 *
 * Never reads outside the real document root; never opens anything but a regular file; never throws
 * to its caller (file-system errors become 403/404/500); never writes to a socket (streams are piped
 * by the connection). A fresh cache hit is answered synchronously with no syscall and no allocation.
 */

import type { Clock } from "../net/clock.ts";
import { headerValue, type RequestHead } from "../http/head.ts";
import { buildHead, type Reply } from "../http/response.ts";
import { chooseEncoding, type Encoding, type EncodingPrefs, parseAcceptEncoding } from "./accept_encoding.ts";
import { BufferPool } from "./buffer_pool.ts";
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
import { ErrorPages } from "./error_pages.ts";
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
import type { Config } from "../config.ts";

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
  #compressible: CompressibleTypes;
  /** Bumped when a reload changes a COMPRESS_* setting: a job started before it caches nothing. */
  #compressGeneration = 0;
  /** Whole-file compressions in flight, by key and file version: concurrent requests share one. */
  readonly #compressing = new Map<string, Promise<CachedFile | null>>();
  /** On-the-fly compressions running (jobs and streams), at most `compressMaxJobs`. */
  #compressJobs = 0;
  /** The compressor thread (started on the first compression). */
  readonly #compressor = new Compressor();

  private constructor(options: StaticOptions, clock: Clock, fs: ConfinedFs) {
    this.#opts = options;
    this.#clock = clock;
    this.#fs = fs;
    this.#errorPages = new ErrorPages(fs, clock, options.fileCacheRevalidateMs);
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

  /** Resolves the real document root; throws a clear Error if it is missing or not a directory. */
  static async create(options: StaticOptions, clock: Clock): Promise<StaticResponder> {
    return new StaticResponder(options, clock, await ConfinedFs.open(options.documentRoot));
  }

  /** The real document root in use. */
  get root(): string {
    return this.#fs.root;
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
    const method = head.method;
    const isHead = method === "HEAD";
    if (!isHead && method !== "GET") {
      if (method === "OPTIONS") return this.#options;
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
        if (flags === 0) return isHead ? entry.headReply : entry.getReply;
        return this.#fromCache(entry, head, isHead);
      }
    }
    if (route === undefined || revalidating) return this.#slow(head, isHead);
    this.#revalidating.add(path);
    return this.#slow(head, isHead).finally(() => this.#revalidating.delete(path));
  }

  /**
   * After a reload changed a COMPRESS_* setting (read live from the options): the new types apply, and no
   * copy compressed under the old settings is served again (compressed entries and routes are dropped;
   * files and sidecars are simply read again).
   */
  applyCompressOptions(): void {
    this.#compressible = new CompressibleTypes(this.#opts.compressTypes);
    this.#compressGeneration++;
    for (const key of this.#cache.keys()) {
      if (this.#cache.peek(key)?.encoding !== null) this.#cache.delete(key);
    }
    this.#routes.clear();
  }

  /** An error reply (the `<status>.html` page when present, else a built-in one), e.g. for other layers. */
  errorReply(status: number, close = false): Reply | Promise<Reply> {
    return this.#error(status, false, close);
  }

  /** Paths a request is re-checking right now (bounded by the number of requests in flight). */
  #revalidating = new Set<string>();

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
    try {
      return await this.#resolveAndServe(head, isHead);
    } catch (e) {
      if (isNotFound(e)) {
        this.#remember(head.path, { kind: "status", status: 404, checkedAtMs: this.#clock.nowMs() });
        return this.#error(404, isHead);
      }
      if (e instanceof Deno.errors.PermissionDenied) return this.#error(403, isHead);
      console.error(
        `static: serving ${JSON.stringify(head.path)}: ${(e as Error).name}: ${(e as Error).message}`,
      );
      return this.#error(500, isHead);
    }
  }

  async #resolveAndServe(head: RequestHead, isHead: boolean): Promise<Reply> {
    const r = resolvePath(head.path, this.#opts);
    if (!r.ok) return this.#error(r.refuse, isHead);
    const requested = this.#fs.pathOf(r.relative);
    const found = await this.#fs.find(requested);
    const now = this.#clock.nowMs();
    const notFound = (): Reply | Promise<Reply> => {
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
      if (index === null || !index.info.isFile) {
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
    // `.svgz` is gzip data under an SVG type: compressing it again would only cost time.
    const auto = this.#opts.compress && file.info.size >= this.#opts.compressMinBytes &&
      !/\.(?:gz|br|svgz)$/i.test(rel) && this.#compressible.matches(contentType);
    const route: FileRoute = {
      kind: "file",
      rel,
      contentType,
      cacheControl: isHtml(contentType) ? this.#opts.cacheControlHtml : this.#opts.cacheControl,
      hasBr: br !== null || auto,
      hasGzip: gzip !== null || auto,
      autoBr: auto && br === null,
      autoGzip: auto && gzip === null,
      identity: null,
      br: null,
      gzip: null,
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
      if (entry === undefined) return await this.#error(404, isHead);
    } else {
      if (entry !== undefined) this.#cache.delete(key);
      return await this.#serveStream(route, encoding, variant, head, isHead);
    }
    this.#cache.touch(entry);
    if (encoding === null) route.identity = entry;
    else if (encoding === "br") route.br = entry;
    else route.gzip = entry;
    if (scanFlags(head) === 0) return isHead ? entry.headReply : entry.getReply;
    return await this.#fromCache(entry, head, isHead);
  }

  /** Reads a small file into a new cache entry; undefined when the check-then-open test fails. */
  async #load(
    key: string,
    route: FileRoute,
    encoding: Encoding | null,
    variant: Found,
  ): Promise<CachedFile | undefined> {
    const opened = await this.#fs.openVerified(variant);
    if (opened === null) return undefined;
    const { file, info } = opened;
    let bytes: Uint8Array;
    try {
      // A file that shrank while read is cached as read; its size no longer matches, so the next
      // revalidation reloads it.
      bytes = await ConfinedFs.readAll(file, info.size);
    } finally {
      file.close();
    }
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
  ): Uint8Array {
    const ranges: Array<readonly [string, string]> = encoding !== null && isAuto(route, encoding)
      ? []
      : [["Accept-Ranges", "bytes"]];
    return buildHead(200, [
      ...this.#entityHeaders(route, encoding),
      ["Content-Length", String(size)],
      ...ranges,
      ...validatorHeaders,
    ]);
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

  #notModified(validatorHeaders: ReadonlyArray<readonly [string, string]>): Reply {
    return frozenReply(304, buildHead(304, validatorHeaders), null, 0);
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
  #fromCache(entry: CachedFile, head: RequestHead, isHead: boolean): Reply | Promise<Reply> {
    const size = entry.bytes.length;
    const d = this.#decide(head, entry, size, isHead);
    switch (d.kind) {
      case "full":
        return isHead ? entry.headReply : entry.getReply;
      case "notModified":
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
  ): Uint8Array {
    const headers: Array<readonly [string, string]> = [["Content-Type", contentType]];
    if (encoding !== null) headers.push(["Content-Encoding", encoding]);
    headers.push(["Content-Length", String(length)], ...extra, ...validatorHeaders);
    return buildHead(206, headers);
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
    if (opened === null) return await this.#error(404, false);
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
      const h = this.#fullHead(route, encoding, id.size, validatorHeaders);
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
      const h = this.#partialHead(encoding, validatorHeaders, [], plan.contentType, plan.length);
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
    if (d.kind === "notModified") return this.#notModified(validatorHeaders);
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
    if (scanFlags(head) === 0) return isHead ? entry.headReply : entry.getReply;
    return await this.#fromCache(entry, head, isHead);
  }

  /** The compressed entry for this version of the file, shared by concurrent requests; null when busy. */
  #compressOnce(
    key: string,
    route: FileRoute,
    encoding: Encoding,
    file: Found,
    id: FileIdentity,
  ): Promise<CachedFile | null> {
    const flightKey = `${key}\0${id.size}:${id.mtimeMs}:${id.ino}:${id.dev}:${this.#compressGeneration}`;
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
      const opened = await this.#fs.openVerified(file);
      if (opened === null) return null;
      try {
        source = await ConfinedFs.readAll(opened.file, opened.info.size);
      } finally {
        opened.file.close();
      }
      identity = { ...identityOf(opened.info), size: source.length };
    }
    const generation = this.#compressGeneration;
    const bytes = await this.#compressor.whole(source, encoding, this.#compressLevel(encoding));
    const entry = this.#makeEntry(key, route, encoding, bytes, identity);
    // Within the cache's byte budget; an entry the budget cannot hold still answers this request. One
    // made under settings a reload has since replaced answers this request only.
    if (generation === this.#compressGeneration) {
      this.#cache.set(
        entry,
        Math.max(this.#opts.compressCacheMaxFileBytes, this.#opts.fileCacheMaxFileBytes),
      );
    }
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
    if (d.kind === "notModified") return this.#notModified(validatorHeaders);
    if (d.kind === "status") return await this.#refusal(d.status, id.size, isHead, validatorHeaders);
    // (A Range request was given the identity file by #negotiate, so the answer here is the whole body.)
    const h = buildHead(200, [
      ...this.#entityHeaders(route, encoding),
      ["Transfer-Encoding", "chunked"],
      ...validatorHeaders,
    ]);
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
