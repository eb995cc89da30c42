/**
 * The admin protocol, defined once and shared by the server (`src/admin/server.ts`) and the client
 * (`admin/`): message types, encode/decode, request validation and the rate derivation both sides use.
 *
 * Wire format: newline-delimited JSON, one object per line, versioned, the request id echoed:
 *   → {"v":1,"id":7,"op":"kick","args":{"id":42}}
 *   ← {"v":1,"id":7,"ok":true,"data":{…}}
 *   ← {"v":1,"id":7,"ok":false,"error":{"code":"NOT_FOUND","message":"…"}}
 *   ← {"v":1,"id":7,"ok":true,"event":"snapshot","data":{…}}   (subscribe stream)
 * Arguments live in `args` so they can never collide with the envelope (`kick` takes an `id` too).
 *
 * Pure: no Deno APIs, never throws on input; every malformed request maps to a stable error code.
 */

import type { StatsSnapshot } from "../stats/stats.ts";
import type { ConnInfo } from "../net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../guard/views.ts";

/** The refusal reasons a `stats` reply counts, re-exported so the client needs only this module. */
export { APP_FAILURES, REFUSE_REASONS } from "../stats/stats.ts";

/** The protocol version this code speaks; a request with another `v` gets BAD_VERSION. */
export const PROTOCOL_VERSION = 1;
/** Longest request line (bytes, without the newline); beyond it LINE_TOO_LONG and the connection closes. */
export const MAX_LINE_BYTES = 64 * 1024;
/** Fastest subscription; faster requests get BAD_ARGS (a snapshot costs the data path a little). */
export const MIN_SUBSCRIBE_INTERVAL_MS = 100;
/** Slowest subscription. */
export const MAX_SUBSCRIBE_INTERVAL_MS = 60_000;
/** Most rows `clients` (and a subscription's `clients`) may ask for. */
export const MAX_CLIENTS_LIMIT = 1000;
/** Default rows for `clients`. */
export const DEFAULT_CLIENTS_LIMIT = 20;
/** Shortest operator ban. */
export const MIN_BAN_MS = 1_000;
/** Longest operator ban (a year). */
export const MAX_BAN_MS = 365 * 86_400_000;
/** Longest ban reason, in characters. */
export const MAX_REASON_CHARS = 200;

/** Stable error codes of the admin protocol; never rename one. */
export type AdminErrorCode =
  /** The line is not a JSON object. */
  | "BAD_JSON"
  /** `v` is missing or not the version this server speaks. */
  | "BAD_VERSION"
  /** The envelope is malformed (missing/invalid `id` or `op`). */
  | "BAD_REQUEST"
  /** `op` names no operation. */
  | "UNKNOWN_OP"
  /** `args` are missing, of the wrong type or out of range. */
  | "BAD_ARGS"
  /** The line exceeded `MAX_LINE_BYTES`; the connection is closed after this reply. */
  | "LINE_TOO_LONG"
  /** The target of unban/kick does not exist. */
  | "NOT_FOUND"
  /** The server understood but declined (ban refused, reload invalid). */
  | "REFUSED"
  /** Too many admin clients are connected; the connection is closed after this reply. */
  | "BUSY"
  /** A bug on the server side; the message says what failed. */
  | "INTERNAL";

export const ADMIN_ERROR_CODES: readonly AdminErrorCode[] = [
  "BAD_JSON",
  "BAD_VERSION",
  "BAD_REQUEST",
  "UNKNOWN_OP",
  "BAD_ARGS",
  "LINE_TOO_LONG",
  "NOT_FOUND",
  "REFUSED",
  "BUSY",
  "INTERNAL",
];

/** What `hello` answers. */
export interface HelloData {
  /** Vento's version. */
  version: string;
  /** Admin protocol version. */
  protocol: number;
  pid: number;
  /** Milliseconds since the server started. */
  uptimeMs: number;
  /** Addresses the HTTP server listens on, e.g. `[::]:8080`. */
  listen: string[];
  /** The config file in use ("" when none was found). */
  configPath: string;
}

/** Per-second rates derived from two snapshots. */
export interface Rates {
  /** Milliseconds between the two snapshots (0: no rates yet). */
  windowMs: number;
  requestsPerSec: number;
  acceptsPerSec: number;
  refusedPerSec: number;
  bytesInPerSec: number;
  bytesOutPerSec: number;
  status429PerSec: number;
}

/** What `stats` answers: counters and gauges, rates, and the cap for "now/cap" displays. */
export interface StatsReport {
  snapshot: StatsSnapshot;
  rates: Rates;
  maxConns: number;
}

/** One `subscribe` event's data; the optional parts are present when the subscription asked. */
export interface SnapshotEvent {
  stats: StatsReport;
  conns?: ConnInfo[];
  bans?: BanInfo[];
  clients?: ClientInfo[];
}

/** Arguments per operation. */
export interface OpArgs {
  hello: Record<string, never>;
  stats: Record<string, never>;
  conns: Record<string, never>;
  clients: { limit: number };
  bans: Record<string, never>;
  ban: { target: string; ms: number; reason: string };
  unban: { target: string };
  kick: { id: number };
  reload: Record<string, never>;
  drain: Record<string, never>;
  metrics: Record<string, never>;
  subscribe: { intervalMs: number; conns: boolean; bans: boolean; clients: number };
  unsubscribe: Record<string, never>;
}

/** Successful reply data per operation (`subscribe` replies with events of `SnapshotEvent`). */
export interface OpData {
  hello: HelloData;
  stats: StatsReport;
  conns: ConnInfo[];
  clients: ClientInfo[];
  bans: BanInfo[];
  ban: { target: string; ms: number };
  unban: { target: string };
  kick: { id: number };
  reload: { applied: string[]; needsRestart: string[] };
  drain: { draining: true };
  /** Prometheus text exposition format 0.0.4. */
  metrics: string;
  subscribe: SnapshotEvent;
  unsubscribe: { unsubscribed: boolean };
}

export type Op = keyof OpArgs;

export const OPS: readonly Op[] = [
  "hello",
  "stats",
  "conns",
  "clients",
  "bans",
  "ban",
  "unban",
  "kick",
  "reload",
  "drain",
  "metrics",
  "subscribe",
  "unsubscribe",
];

/** A validated request. */
export type Request = { [K in Op]: { v: 1; id: number; op: K; args: OpArgs[K] } }[Op];

export interface AdminError {
  code: AdminErrorCode;
  message: string;
  /** Extra lines (e.g. every config error of a refused reload). */
  details?: string[];
}

/** Any message the server sends. `id` is null only when the request's id could not be read. */
export type Response =
  | { v: 1; id: number | null; ok: true; data: unknown; event?: "snapshot" }
  | { v: 1; id: number | null; ok: false; error: AdminError };

/** A request that failed validation, with the id when it could be read (so the reply can echo it). */
export interface DecodeFailure {
  id: number | null;
  error: AdminError;
}

export type DecodeResult = { ok: true; request: Request } | { ok: false; failure: DecodeFailure };

// --- encoding ---------------------------------------------------------------------------------------

/** Encodes a request line (with the trailing newline). Args default to `{}`. */
export function encodeRequest<K extends Op>(id: number, op: K, args?: Partial<OpArgs[K]>): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, id, op, args: args ?? {} }) + "\n";
}

/** Encodes a success reply line. */
export function encodeOk(id: number | null, data: unknown): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, data }) + "\n";
}

/** Encodes a subscription event line. */
export function encodeEvent(id: number, data: SnapshotEvent): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, event: "snapshot", data }) + "\n";
}

/** Encodes an error reply line. */
export function encodeError(id: number | null, error: AdminError): string {
  return JSON.stringify({ v: PROTOCOL_VERSION, id, ok: false, error }) + "\n";
}

// --- decoding ---------------------------------------------------------------------------------------

function fail(id: number | null, code: AdminErrorCode, message: string): DecodeResult {
  return { ok: false, failure: { id, error: { code, message } } };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isId(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

type ArgsResult<K extends Op> = { ok: true; args: OpArgs[K] } | { ok: false; message: string };

const NO_ARGS = (): ArgsResult<never> => ({ ok: true, args: {} as never });

function intArg(
  a: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
  dflt?: number,
): number | string {
  const x = a[name];
  if (x === undefined && dflt !== undefined) return dflt;
  if (typeof x !== "number" || !Number.isSafeInteger(x)) return `${name} must be an integer`;
  if (x < min || x > max) return `${name} must be between ${min} and ${max}`;
  return x;
}

function boolArg(a: Record<string, unknown>, name: string): boolean | string {
  const x = a[name];
  if (x === undefined) return false;
  if (typeof x !== "boolean") return `${name} must be a boolean`;
  return x;
}

function targetArg(a: Record<string, unknown>): string | { error: string } {
  const t = a.target;
  if (typeof t !== "string") return { error: "target must be a string" };
  if (!isIpOrCidr(t)) return { error: `target "${t.slice(0, 60)}" is not an IP address or CIDR` };
  return t;
}

const ARG_PARSERS: { [K in Op]: (a: Record<string, unknown>) => ArgsResult<K> } = {
  hello: NO_ARGS,
  stats: NO_ARGS,
  conns: NO_ARGS,
  bans: NO_ARGS,
  reload: NO_ARGS,
  drain: NO_ARGS,
  metrics: NO_ARGS,
  unsubscribe: NO_ARGS,
  clients: (a) => {
    const limit = intArg(a, "limit", 1, MAX_CLIENTS_LIMIT, DEFAULT_CLIENTS_LIMIT);
    return typeof limit === "string" ? { ok: false, message: limit } : { ok: true, args: { limit } };
  },
  ban: (a) => {
    const target = targetArg(a);
    if (typeof target !== "string") return { ok: false, message: target.error };
    const ms = intArg(a, "ms", MIN_BAN_MS, MAX_BAN_MS);
    if (typeof ms === "string") return { ok: false, message: ms };
    const reason = a.reason ?? "operator";
    if (typeof reason !== "string") return { ok: false, message: "reason must be a string" };
    if (reason.length > MAX_REASON_CHARS) {
      return { ok: false, message: `reason must be at most ${MAX_REASON_CHARS} characters` };
    }
    // The reason is shown in tables and logs: control characters could forge lines or move the cursor.
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f]/.test(reason)) {
      return { ok: false, message: "reason must not contain control characters" };
    }
    return { ok: true, args: { target, ms, reason: reason === "" ? "operator" : reason } };
  },
  unban: (a) => {
    const target = targetArg(a);
    return typeof target === "string" ? { ok: true, args: { target } } : { ok: false, message: target.error };
  },
  kick: (a) => {
    const id = intArg(a, "id", 0, Number.MAX_SAFE_INTEGER);
    return typeof id === "string" ? { ok: false, message: id } : { ok: true, args: { id } };
  },
  subscribe: (a) => {
    const intervalMs = intArg(a, "intervalMs", MIN_SUBSCRIBE_INTERVAL_MS, MAX_SUBSCRIBE_INTERVAL_MS, 1000);
    if (typeof intervalMs === "string") return { ok: false, message: intervalMs };
    const conns = boolArg(a, "conns");
    if (typeof conns === "string") return { ok: false, message: conns };
    const bans = boolArg(a, "bans");
    if (typeof bans === "string") return { ok: false, message: bans };
    const clients = intArg(a, "clients", 0, MAX_CLIENTS_LIMIT, 0);
    if (typeof clients === "string") return { ok: false, message: clients };
    return { ok: true, args: { intervalMs, conns, bans, clients } };
  },
};

/**
 * Decodes and validates one request line (without its newline). Never throws: any problem becomes a
 * `DecodeFailure` carrying the request id when one could be read.
 */
export function decodeRequest(line: string): DecodeResult {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return fail(null, "BAD_JSON", "request is not valid JSON");
  }
  if (!isObject(msg)) return fail(null, "BAD_JSON", "request must be a JSON object");
  const id = isId(msg.id) ? msg.id : null;
  if (msg.v !== PROTOCOL_VERSION) {
    return fail(id, "BAD_VERSION", `protocol version must be ${PROTOCOL_VERSION}`);
  }
  if (id === null) return fail(null, "BAD_REQUEST", "id must be a non-negative integer");
  if (typeof msg.op !== "string") return fail(id, "BAD_REQUEST", "op must be a string");
  const op = msg.op as Op;
  if (!Object.hasOwn(ARG_PARSERS, op)) {
    return fail(id, "UNKNOWN_OP", `unknown op "${msg.op.slice(0, 40)}"; known: ${OPS.join(", ")}`);
  }
  const rawArgs = msg.args ?? {};
  if (!isObject(rawArgs)) return fail(id, "BAD_ARGS", "args must be an object");
  const parsed = (ARG_PARSERS[op] as (a: Record<string, unknown>) => ArgsResult<Op>)(rawArgs);
  if (!parsed.ok) return fail(id, "BAD_ARGS", `${op}: ${parsed.message}`);
  return { ok: true, request: { v: PROTOCOL_VERSION, id, op, args: parsed.args } as Request };
}

/** Decodes one server line; null when it is not a well-formed response (the client treats that as fatal). */
export function decodeResponse(line: string): Response | null {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isObject(msg) || msg.v !== PROTOCOL_VERSION) return null;
  if (!(msg.id === null || isId(msg.id))) return null;
  if (msg.ok === true) {
    if (!("data" in msg)) return null;
    if (msg.event !== undefined && msg.event !== "snapshot") return null;
    return msg as Response;
  }
  if (msg.ok === false) {
    const e = msg.error;
    if (!isObject(e) || typeof e.code !== "string" || typeof e.message !== "string") return null;
    return msg as Response;
  }
  return null;
}

// --- targets ----------------------------------------------------------------------------------------

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const H16 = /^[0-9a-fA-F]{1,4}$/;

function isIpv6(s: string): boolean {
  if (s.length > 45) return false;
  const halves = s.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string): string[] | null => {
    if (h === "") return [];
    const parts = h.split(":");
    // A trailing dotted quad stands for two groups (::ffff:1.2.3.4).
    const last = parts[parts.length - 1];
    const out: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && V4.test(last)) out.push("0", "0");
      else if (H16.test(p)) out.push(p);
      else return null;
    }
    return out;
  };
  const a = groups(halves[0]);
  const b = halves.length === 2 ? groups(halves[1]) : [];
  if (a === null || b === null) return false;
  if (halves.length === 2 && halves[0].includes(".")) return false;
  const n = a.length + b.length;
  return halves.length === 2 ? n <= 7 : n === 8;
}

/** Whether `s` is an IPv4/IPv6 address, optionally with a prefix length (`10.0.0.0/8`, `2001:db8::/32`). */
export function isIpOrCidr(s: string): boolean {
  const slash = s.indexOf("/");
  const addr = slash < 0 ? s : s.slice(0, slash);
  const bits = slash < 0 ? null : s.slice(slash + 1);
  const v4 = V4.test(addr);
  if (!v4 && !isIpv6(addr)) return false;
  if (bits === null) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (v4 ? 32 : 128);
}

// --- rates ------------------------------------------------------------------------------------------

export const ZERO_RATES: Readonly<Rates> = {
  windowMs: 0,
  requestsPerSec: 0,
  acceptsPerSec: 0,
  refusedPerSec: 0,
  bytesInPerSec: 0,
  bytesOutPerSec: 0,
  status429PerSec: 0,
};

function sumRefused(s: StatsSnapshot): number {
  let n = 0;
  for (const v of Object.values(s.refused)) n += v;
  return n;
}

/**
 * Per-second rates between two snapshots (as nginx's stub_status is read): counter differences over
 * the monotonic time between them. A counter that went backwards (server restarted) yields 0, never a
 * negative rate; a zero or negative window yields `ZERO_RATES`.
 */
export function deriveRates(prev: StatsSnapshot, cur: StatsSnapshot): Rates {
  const windowMs = cur.atMs - prev.atMs;
  if (!(windowMs > 0)) return { ...ZERO_RATES };
  const per = (a: number, b: number) => Math.max(0, b - a) * 1000 / windowMs;
  return {
    windowMs,
    requestsPerSec: per(prev.requests, cur.requests),
    acceptsPerSec: per(prev.accepted, cur.accepted),
    refusedPerSec: per(sumRefused(prev), sumRefused(cur)),
    bytesInPerSec: per(prev.bytesIn, cur.bytesIn),
    bytesOutPerSec: per(prev.bytesOut, cur.bytesOut),
    status429PerSec: per(prev.status429, cur.status429),
  };
}

/**
 * A reload's answer in words, for the server's log and `vento-admin reload` alike: one line for what took
 * effect and, only when there is any, one for what waits for a restart. Each key appears once.
 */
export function describeReload(r: { applied: readonly string[]; needsRestart: readonly string[] }): string[] {
  const applied = [...new Set(r.applied)];
  const waiting = [...new Set(r.needsRestart)];
  const lines = [
    applied.length > 0
      ? `reloaded: applied ${applied.join(", ")}`
      : waiting.length > 0
      ? "reloaded: nothing could be applied live"
      : "reloaded: no setting changed",
  ];
  if (waiting.length > 0) lines.push(`needs a restart to apply: ${waiting.join(", ")}`);
  return lines;
}
