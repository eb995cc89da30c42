/**
 * Server-wide counters and gauges. Plain numeric fields mutated in place by the data path (O(1), no
 * allocation); `snapshot()` copies them for the admin channel, which derives rates from the difference
 * of two snapshots (as nginx's stub_status).
 *
 * Pure; no Deno APIs.
 */

/** Why a connection was refused at accept (before any byte was read). */
export type RefuseReason =
  | "banned"
  | "conn_rate"
  | "client_cap"
  | "global_cap"
  | "table_full"
  | "shutting_down";

export const REFUSE_REASONS: readonly RefuseReason[] = [
  "banned",
  "conn_rate",
  "client_cap",
  "global_cap",
  "table_full",
  "shutting_down",
];

/** Why an app request failed: each was answered 500 (or 503 for `timeout`) with one log line. */
export type AppFailure = "exception" | "timeout" | "bad_response";

export const APP_FAILURES: readonly AppFailure[] = ["exception", "timeout", "bad_response"];

/** The `appRequests` key of requests that reached the app through APP_FALLBACK (no prefix). */
export const APP_FALLBACK_ROUTE = "(fallback)";

/** A copy of every counter and gauge at one instant. */
export interface StatsSnapshot {
  /** Monotonic milliseconds when taken (for rates). */
  atMs: number;
  /** Wall-clock milliseconds when taken. */
  wallMs: number;
  accepted: number;
  refused: Record<RefuseReason, number>;
  /** Connections open now (all states). */
  open: number;
  /** Of those, waiting for a next request (keep-alive) or their first byte. */
  idle: number;
  /** Of those, reading a request or writing a response. */
  active: number;
  requests: number;
  /** Responses by status class: index 1..5 for 1xx..5xx (index 0 unused). */
  responses: [number, number, number, number, number, number];
  status429: number;
  status408: number;
  protocolErrors: number;
  bansAdded: number;
  bansExpired: number;
  bansActive: number;
  guardTableSize: number;
  guardTableFull: number;
  bytesIn: number;
  bytesOut: number;
  /** Peers that vanished mid-exchange (reset, broken pipe, EOF inside a request). */
  peerResets: number;
  /** Connections closed by a deadline (header, body, send, idle). */
  timeouts: number;
  /** 1 while GUARD_STORE (Redis) is configured but unreachable or slow: limits are per instance. */
  guardStoreDegraded: number;
  /** Access-log lines not written: the disk fell too far behind or a write failed (full, gone). */
  accessLogDropped: number;
  /** Requests handed to the app, by APP_PATHS prefix (or APP_FALLBACK_ROUTE). */
  appRequests: Record<string, number>;
  /** App requests that failed, by why. */
  appFailures: Record<AppFailure, number>;
}

/** The live counters. Fields are public for speed on the hot path; only `src/` code mutates them. */
export class Stats {
  accepted = 0;
  refused: Record<RefuseReason, number> = {
    banned: 0,
    conn_rate: 0,
    client_cap: 0,
    global_cap: 0,
    table_full: 0,
    shutting_down: 0,
  };
  open = 0;
  idle = 0;
  requests = 0;
  responses: [number, number, number, number, number, number] = [0, 0, 0, 0, 0, 0];
  status429 = 0;
  status408 = 0;
  protocolErrors = 0;
  bansAdded = 0;
  bansExpired = 0;
  bansActive = 0;
  guardTableSize = 0;
  guardTableFull = 0;
  bytesIn = 0;
  bytesOut = 0;
  peerResets = 0;
  timeouts = 0;
  guardStoreDegraded = 0;
  accessLogDropped = 0;
  /** Keys are the configured prefixes (a handful), never anything a client sends. */
  appRequests: Record<string, number> = {};
  appFailures: Record<AppFailure, number> = { exception: 0, timeout: 0, bad_response: 0 };

  /** Counts one request handed to the app under `route` (its prefix, or APP_FALLBACK_ROUTE). */
  countAppRequest(route: string): void {
    this.appRequests[route] = (this.appRequests[route] ?? 0) + 1;
  }

  /** Counts one response by its status. */
  countResponse(status: number): void {
    const cls = (status / 100) | 0;
    if (cls >= 1 && cls <= 5) this.responses[cls]++;
    if (status === 429) this.status429++;
    else if (status === 408) this.status408++;
  }

  /** A consistent copy of every field. */
  snapshot(atMs: number, wallMs: number): StatsSnapshot {
    return {
      atMs,
      wallMs,
      accepted: this.accepted,
      refused: { ...this.refused },
      open: this.open,
      idle: this.idle,
      active: this.open - this.idle,
      requests: this.requests,
      responses: [...this.responses],
      status429: this.status429,
      status408: this.status408,
      protocolErrors: this.protocolErrors,
      bansAdded: this.bansAdded,
      bansExpired: this.bansExpired,
      bansActive: this.bansActive,
      guardTableSize: this.guardTableSize,
      guardTableFull: this.guardTableFull,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      peerResets: this.peerResets,
      timeouts: this.timeouts,
      guardStoreDegraded: this.guardStoreDegraded,
      accessLogDropped: this.accessLogDropped,
      appRequests: { ...this.appRequests },
      appFailures: { ...this.appFailures },
    };
  }
}
