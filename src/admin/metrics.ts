/**
 * Renders a stats snapshot in the Prometheus text exposition format 0.0.4 (the `metrics` op):
 * `# HELP` / `# TYPE` per family, counters named `vento_*_total`, gauges without the suffix,
 * refusals by `reason` label and responses by `class` label.
 *
 * Pure: takes a snapshot, returns text; no Deno APIs.
 */

import { APP_FAILURES, REFUSE_REASONS, type StatsSnapshot } from "../stats/stats.ts";

type Kind = "counter" | "gauge";

interface Family {
  name: string;
  kind: Kind;
  help: string;
  samples: [labels: string, value: number][];
}

function one(name: string, kind: Kind, help: string, value: number): Family {
  return { name, kind, help, samples: [["", value]] };
}

/** The families exposed, in a stable order. */
function families(s: StatsSnapshot, maxConns: number, uptimeMs: number): Family[] {
  // Prefixes come from vento.conf (no quotes or backslashes); sorted for a stable order.
  const appRequests: [string, number][] = Object.keys(s.appRequests ?? {}).sort().map((p) => [
    `prefix="${p}"`,
    s.appRequests[p],
  ]);
  return [
    one("vento_uptime_seconds", "gauge", "Seconds since the server started.", uptimeMs / 1000),
    one("vento_connections_accepted_total", "counter", "Connections accepted.", s.accepted),
    {
      name: "vento_connections_refused_total",
      kind: "counter",
      help: "Connections refused at accept, by reason.",
      samples: REFUSE_REASONS.map((r) => [`reason="${r}"`, s.refused[r]]),
    },
    one("vento_connections_open", "gauge", "Connections open now.", s.open),
    one("vento_connections_idle", "gauge", "Open connections waiting for a request.", s.idle),
    one(
      "vento_connections_active",
      "gauge",
      "Open connections reading a request or writing a response.",
      s.active,
    ),
    one("vento_connections_max", "gauge", "Connection cap (MAX_CONNS).", maxConns),
    one("vento_requests_total", "counter", "Requests started.", s.requests),
    {
      name: "vento_responses_total",
      kind: "counter",
      help: "Responses sent, by status class.",
      samples: [1, 2, 3, 4, 5].map((c) => [`class="${c}xx"`, s.responses[c]]),
    },
    one("vento_responses_429_total", "counter", "Requests refused by the rate limiter.", s.status429),
    one("vento_responses_408_total", "counter", "Requests cut by a deadline with 408.", s.status408),
    one("vento_protocol_errors_total", "counter", "Requests rejected as malformed HTTP.", s.protocolErrors),
    one("vento_bans_added_total", "counter", "Bans added (automatic and operator).", s.bansAdded),
    one("vento_bans_expired_total", "counter", "Bans that ran out.", s.bansExpired),
    one("vento_bans_active", "gauge", "Bans in force now.", s.bansActive),
    one("vento_guard_table_clients", "gauge", "Clients tracked by the guard.", s.guardTableSize),
    one(
      "vento_guard_table_full_total",
      "counter",
      "Clients refused because the guard table was full.",
      s.guardTableFull,
    ),
    one("vento_received_bytes_total", "counter", "Bytes read from clients.", s.bytesIn),
    one("vento_sent_bytes_total", "counter", "Bytes written to clients.", s.bytesOut),
    one("vento_peer_resets_total", "counter", "Peers that vanished mid-exchange.", s.peerResets),
    one("vento_timeouts_total", "counter", "Connections closed by a deadline.", s.timeouts),
    one(
      "vento_access_log_dropped_total",
      "counter",
      "Access-log lines not written (the disk fell behind, or a write failed).",
      s.accessLogDropped ?? 0,
    ),
    one(
      "vento_guard_store_degraded",
      "gauge",
      "1 while the shared guard store (Redis) is unreachable and limits are per instance.",
      s.guardStoreDegraded,
    ),
    // Only once the app has had a request: a family without samples is of no use to a scraper.
    ...(appRequests.length === 0 ? [] : [{
      name: "vento_app_requests_total",
      kind: "counter" as const,
      help: "Requests handed to the app (APP), by route prefix.",
      samples: appRequests,
    }]),
    {
      name: "vento_app_failures_total",
      kind: "counter",
      help: "App requests answered 500 (exception, bad_response) or 503 (timeout).",
      samples: APP_FAILURES.map((r) => [`reason="${r}"`, s.appFailures?.[r] ?? 0]),
    },
  ];
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** The exposition text (ends with a newline), for `Content-Type: text/plain; version=0.0.4`. */
export function formatMetrics(s: StatsSnapshot, maxConns: number, uptimeMs: number): string {
  const out: string[] = [];
  for (const f of families(s, maxConns, uptimeMs)) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.kind}`);
    for (const [labels, value] of f.samples) {
      out.push(`${f.name}${labels === "" ? "" : `{${labels}}`} ${formatValue(value)}`);
    }
  }
  return out.join("\n") + "\n";
}
