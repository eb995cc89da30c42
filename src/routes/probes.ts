/**
 * The operational probes over HTTP: `HEALTH_PATH` (200 while serving, 503 while draining) and
 * `METRICS_PATH` (the Prometheus text of the admin `metrics` op). Both are off by default and answer only
 * peers in their own allowlist (loopback by default); to anyone else the path is an ordinary one, so a probe
 * path reveals nothing to the outside. Answers are `no-store` and marked `unlogged` (not site traffic).
 *
 * Pure: the server's state comes in through `ProbeSource`; no Deno APIs.
 */

import type { Exchange } from "../http/handler.ts";
import { bytesReply, type Reply, textReply } from "../http/response.ts";
import { CidrSet, IpAddr } from "../core/cidr.ts";
import { parsePeerIp } from "../guard/client_key.ts";
import type { Config } from "../config/config.ts";

/** What the probes read from the running server. */
export interface ProbeSource {
  /** False once shutdown (drain) began. */
  serving(): boolean;
  /**
   * Prometheus text exposition 0.0.4, as the admin `metrics` op gives it (with WORKERS > 1 it comes from
   * the supervisor, hence the promise); null when it cannot be had (then 503).
   */
  metrics(): string | null | Promise<string | null>;
}

/** The settings the probes read (the live config: a reload reaches them). */
export type ProbeOptions = Pick<
  Config,
  "healthPath" | "healthAllowlist" | "metricsPath" | "metricsAllowlist"
>;

const encoder = new TextEncoder();
const NO_STORE: ReadonlyArray<readonly [string, string]> = [["Cache-Control", "no-store"]];
const ALLOW: ReadonlyArray<readonly [string, string]> = [["Allow", "GET, HEAD"], ...NO_STORE];
/** Prometheus' text format, version 0.0.4. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function unlogged(reply: Reply): Reply {
  reply.unlogged = true;
  return reply;
}

/** The CIDR set parsed from a list, re-parsed only when a reload replaced the list. */
class AllowCache {
  #list: readonly string[] | null = null;
  #set: CidrSet = new CidrSet([]);

  get(list: readonly string[]): CidrSet {
    if (list !== this.#list) {
      this.#set = new CidrSet(list);
      this.#list = list;
    }
    return this.#set;
  }
}

function metricsReply(text: string | null): Reply {
  if (text === null) return unlogged(textReply(503, [["Retry-After", "1"], ...NO_STORE]));
  return unlogged(bytesReply(200, METRICS_CONTENT_TYPE, encoder.encode(text), NO_STORE));
}

export class Probes {
  readonly #options: ProbeOptions;
  readonly #source: ProbeSource;
  readonly #health = new AllowCache();
  readonly #metrics = new AllowCache();
  readonly #addr = new IpAddr();

  constructor(options: ProbeOptions, source: ProbeSource) {
    this.#options = options;
    this.#source = source;
  }

  /**
   * The probe's answer when `pathOnly` (the request path without its query) is a probe path and the peer
   * is allowed, else null (the request goes on to the ordinary routes).
   */
  answer(ex: Exchange, pathOnly: string): Reply | Promise<Reply> | null {
    const o = this.#options;
    const isHealth = o.healthPath !== "off" && pathOnly === o.healthPath;
    const isMetrics = !isHealth && o.metricsPath !== "off" && pathOnly === o.metricsPath;
    if (!isHealth && !isMetrics) return null;
    const allow = isHealth ? this.#health.get(o.healthAllowlist) : this.#metrics.get(o.metricsAllowlist);
    if (!parsePeerIp(ex.remote, this.#addr) || !allow.contains(this.#addr)) return null;
    const method = ex.head.method;
    if (method !== "GET" && method !== "HEAD") return unlogged(textReply(405, ALLOW));
    if (isHealth) {
      const serving = this.#source.serving();
      const body = encoder.encode(serving ? "ok\n" : "draining\n");
      return unlogged(bytesReply(serving ? 200 : 503, "text/plain; charset=utf-8", body, NO_STORE));
    }
    const text = this.#source.metrics();
    return text instanceof Promise ? text.then(metricsReply) : metricsReply(text);
  }
}
