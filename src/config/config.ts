/**
 * Vento's settings: one declarative table (`SETTINGS`) that names every key of `vento.conf`, its type,
 * default, bounds and meaning; a pure, strict parser over it; and `loadConfig`, the only part that
 * touches the file system.
 *
 * The parser never half-applies: it returns either a complete `Config` or the full list of problems,
 * each as `vento.conf:3: …`. Unknown keys are errors (a typo must not silently fall back to a default).
 */

import { parseCidr } from "../core/cidr.ts";
import { parseGuardStore, redactGuardStore } from "./guard_store_url.ts";
import { errorMessage } from "../core/errors.ts";

/** The complete, validated configuration. Field names carry their unit. */
export interface Config {
  // --- listening ---------------------------------------------------------------------------------
  /** TCP port (0 picks a free one; tests use that). */
  port: number;
  /**
   * Accept loops (worker threads) sharing the port through SO_REUSEPORT; `auto` = one per core. 1 keeps
   * the single-threaded server with no worker at all. Per-client limits and bans stay global.
   */
  workers: number | "auto";
  /** Address to bind. `::` (the default) is all interfaces, dual-stack. */
  host: string;
  /** Folder served, absolute after `loadConfig` (relative paths are resolved against the conf's folder). */
  documentRoot: string;
  /** Access log path, `-` for stdout, `off` for none. Relative to the conf's folder. */
  accessLog: string;
  /** `combined` (Apache/nginx Combined Log Format) or `json` (one JSON object per line). */
  accessLogFormat: "combined" | "json";
  /** Admin Unix socket path, or `off`. Relative to the conf's folder. */
  adminSocket: string;
  /**
   * An admin client with no request in progress and no subscription, silent this long, is closed (so
   * forgotten clients do not hold the admin slots).
   */
  adminIdleTimeoutMs: number;
  /** An admin reply or snapshot write pending this long (a client that stopped reading) closes it. */
  adminSendTimeoutMs: number;
  /** Serve plain HTTP on `port`; `false` (HTTPS only) requires `tlsCert` and `tlsKey`. */
  plainHttp: boolean;
  /** TLS certificate chain (PEM) path, or `off`; with `tlsKey` it turns on HTTPS on `tlsPort`. */
  tlsCert: string;
  /** TLS private key (PEM) path, or `off`. Relative paths resolve against the conf's folder. */
  tlsKey: string;
  /** HTTPS port (used only when `tlsCert` and `tlsKey` are set; 0 picks a free one). */
  tlsPort: number;

  // --- HTTP parsing limits ----------------------------------------------------------------------
  /** Request line bytes; above this the answer is 414 and the connection closes. */
  maxRequestLineBytes: number;
  /** Request line + header section bytes; above this 431 and close. */
  maxHeaderBytes: number;
  /** Header field count; above this 431 and close. */
  maxHeaderCount: number;
  /** Request body bytes accepted by `POST /api/echo`; above this 413 and close. */
  echoMaxBodyBytes: number;
  /**
   * A body the route does not read (a GET with a body, a POST to a file) is read and discarded up to this
   * many bytes on the wire (chunk framing included), under the body deadlines, so the connection stays
   * open; a larger one (or one waiting for `100 Continue`) is not read: the answer carries
   * `Connection: close`. 0 never discards.
   */
  unreadBodyMaxBytes: number;
  /** Requests served on one connection before it is closed (`Connection: close` on the last). */
  maxRequestsPerConn: number;

  // --- connection deadlines ---------------------------------------------------------------------
  /** From accept (or the first byte of a keep-alive request) to a complete head; never extended. 408. */
  headerTimeoutMs: number;
  /** How long a keep-alive connection may sit with no request before it is closed quietly. */
  idleTimeoutMs: number;
  /** The idle timeout used while the server is above `busyThresholdPercent` of `maxConns`. */
  idleTimeoutBusyMs: number;
  /** Longest gap between two body reads; then 408 and close. */
  bodyIdleTimeoutMs: number;
  /**
   * The body rate is judged per window of this length (the first ends this long after the body starts):
   * a window averaging below `bodyMinRateBytesPerSec` cuts the request (408).
   */
  bodyMinRateGraceMs: number;
  /** Minimum body rate, averaged over each `bodyMinRateGraceMs` window. */
  bodyMinRateBytesPerSec: number;
  /** Longest time one socket write may stay pending (a reader that stopped reading); then close. */
  sendTimeoutMs: number;
  /**
   * The send rate is judged per window of this length: a window in which the reader drained less than
   * `sendMinRateBytesPerSec` on average closes the connection (slow-read defence). Per window, not since the
   * start, so the megabytes a socket buffer swallows at first can't buy a reader that then stalls.
   */
  sendMinRateGraceMs: number;
  /** Minimum send rate, averaged over each `sendMinRateGraceMs` window. */
  sendMinRateBytesPerSec: number;
  /** On SIGINT/SIGTERM, how long in-flight responses may run before connections are force-closed. */
  shutdownTimeoutMs: number;

  // --- static files -----------------------------------------------------------------------------
  /** File served for a directory request. */
  indexFile: string;
  /** `hide` (404 for dotfiles and dot-directories except /.well-known/) or `allow`. */
  dotfiles: "hide" | "allow";
  /** Directory listing when no index file exists (`off` by default). */
  directoryListing: boolean;
  /** `Cache-Control` for HTML responses. */
  cacheControlHtml: string;
  /** `Cache-Control` for everything else. */
  cacheControl: string;
  /** Files up to this size are kept in the in-memory cache with their precomputed head. */
  fileCacheMaxFileBytes: number;
  /** Total bytes the file cache may hold; the least recently used entries are evicted beyond it. */
  fileCacheMaxBytes: number;
  /** A cached file is re-checked (one stat) at most this often, so edits show up. */
  fileCacheRevalidateMs: number;
  /** Buffer size used to stream large files (one pooled buffer per transfer in flight). */
  streamChunkBytes: number;
  /** Most ranges honoured in one request; more is answered 200 with the whole file. */
  maxRanges: number;
  /** Serve `file.br` / `file.gz` sidecars when the client accepts them. */
  precompressed: boolean;
  /**
   * Compress files of `compressTypes` on the fly (brotli or gzip, by the client's Accept-Encoding) when
   * no sidecar of that coding exists. Small and mid-size files are compressed once per version and cached.
   */
  compress: boolean;
  /** Files smaller than this are never compressed on the fly (the gain is below one packet). */
  compressMinBytes: number;
  /**
   * Content types compressed on the fly, lower case: `type/subtype`, `type/*`, or a structured-syntax
   * suffix such as `+json` (any `…/…+json`). Parameters (`; charset=…`) are ignored when matching.
   */
  compressTypes: string[];
  /** Brotli quality for on-the-fly compression, 0 (fastest) to 11 (smallest). */
  compressBrotliLevel: number;
  /** Gzip level for on-the-fly compression, 1 (fastest) to 9 (smallest). */
  compressGzipLevel: number;
  /**
   * Files up to this size are compressed whole, once per version, and the result is kept in the file
   * cache (within `fileCacheMaxBytes`); larger files are compressed while they stream, per request.
   */
  compressCacheMaxFileBytes: number;
  /**
   * On-the-fly compressions running at once (streams and once-per-version jobs together); a request
   * beyond it gets the identity file, so a flood of downloads cannot pin one compressor each.
   */
  compressMaxJobs: number;

  // --- routes and probes ------------------------------------------------------------------------
  /** `POST /api/echo` is answered; off makes `/api/echo` an ordinary (static) path. */
  echo: boolean;
  /** Path answering 200 while serving and 503 while draining, or `off`. */
  healthPath: string;
  /** Peers (CIDRs) `healthPath` answers; to anyone else it is an ordinary path. */
  healthAllowlist: string[];
  /** Path answering the Prometheus text of the admin `metrics` op, or `off`. */
  metricsPath: string;
  /** Peers (CIDRs) `metricsPath` answers; to anyone else it is an ordinary path. */
  metricsAllowlist: string[];

  // --- guard: identity --------------------------------------------------------------------------
  /** IPv6 clients are keyed by this prefix length (IPv4 by the whole address). */
  clientIpv6PrefixBits: number;
  /** CIDRs whose `X-Forwarded-For` is believed (walked right to left). Empty: never. */
  trustedProxies: string[];
  /** CIDRs exempt from limits and bans. */
  allowlist: string[];

  // --- guard: table, rates, bans ----------------------------------------------------------------
  /** Clients tracked at once; when every slot has live connections new clients are refused. */
  guardTableCapacity: number;
  /** Sustained requests per second per client. */
  requestRatePerSec: number;
  /** Requests a client may send at once above the sustained rate. */
  requestBurst: number;
  /** Sustained new connections per second per client. */
  connRatePerSec: number;
  /** New connections a client may open at once above the sustained rate. */
  connBurst: number;
  /** Rejections (429s / refused connections) within `violationWindowMs` that earn a ban. */
  banAfterViolations: number;
  /** Window over which violations are counted. */
  violationWindowMs: number;
  /** First ban length; each repeat doubles it. */
  banMs: number;
  /** Longest ban. */
  banMaxMs: number;
  /** Bans held at once (oldest-expiring evicted beyond it). */
  banListCapacity: number;
  /** `enforce`, or `dry-run` (count and log, never refuse). */
  limitMode: "enforce" | "dry-run";
  /**
   * Where request-rate state and bans live: `memory` (this process), or `redis://host:port[/db]`,
   * shared by every instance using it (falls back to per-instance limits while Redis is unreachable).
   * `redis://[[user]:password@]host:port[/db]` sends AUTH (percent-decoded); `rediss://` is TLS.
   */
  guardStore: string;
  /**
   * File holding the GUARD_STORE password (trailing newlines dropped), or `off`. It wins over a password
   * in the URL, so the secret can stay out of a world-readable vento.conf. Relative to the conf's folder.
   */
  guardStorePasswordFile: string;
  /** CA certificate(s) (PEM) trusted for a `rediss://` GUARD_STORE signed by a private CA, or `off`. */
  guardStoreCaFile: string;
  /**
   * Not a key: the password `loadConfig` read from `guardStorePasswordFile` (null: none). Only the store's
   * connector reads it; never printed.
   */
  guardStorePassword: string | null;
  /** Not a key: the PEM `loadConfig` read from `guardStoreCaFile` (null: none). */
  guardStoreCaPem: string | null;
  /** Connections one client may hold open; at the cap new ones get 503 and close. */
  maxConnsPerClient: number;
  /** Connections the server holds open; at the cap new ones get 503 and close. */
  maxConns: number;
  /** Above this percentage of `maxConns` the idle timeout drops to `idleTimeoutBusyMs`. */
  busyThresholdPercent: number;

  // --- app endpoints (a `deno serve`-style module) -------------------------------------------------
  /**
   * A module whose default export is `{ fetch(request, info) }`, or `off`. Absolute after `loadConfig`
   * (relative paths resolve against the conf's folder). Loaded once per worker thread; a reload
   * re-imports it.
   */
  app: string;
  /** Path prefixes routed to the app (each starts with `/`); every other path stays static. */
  appPaths: string[];
  /** Requests that match no file (a static 404) go to the app instead. */
  appFallback: boolean;
  /** Request body bytes the app may receive; a declared larger Content-Length is 413 before reading. */
  appMaxBodyBytes: number;
  /** From calling the app to its `Response`; then 503 (and `request.signal` aborts). */
  appTimeoutMs: number;
}

type Kind =
  | { type: "int"; min: number; max: number }
  | { type: "string"; nonEmpty: boolean }
  | { type: "bool" }
  | { type: "enum"; values: readonly string[] }
  | { type: "cidrs" }
  | { type: "intOrAuto"; min: number; max: number }
  | { type: "store" }
  | { type: "routePath" }
  | { type: "mimeTypes" }
  | { type: "prefixes" };

/**
 * How a reload applies a setting (SIGHUP, `vento-admin reload`); the answer lists each changed key as
 * applied or waiting for a restart, from this alone.
 * - `live`: assigned on the live config that every component reads (or takes through `applyOptions`).
 * - `files`: read by the static responder; a change builds a new one (root opened, cache empty) before
 *   anything applies, and requests switch to it.
 * - `log`: the access log; a new path is opened before anything applies.
 * - `tls`: the certificate and key; a new pair is loaded and swapped in for new handshakes (switching
 *   HTTPS on or off is a listening change: restart).
 * - `listen`: bound by the supervisor for every worker (PORT, TLS_PORT, ADMIN_SOCKET): restart, judged by
 *   the supervisor, since workers run on what it bound.
 * - `app`: the APP module; every reload imports it again (a changed module serves new requests, in-flight
 *   ones finish on the old one), and a module that no longer loads refuses the reload.
 * - `restart`: takes effect at the next start only.
 */
export type Reload = "live" | "files" | "log" | "tls" | "listen" | "app" | "restart";

interface Setting {
  key: string;
  field: keyof Config;
  reload: Reload;
  kind: Kind;
  doc: string;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const DAY_MS = 86_400_000;

/** Defaults, applied when `vento.conf` is absent or a key is not set. */
export const DEFAULT_CONFIG: Readonly<Config> = {
  port: 8080,
  workers: 1,
  host: "::",
  documentRoot: "www",
  accessLog: "vento.log",
  accessLogFormat: "combined",
  adminSocket: "vento.sock",
  adminIdleTimeoutMs: 60_000,
  adminSendTimeoutMs: 10_000,
  plainHttp: true,
  tlsCert: "off",
  tlsKey: "off",
  tlsPort: 8443,
  maxRequestLineBytes: 8 * KiB,
  maxHeaderBytes: 16 * KiB,
  maxHeaderCount: 100,
  echoMaxBodyBytes: 64 * KiB,
  unreadBodyMaxBytes: 64 * KiB,
  maxRequestsPerConn: 10_000,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 15_000,
  idleTimeoutBusyMs: 1_000,
  bodyIdleTimeoutMs: 10_000,
  bodyMinRateGraceMs: 10_000,
  bodyMinRateBytesPerSec: 500,
  sendTimeoutMs: 30_000,
  sendMinRateGraceMs: 10_000,
  sendMinRateBytesPerSec: 1_000,
  shutdownTimeoutMs: 10_000,
  indexFile: "index.html",
  dotfiles: "hide",
  directoryListing: false,
  cacheControlHtml: "no-cache",
  cacheControl: "public, max-age=3600",
  fileCacheMaxFileBytes: 64 * KiB,
  fileCacheMaxBytes: 64 * MiB,
  fileCacheRevalidateMs: 1_000,
  streamChunkBytes: 256 * KiB,
  maxRanges: 16,
  precompressed: true,
  echo: true,
  healthPath: "off",
  healthAllowlist: ["127.0.0.0/8", "::1"],
  metricsPath: "off",
  metricsAllowlist: ["127.0.0.0/8", "::1"],
  compress: true,
  compressMinBytes: 1 * KiB,
  compressTypes: [
    "text/*",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/wasm",
    "image/svg+xml",
    "+json",
    "+xml",
  ],
  compressBrotliLevel: 5,
  compressGzipLevel: 6,
  compressCacheMaxFileBytes: 1 * MiB,
  compressMaxJobs: 8,
  clientIpv6PrefixBits: 64,
  trustedProxies: [],
  allowlist: ["127.0.0.0/8", "::1"],
  guardTableCapacity: 100_000,
  requestRatePerSec: 100,
  requestBurst: 400,
  connRatePerSec: 30,
  connBurst: 120,
  banAfterViolations: 50,
  violationWindowMs: 10_000,
  banMs: 60_000,
  banMaxMs: DAY_MS,
  banListCapacity: 100_000,
  limitMode: "enforce",
  guardStore: "memory",
  guardStorePasswordFile: "off",
  guardStoreCaFile: "off",
  guardStorePassword: null,
  guardStoreCaPem: null,
  maxConnsPerClient: 128,
  maxConns: 4096,
  busyThresholdPercent: 80,
  app: "off",
  appPaths: ["/api/"],
  appFallback: false,
  appMaxBodyBytes: 1 * MiB,
  appTimeoutMs: 30_000,
};

const int = (min: number, max: number): Kind => ({ type: "int", min, max });
const str: Kind = { type: "string", nonEmpty: true };

/** Every key `vento.conf` accepts, in the order they are documented. */
export const SETTINGS: readonly Setting[] = [
  { key: "PORT", field: "port", reload: "listen", kind: int(0, 65535), doc: "TCP port to listen on" },
  {
    key: "HOST",
    field: "host",
    reload: "restart",
    kind: str,
    doc: "address to bind; :: is every interface, dual-stack",
  },
  {
    key: "WORKERS",
    field: "workers",
    reload: "restart",
    kind: { type: "intOrAuto", min: 1, max: 64 },
    doc:
      "accept loops (threads) sharing PORT, or auto: one per core (one loop is already fair); limits stay global",
  },
  {
    key: "DOCUMENT_ROOT",
    field: "documentRoot",
    reload: "files",
    kind: str,
    doc: "folder to serve, relative to vento.conf",
  },
  {
    key: "ACCESS_LOG",
    field: "accessLog",
    reload: "log",
    kind: str,
    doc: "access log path, - for stdout, off for none",
  },
  {
    key: "ACCESS_LOG_FORMAT",
    field: "accessLogFormat",
    reload: "log",
    kind: { type: "enum", values: ["combined", "json"] },
    doc: "combined (Combined Log Format) or json (one object per line)",
  },
  {
    key: "ADMIN_SOCKET",
    field: "adminSocket",
    reload: "listen",
    kind: str,
    doc: "admin Unix socket path, or off",
  },
  {
    key: "ADMIN_IDLE_TIMEOUT_MS",
    field: "adminIdleTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "an admin client silent this long (no request, no subscription) is closed",
  },
  {
    key: "ADMIN_SEND_TIMEOUT_MS",
    field: "adminSendTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "an admin reply that waits this long for a client that is not reading closes it",
  },
  {
    key: "PLAIN_HTTP",
    field: "plainHttp",
    reload: "restart",
    kind: { type: "bool" },
    doc: "serve plain HTTP on PORT; off serves HTTPS only (needs TLS_CERT and TLS_KEY)",
  },
  {
    key: "TLS_CERT",
    field: "tlsCert",
    reload: "tls",
    kind: str,
    doc: "TLS certificate chain (PEM) path, or off for no HTTPS",
  },
  { key: "TLS_KEY", field: "tlsKey", reload: "tls", kind: str, doc: "TLS private key (PEM) path, or off" },
  {
    key: "TLS_PORT",
    field: "tlsPort",
    reload: "listen",
    kind: int(0, 65535),
    doc: "HTTPS port, used when TLS_CERT and TLS_KEY are set",
  },
  {
    key: "MAX_REQUEST_LINE_BYTES",
    field: "maxRequestLineBytes",
    reload: "live",
    kind: int(256, 1 * MiB),
    doc: "longest request line; longer is answered 414",
  },
  {
    key: "MAX_HEADER_BYTES",
    field: "maxHeaderBytes",
    reload: "live",
    kind: int(1 * KiB, 1 * MiB),
    doc: "largest request line + header section; larger is answered 431",
  },
  {
    key: "MAX_HEADER_COUNT",
    field: "maxHeaderCount",
    reload: "live",
    kind: int(1, 10_000),
    doc: "most header fields; 431 above",
  },
  {
    key: "ECHO_MAX_BODY_BYTES",
    field: "echoMaxBodyBytes",
    reload: "live",
    kind: int(0, 64 * MiB),
    doc: "largest body POST /api/echo accepts; 413 above",
  },
  {
    key: "UNREAD_BODY_MAX_BYTES",
    field: "unreadBodyMaxBytes",
    reload: "live",
    kind: int(0, 64 * MiB),
    doc: "largest body a route that ignores it discards to keep the connection; above, Connection: close",
  },
  {
    key: "MAX_REQUESTS_PER_CONN",
    field: "maxRequestsPerConn",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "requests served on one connection before it closes",
  },
  {
    key: "HEADER_TIMEOUT_MS",
    field: "headerTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "accept (or first byte) to complete head; never extended; 408",
  },
  {
    key: "IDLE_TIMEOUT_MS",
    field: "idleTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "idle keep-alive timeout",
  },
  {
    key: "IDLE_TIMEOUT_BUSY_MS",
    field: "idleTimeoutBusyMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "idle keep-alive timeout while the server is busy",
  },
  {
    key: "BODY_IDLE_TIMEOUT_MS",
    field: "bodyIdleTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "longest gap between body reads; 408",
  },
  {
    key: "BODY_MIN_RATE_GRACE_MS",
    field: "bodyMinRateGraceMs",
    reload: "live",
    kind: int(0, DAY_MS),
    doc: "window over which the minimum body rate is judged (first after this grace, then per window)",
  },
  {
    key: "BODY_MIN_RATE_BYTES_PER_SEC",
    field: "bodyMinRateBytesPerSec",
    reload: "live",
    kind: int(0, 1_000_000_000),
    doc: "minimum request body rate, averaged over each window; slower is 408",
  },
  {
    key: "SEND_TIMEOUT_MS",
    field: "sendTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "longest time one write may stay pending",
  },
  {
    key: "SEND_MIN_RATE_GRACE_MS",
    field: "sendMinRateGraceMs",
    reload: "live",
    kind: int(0, DAY_MS),
    doc: "window over which the minimum send rate is judged (first after this grace, then per window)",
  },
  {
    key: "SEND_MIN_RATE_BYTES_PER_SEC",
    field: "sendMinRateBytesPerSec",
    reload: "live",
    kind: int(0, 1_000_000_000),
    doc: "minimum response drain rate, averaged over each window; slower is closed",
  },
  {
    key: "SHUTDOWN_TIMEOUT_MS",
    field: "shutdownTimeoutMs",
    reload: "live",
    kind: int(0, DAY_MS),
    doc: "how long shutdown waits for in-flight responses",
  },
  { key: "INDEX_FILE", field: "indexFile", reload: "files", kind: str, doc: "file served for a directory" },
  {
    key: "DOTFILES",
    field: "dotfiles",
    reload: "files",
    kind: { type: "enum", values: ["hide", "allow"] },
    doc: "hide (404, except /.well-known/) or allow",
  },
  {
    key: "DIRECTORY_LISTING",
    field: "directoryListing",
    reload: "files",
    kind: { type: "bool" },
    doc: "list index-less folders",
  },
  {
    key: "CACHE_CONTROL_HTML",
    field: "cacheControlHtml",
    reload: "files",
    kind: str,
    doc: "Cache-Control for HTML",
  },
  {
    key: "CACHE_CONTROL",
    field: "cacheControl",
    reload: "files",
    kind: str,
    doc: "Cache-Control for other files",
  },
  {
    key: "FILE_CACHE_MAX_FILE_BYTES",
    field: "fileCacheMaxFileBytes",
    reload: "files",
    kind: int(0, 64 * MiB),
    doc: "largest file kept in the memory cache",
  },
  {
    key: "FILE_CACHE_MAX_BYTES",
    field: "fileCacheMaxBytes",
    reload: "files",
    kind: int(0, 16 * 1024 * MiB),
    doc: "memory cache size",
  },
  {
    key: "FILE_CACHE_REVALIDATE_MS",
    field: "fileCacheRevalidateMs",
    reload: "files",
    kind: int(0, DAY_MS),
    doc: "how often a cached file is re-checked",
  },
  {
    key: "STREAM_CHUNK_BYTES",
    field: "streamChunkBytes",
    reload: "files",
    kind: int(4 * KiB, 16 * MiB),
    doc: "buffer size for streaming large files",
  },
  {
    key: "MAX_RANGES",
    field: "maxRanges",
    reload: "files",
    kind: int(1, 1000),
    doc: "most ranges in one request",
  },
  {
    key: "PRECOMPRESSED",
    field: "precompressed",
    reload: "files",
    kind: { type: "bool" },
    doc: "serve .br/.gz sidecars",
  },
  {
    key: "ECHO",
    field: "echo",
    reload: "live",
    kind: { type: "bool" },
    doc: "answer POST /api/echo; off: an ordinary path",
  },
  {
    key: "HEALTH_PATH",
    field: "healthPath",
    reload: "live",
    kind: { type: "routePath" },
    doc: "path answering 200 while serving, 503 while draining (to HEALTH_ALLOWLIST only), or off",
  },
  {
    key: "HEALTH_ALLOWLIST",
    field: "healthAllowlist",
    reload: "live",
    kind: { type: "cidrs" },
    doc: "peers HEALTH_PATH answers; anyone else gets the ordinary path",
  },
  {
    key: "METRICS_PATH",
    field: "metricsPath",
    reload: "live",
    kind: { type: "routePath" },
    doc: "path answering Prometheus metrics (to METRICS_ALLOWLIST only), or off",
  },
  {
    key: "METRICS_ALLOWLIST",
    field: "metricsAllowlist",
    reload: "live",
    kind: { type: "cidrs" },
    doc: "peers METRICS_PATH answers; anyone else gets the ordinary path",
  },
  {
    key: "COMPRESS",
    field: "compress",
    reload: "files",
    kind: { type: "bool" },
    doc: "compress COMPRESS_TYPES on the fly (br, gzip) when the client accepts it and no sidecar exists",
  },
  {
    key: "COMPRESS_MIN_BYTES",
    field: "compressMinBytes",
    reload: "files",
    kind: int(0, 1024 * MiB),
    doc: "files smaller than this are sent uncompressed",
  },
  {
    key: "COMPRESS_TYPES",
    field: "compressTypes",
    reload: "files",
    kind: { type: "mimeTypes" },
    doc: "types compressed on the fly: type/subtype, type/*, or a +suffix (comma-separated)",
  },
  {
    key: "COMPRESS_BROTLI_LEVEL",
    field: "compressBrotliLevel",
    reload: "files",
    kind: int(0, 11),
    doc: "brotli quality for on-the-fly compression (0 fastest, 11 smallest)",
  },
  {
    key: "COMPRESS_GZIP_LEVEL",
    field: "compressGzipLevel",
    reload: "files",
    kind: int(1, 9),
    doc: "gzip level for on-the-fly compression (1 fastest, 9 smallest)",
  },
  {
    key: "COMPRESS_CACHE_MAX_FILE_BYTES",
    field: "compressCacheMaxFileBytes",
    reload: "files",
    kind: int(0, 64 * MiB),
    doc: "files up to this size are compressed once per version and cached; larger ones per request",
  },
  {
    key: "COMPRESS_MAX_JOBS",
    field: "compressMaxJobs",
    reload: "files",
    kind: int(1, 100_000),
    doc: "on-the-fly compressions at once; requests beyond it get the uncompressed file",
  },
  {
    key: "CLIENT_IPV6_PREFIX_BITS",
    field: "clientIpv6PrefixBits",
    reload: "live",
    kind: int(1, 128),
    doc: "IPv6 clients are keyed by this prefix",
  },
  {
    key: "TRUSTED_PROXIES",
    field: "trustedProxies",
    reload: "live",
    kind: { type: "cidrs" },
    doc: "CIDRs whose XFF is trusted",
  },
  {
    key: "ALLOWLIST",
    field: "allowlist",
    reload: "live",
    kind: { type: "cidrs" },
    doc: "CIDRs exempt from limits and bans",
  },
  {
    key: "GUARD_TABLE_CAPACITY",
    field: "guardTableCapacity",
    reload: "restart",
    kind: int(16, 10_000_000),
    doc: "clients tracked at once",
  },
  {
    key: "REQUEST_RATE_PER_SEC",
    field: "requestRatePerSec",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "sustained requests/s per client",
  },
  {
    key: "REQUEST_BURST",
    field: "requestBurst",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "request burst per client",
  },
  {
    key: "CONN_RATE_PER_SEC",
    field: "connRatePerSec",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "sustained new connections/s per client",
  },
  {
    key: "CONN_BURST",
    field: "connBurst",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "connection burst per client",
  },
  {
    key: "BAN_AFTER_VIOLATIONS",
    field: "banAfterViolations",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "rejections within the window that earn a ban",
  },
  {
    key: "VIOLATION_WINDOW_MS",
    field: "violationWindowMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "window for counting rejections",
  },
  {
    key: "BAN_MS",
    field: "banMs",
    reload: "live",
    kind: int(1, DAY_MS * 365),
    doc: "first ban length (doubles on repeat)",
  },
  { key: "BAN_MAX_MS", field: "banMaxMs", reload: "live", kind: int(1, DAY_MS * 365), doc: "longest ban" },
  {
    key: "BAN_LIST_CAPACITY",
    field: "banListCapacity",
    reload: "live",
    kind: int(1, 10_000_000),
    doc: "bans held at once",
  },
  {
    key: "LIMIT_MODE",
    field: "limitMode",
    reload: "live",
    kind: { type: "enum", values: ["enforce", "dry-run"] },
    doc: "enforce, or dry-run (count only)",
  },
  {
    key: "GUARD_STORE",
    field: "guardStore",
    reload: "restart",
    kind: { type: "store" },
    doc: "memory, or redis[s]://[[user]:password@]host:port[/db] to share limits and bans between instances",
  },
  {
    key: "GUARD_STORE_PASSWORD_FILE",
    field: "guardStorePasswordFile",
    reload: "restart",
    kind: str,
    doc: "file holding the Redis password (wins over one in GUARD_STORE), or off",
  },
  {
    key: "GUARD_STORE_CA_FILE",
    field: "guardStoreCaFile",
    reload: "restart",
    kind: str,
    doc: "CA certificate (PEM) trusted for a rediss:// GUARD_STORE with a private CA, or off",
  },
  {
    key: "MAX_CONNS_PER_CLIENT",
    field: "maxConnsPerClient",
    reload: "live",
    kind: int(1, 1_000_000),
    doc: "open connections per client; 503 above",
  },
  {
    key: "MAX_CONNS",
    field: "maxConns",
    reload: "live",
    kind: int(1, 1_000_000),
    doc: "open connections in all; 503 above",
  },
  {
    key: "BUSY_THRESHOLD_PERCENT",
    field: "busyThresholdPercent",
    reload: "live",
    kind: int(1, 100),
    doc: "above this share of MAX_CONNS the idle timeout shrinks",
  },
  {
    key: "APP",
    field: "app",
    reload: "app",
    kind: str,
    doc: "module with a default export { fetch(request, info) } (relative to vento.conf), or off",
  },
  {
    key: "APP_PATHS",
    field: "appPaths",
    reload: "live",
    kind: { type: "prefixes" },
    doc: "comma-separated path prefixes routed to APP (each starts with /); other paths stay static",
  },
  {
    key: "APP_FALLBACK",
    field: "appFallback",
    reload: "live",
    kind: { type: "bool" },
    doc: "send requests that match no file to APP instead of answering 404",
  },
  {
    key: "APP_MAX_BODY_BYTES",
    field: "appMaxBodyBytes",
    reload: "live",
    kind: int(0, 1024 * MiB),
    doc: "largest request body APP receives; 413 above (before reading when Content-Length says so)",
  },
  {
    key: "APP_TIMEOUT_MS",
    field: "appTimeoutMs",
    reload: "live",
    kind: int(1, DAY_MS),
    doc: "longest wait for APP's Response (its head; a streamed body is bounded by the send deadlines); 503",
  },
];

const BY_KEY: ReadonlyMap<string, Setting> = new Map(SETTINGS.map((s) => [s.key, s]));

/** One problem found in a config file, with its 1-based line number (0 for whole-file problems). */
export interface ConfigError {
  line: number;
  message: string;
}

/** The result of parsing: a complete config, or every problem found. Never both. */
export type ParseConfigResult =
  | { ok: true; config: Config; setKeys: string[] }
  | { ok: false; errors: ConfigError[] };

/**
 * Whether `s` is an IPv4 or IPv6 address with an optional prefix length in range: exactly what the guard
 * will use (the same parser), so `--check` accepts nothing the server would then ignore.
 */
export function isCidr(s: string): boolean {
  return parseCidr(s) !== null;
}

/** One COMPRESS_TYPES item: `type/subtype`, `type/*` or `+suffix`, in RFC 6838 name characters. */
const MIME_NAME = "[a-z0-9][a-z0-9!#$&^_.+-]*";
const MIME_PATTERN = new RegExp(`^(?:${MIME_NAME}/(?:\\*|${MIME_NAME})|\\+${MIME_NAME})$`);
/**
 * Whether `s` can be an APP_PATHS prefix: compared byte for byte with the still percent-encoded path, so
 * it holds only the characters a path may carry unencoded (RFC 3986 pchar and "/"), and no "%".
 */
export function isPathPrefix(s: string): boolean {
  return /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@\/]*$/.test(s);
}

function parseValue(s: Setting, raw: string): { value: unknown } | { error: string } {
  const k = s.kind;
  switch (k.type) {
    case "int": {
      if (!/^\d+$/.test(raw)) return { error: `${s.key} must be a whole number, got "${raw}"` };
      const n = Number(raw);
      if (n < k.min || n > k.max) {
        return { error: `${s.key} must be between ${k.min} and ${k.max}, got ${raw}` };
      }
      return { value: n };
    }
    case "string":
      if (k.nonEmpty && raw === "") return { error: `${s.key} must not be empty` };
      return { value: raw };
    case "bool":
      if (/^(on|true|yes|1)$/i.test(raw)) return { value: true };
      if (/^(off|false|no|0)$/i.test(raw)) return { value: false };
      return { error: `${s.key} must be on or off, got "${raw}"` };
    case "enum":
      if (!k.values.includes(raw)) {
        return { error: `${s.key} must be one of ${k.values.join(", ")}, got "${raw}"` };
      }
      return { value: raw };
    case "intOrAuto": {
      if (raw === "auto") return { value: "auto" };
      const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
      if (!(n >= k.min && n <= k.max)) {
        return { error: `${s.key} must be auto or between ${k.min} and ${k.max}, got "${raw}"` };
      }
      return { value: n };
    }
    case "cidrs": {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      const bad = items.find((x) => !isCidr(x));
      if (bad !== undefined) return { error: `${s.key}: "${bad}" is not an IP address or CIDR` };
      return { value: items };
    }
    case "routePath":
      // Matched exactly against the request path (before any query), so it must be a plain, clean path.
      if (
        raw === "off" ||
        /^\/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]+\/?)*$/.test(raw) && !/\/\.{1,2}(?:\/|$)/.test(raw)
      ) {
        return { value: raw };
      }
      return {
        error: `${s.key} must be off or a path such as /healthz (no query, no dot segments), got "${raw}"`,
      };
    case "mimeTypes": {
      const items = raw.split(",").map((x) => x.trim().toLowerCase()).filter((x) => x !== "");
      const bad = items.find((x) => !MIME_PATTERN.test(x));
      if (bad !== undefined) {
        return { error: `${s.key}: "${bad}" is not a type/subtype, type/* or +suffix` };
      }
      return { value: items };
    }
    case "prefixes": {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      if (items.length === 0) return { error: `${s.key} needs at least one path prefix, like /api/` };
      const bad = items.find((x) => !isPathPrefix(x));
      if (bad !== undefined) {
        return {
          error: `${s.key}: "${bad}" is not a path prefix (it must start with / and hold no spaces, ` +
            `"?", "#" or "%")`,
        };
      }
      return { value: items };
    }
    case "store": {
      const r = parseGuardStore(raw);
      if (!r.ok) {
        // The value may hold a password: it is quoted redacted.
        return {
          error: `${s.key} must be memory or redis[s]://[[user]:password@]host:port[/db] (${r.reason}), ` +
            `got "${redactGuardStore(raw)}"`,
        };
      }
      return { value: raw };
    }
  }
}

/** GUARD_STORE's companion keys must fit it: a secret file nothing would use is a mistake worth reporting. */
function guardStoreErrors(config: Config, seen: ReadonlyMap<string, number>): ConfigError[] {
  const errors: ConfigError[] = [];
  const parsed = parseGuardStore(config.guardStore);
  const target = parsed.ok ? parsed.target : null;
  if (config.guardStorePasswordFile !== "off" && target === null) {
    errors.push({
      line: seen.get("GUARD_STORE_PASSWORD_FILE") ?? 0,
      message: "GUARD_STORE_PASSWORD_FILE needs a redis:// or rediss:// GUARD_STORE",
    });
  }
  if (config.guardStoreCaFile !== "off" && target?.tls !== true) {
    errors.push({
      line: seen.get("GUARD_STORE_CA_FILE") ?? 0,
      message: "GUARD_STORE_CA_FILE needs a rediss:// (TLS) GUARD_STORE",
    });
  }
  // `redis://name@host` is often meant as a password: refuse it rather than connect without AUTH, and
  // do not quote the name, in case it is one.
  const userOnly = target !== null && target.user !== null && target.password === null;
  if (userOnly && config.guardStorePasswordFile === "off") {
    errors.push({
      line: seen.get("GUARD_STORE") ?? 0,
      message: "GUARD_STORE names a user but no password: add :password or set GUARD_STORE_PASSWORD_FILE",
    });
  }
  return errors;
}

/** Levenshtein distance between `a` and `b` (two rows; keys are short). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** HEALTH_PATH and METRICS_PATH must not take each other's place or the echo route's. */
function probePathErrors(config: Config, seen: ReadonlyMap<string, number>): ConfigError[] {
  const errors: ConfigError[] = [];
  const taken = new Map<string, string>([["/api/echo", "the echo route"]]);
  for (const [key, path] of [["HEALTH_PATH", config.healthPath], ["METRICS_PATH", config.metricsPath]]) {
    if (path === "off") continue;
    const other = taken.get(path);
    if (other !== undefined) {
      errors.push({ line: seen.get(key) ?? 0, message: `${key} "${path}" is already ${other}` });
    }
    taken.set(path, key);
  }
  return errors;
}

/**
 * The known key closest to a mistyped one (`DOCUMENT_ROT` → `DOCUMENT_ROOT`), or null when none is
 * close: at most a third of the key's letters may differ, so an unrelated word suggests nothing.
 */
export function nearestKey(typed: string): string | null {
  const upper = typed.toUpperCase();
  let best: string | null = null;
  let bestDistance = Math.max(1, Math.floor(upper.length / 3)) + 1;
  for (const s of SETTINGS) {
    const d = editDistance(upper, s.key);
    if (d < bestDistance) {
      best = s.key;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * The value part of a line as a shell user reads it: surrounding whitespace dropped; a value wrapped
 * in matching `"` or `'` loses its quotes (`CACHE_CONTROL="public, max-age=60"` sends no quote), with no
 * escapes inside; after an unquoted value, ` #` (a `#` after whitespace) starts a comment, so
 * `PORT=8080   # the public port` works as pasted. A `#` with no space before it is part of the value
 * (`pass#word`); a value holding ` #` must be quoted. An unclosed quote, or text after the closing one,
 * is an error naming the key, never a guess.
 */
export function unquoteValue(key: string, text: string): { value: string } | { error: string } {
  const t = text.trim();
  const q = t[0];
  if (q === '"' || q === "'") {
    const end = t.indexOf(q, 1);
    if (end < 0) return { error: `${key}: the value opens a ${q} quote that is never closed` };
    const rest = t.slice(end + 1).trim();
    if (rest !== "" && !rest.startsWith("#")) {
      return { error: `${key}: unexpected text after the closing ${q} quote: "${rest}"` };
    }
    return { value: t.slice(1, end) };
  }
  const comment = /\s#/.exec(t);
  return { value: comment === null ? t : t.slice(0, comment.index).trim() };
}

/**
 * Parses `vento.conf` text. `KEY=VALUE` per line, `#` starts a comment line or (after whitespace) an
 * inline comment, whitespace around keys and values is trimmed, quotes around a value are removed (see
 * `unquoteValue`), blank lines are ignored. Pure: touches no file.
 */
export function parseConfig(text: string, base: Config = DEFAULT_CONFIG): ParseConfigResult {
  const config: Config = {
    ...base,
    trustedProxies: [...base.trustedProxies],
    allowlist: [...base.allowlist],
    healthAllowlist: [...base.healthAllowlist],
    metricsAllowlist: [...base.metricsAllowlist],
    compressTypes: [...base.compressTypes],
    appPaths: [...base.appPaths],
  };
  const errors: ConfigError[] = [];
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) {
      errors.push({ line: lineNo, message: `expected KEY=VALUE, got "${line}"` });
      continue;
    }
    const key = line.slice(0, eq).trim();
    const setting = BY_KEY.get(key.toUpperCase());
    if (setting === undefined || key !== setting.key) {
      const near = setting?.key ?? nearestKey(key);
      const hint = setting !== undefined
        ? ` (keys are upper case: ${setting.key})`
        : near !== null
        ? ` (did you mean ${near}?)`
        : "";
      errors.push({ line: lineNo, message: `unknown key "${key}"${hint}` });
      continue;
    }
    const value = unquoteValue(key, line.slice(eq + 1));
    if ("error" in value) {
      errors.push({ line: lineNo, message: value.error });
      continue;
    }
    const raw = value.value;
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      errors.push({ line: lineNo, message: `${key} is already set on line ${earlier}` });
      continue;
    }
    seen.set(key, lineNo);
    const parsed = parseValue(setting, raw);
    if ("error" in parsed) errors.push({ line: lineNo, message: parsed.error });
    else (config as unknown as Record<string, unknown>)[setting.field] = parsed.value;
  }
  if (errors.length === 0) {
    if (config.maxRequestLineBytes > config.maxHeaderBytes) {
      errors.push({
        line: seen.get("MAX_REQUEST_LINE_BYTES") ?? 0,
        message: "MAX_REQUEST_LINE_BYTES exceeds MAX_HEADER_BYTES",
      });
    }
    if (config.banMs > config.banMaxMs) {
      errors.push({ line: seen.get("BAN_MS") ?? 0, message: "BAN_MS exceeds BAN_MAX_MS" });
    }
    if ((config.tlsCert === "off") !== (config.tlsKey === "off")) {
      errors.push({
        line: seen.get(config.tlsCert === "off" ? "TLS_KEY" : "TLS_CERT") ?? 0,
        message: "TLS_CERT and TLS_KEY must be set together (or both off)",
      });
    }
    if (!config.plainHttp && config.tlsCert === "off") {
      errors.push({
        line: seen.get("PLAIN_HTTP") ?? 0,
        message: "PLAIN_HTTP=off needs TLS_CERT and TLS_KEY",
      });
    }
    if (config.maxConnsPerClient > config.maxConns) {
      errors.push({
        line: seen.get("MAX_CONNS_PER_CLIENT") ?? 0,
        message: "MAX_CONNS_PER_CLIENT exceeds MAX_CONNS",
      });
    }
    errors.push(...guardStoreErrors(config, seen));
    errors.push(...probePathErrors(config, seen));
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config, setKeys: [...seen.keys()] };
}

/** Formats a config error as `path:line: message` (line omitted when 0). */
export function formatConfigError(path: string, e: ConfigError): string {
  return e.line > 0 ? `${path}:${e.line}: ${e.message}` : `${path}: ${e.message}`;
}

/** What `loadConfig` answers: a validated config with absolute paths, or every problem, formatted. */
export type LoadConfigResult =
  | {
    ok: true;
    config: Config;
    path: string;
    found: boolean;
    /** Where a key is set, for messages: `vento.conf:12`, or the file's name when the default applies. */
    locate: (key: string) => string;
  }
  | { ok: false; messages: string[] };

/** The conf file read when `--config` is not given, relative to the working directory. */
export const DEFAULT_CONFIG_PATH = "vento.conf";

/** Values of ACCESS_LOG / ADMIN_SOCKET / TLS_CERT / TLS_KEY that are switches, not paths, so never resolved. */
const NOT_A_PATH = new Set(["-", "off"]);

function isAbsolutePath(p: string): boolean {
  return p.startsWith("/");
}

/** Joins `rel` onto the absolute folder `dir`, collapsing `.` and `..` (POSIX paths; Vento is Linux-first). */
function resolvePath(dir: string, rel: string): string {
  const parts: string[] = [];
  for (const part of (isAbsolutePath(rel) ? rel : `${dir}/${rel}`).split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return "/" + parts.join("/");
}

function dirnameOf(absPath: string): string {
  const i = absPath.lastIndexOf("/");
  return i <= 0 ? "/" : absPath.slice(0, i);
}

/** The 1-based line on which `key` is set in `text`, or 0 when it is not (the default applies). */
function lineOfKey(text: string, key: string): number {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const eq = line.indexOf("=");
    if (!line.startsWith("#") && eq > 0 && line.slice(0, eq).trim() === key) return i + 1;
  }
  return 0;
}

/**
 * Reads, parses and checks the conf file; the only config code that touches the file system (and only
 * to read). `path` null means `vento.conf` in the working directory, whose absence is fine (defaults
 * apply); an explicitly given file that is absent is an error. DOCUMENT_ROOT, ACCESS_LOG (unless `-` or
 * `off`) and ADMIN_SOCKET (unless `off`) are resolved against the conf file's folder, absolute paths
 * kept as given. The document root must exist and be a directory, so a typo fails at start-up with a
 * line number instead of as a 404 for every request. `portOverride` (from `--port`) wins over PORT.
 * GUARD_STORE_PASSWORD_FILE and GUARD_STORE_CA_FILE (relative to the conf's folder too) are read here
 * into `guardStorePassword` / `guardStoreCaPem`; missing, unreadable or empty is an error.
 * Never throws: every problem comes back as `path:line: problem`.
 */
export async function loadConfig(
  path: string | null,
  opts: { portOverride?: number } = {},
): Promise<LoadConfigResult> {
  const shownPath = path ?? DEFAULT_CONFIG_PATH;
  const absPath = resolvePath(Deno.cwd(), shownPath);
  let text = "";
  let found = true;
  try {
    // Fatal decoding: a conf file that is not UTF-8 is a mistake worth reporting, not guessing at.
    text = new TextDecoder("utf-8", { fatal: true }).decode(await Deno.readFile(absPath));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound && path === null) {
      found = false;
    } else if (err instanceof Deno.errors.NotFound) {
      return { ok: false, messages: [`${shownPath}: config file not found`] };
    } else if (err instanceof TypeError) {
      return { ok: false, messages: [`${shownPath}: config file is not valid UTF-8`] };
    } else {
      const why = errorMessage(err);
      return { ok: false, messages: [`${shownPath}: cannot read config file: ${why}`] };
    }
  }

  const parsed = parseConfig(text);
  if (!parsed.ok) return { ok: false, messages: parsed.errors.map((e) => formatConfigError(shownPath, e)) };
  const config = parsed.config;

  const messages: string[] = [];
  if (opts.portOverride !== undefined) {
    const p = opts.portOverride;
    if (!Number.isInteger(p) || p < 0 || p > 65535) {
      messages.push(`--port must be between 0 and 65535, got ${p}`);
    } else {
      config.port = p;
    }
  }

  /** `vento.conf:LINE` of `key`, or the file alone when the key is not set in it. */
  const locate = (key: string) => {
    const line = lineOfKey(text, key);
    return line > 0 ? `${shownPath}:${line}` : shownPath;
  };
  const confDir = dirnameOf(absPath);
  const rawRoot = config.documentRoot;
  config.documentRoot = resolvePath(confDir, rawRoot);
  if (!NOT_A_PATH.has(config.accessLog)) config.accessLog = resolvePath(confDir, config.accessLog);
  if (config.adminSocket !== "off") config.adminSocket = resolvePath(confDir, config.adminSocket);
  if (config.tlsCert !== "off") config.tlsCert = resolvePath(confDir, config.tlsCert);
  if (config.tlsKey !== "off") config.tlsKey = resolvePath(confDir, config.tlsKey);
  if (config.guardStorePasswordFile !== "off") {
    config.guardStorePasswordFile = resolvePath(confDir, config.guardStorePasswordFile);
  }
  if (config.guardStoreCaFile !== "off") {
    config.guardStoreCaFile = resolvePath(confDir, config.guardStoreCaFile);
  }
  if (config.app !== "off") {
    const rawApp = config.app;
    config.app = resolvePath(confDir, rawApp);
    const at = locate("APP");
    try {
      if (!(await Deno.stat(config.app)).isFile) messages.push(`${at}: APP "${rawApp}" is not a file`);
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound
        ? `does not exist (${config.app})`
        : `cannot be checked: ${errorMessage(err)}`;
      messages.push(`${at}: APP "${rawApp}" ${why}`);
    }
  }

  const rootLine = lineOfKey(text, "DOCUMENT_ROOT");
  const where = rootLine > 0 ? `${shownPath}:${rootLine}` : shownPath;
  const what = `DOCUMENT_ROOT "${rawRoot}"${rootLine > 0 ? "" : " (default)"}`;
  const resolvedNote = rawRoot === config.documentRoot ? "" : ` (${config.documentRoot})`;
  try {
    const info = await Deno.stat(config.documentRoot);
    if (!info.isDirectory) messages.push(`${where}: ${what} is not a directory${resolvedNote}`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      messages.push(`${where}: ${what} does not exist${resolvedNote}`);
    } else {
      const why = errorMessage(err);
      messages.push(`${where}: ${what} cannot be checked: ${why}`);
    }
  }

  // The PEM files are read at start-up anyway; checking here lets `--check` catch a wrong path before a
  // deploy. Whether the key matches the certificate is only known when the TLS listener is built.
  for (const [key, path] of [["TLS_CERT", config.tlsCert], ["TLS_KEY", config.tlsKey]] as const) {
    if (path === "off") continue;
    const at = locate(key);
    try {
      if (!(await Deno.readTextFile(path)).includes("-----BEGIN ")) {
        messages.push(`${at}: ${key} "${path}" is not a PEM file`);
      }
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound
        ? "does not exist"
        : `cannot be read: ${errorMessage(err)}`;
      messages.push(`${at}: ${key} "${path}" ${why}`);
    }
  }

  // The Redis secrets are read here, once, so a wrong path fails at start-up (exit 2) instead of as a
  // store that never connects. Messages name the file, never its content.
  for (const key of ["GUARD_STORE_PASSWORD_FILE", "GUARD_STORE_CA_FILE"] as const) {
    const path = key === "GUARD_STORE_PASSWORD_FILE"
      ? config.guardStorePasswordFile
      : config.guardStoreCaFile;
    if (path === "off") continue;
    const at = locate(key);
    let content: string;
    try {
      content = await Deno.readTextFile(path);
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound
        ? "does not exist"
        : `cannot be read: ${errorMessage(err)}`;
      messages.push(`${at}: ${key} "${path}" ${why}`);
      continue;
    }
    if (key === "GUARD_STORE_CA_FILE") {
      if (content.includes("-----BEGIN CERTIFICATE-----")) config.guardStoreCaPem = content;
      else messages.push(`${at}: ${key} "${path}" holds no PEM certificate`);
    } else {
      // Editors and `echo` add a final newline that is not part of the password.
      const password = content.replace(/[\r\n]+$/, "");
      if (password !== "") config.guardStorePassword = password;
      else messages.push(`${at}: ${key} "${path}" is empty`);
    }
  }

  if (messages.length > 0) return { ok: false, messages };
  return { ok: true, config, path: absPath, found, locate };
}
