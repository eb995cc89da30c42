/**
 * The one-shot `vento-admin` commands (stats, conns, clients, bans, ban, unban, kick, reload, drain,
 * metrics): each sends one request and prints either an aligned table for humans or, with `--json`,
 * the raw data for scripts. Also finds the socket the way the server does (ADMIN_SOCKET in vento.conf,
 * resolved against the conf's folder).
 *
 * Exit codes are decided here and nowhere else: 0 ok, 1 the server said no or is not there,
 * 2 usage (bad arguments, unreadable config).
 */

import { dirname, isAbsolute, resolve } from "node:path";
import { DEFAULT_CONFIG, formatConfigError, parseConfig } from "../src/config.ts";
import type { ConnInfo } from "../src/net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../src/guard/views.ts";
import type { HelloData, StatsReport } from "../src/admin/protocol.ts";
import { APP_FAILURES, REFUSE_REASONS } from "../src/admin/protocol.ts";
import { AdminClient, AdminGone, AdminRefused, AdminUnavailable } from "./client.ts";
import { type Column, formatBytes, formatDuration, formatMBps, formatRate, table } from "./format.ts";

export const EXIT_OK = 0;
/** The server refused, failed, or is not running. */
export const EXIT_REFUSED = 1;
/** Bad command line or configuration. */
export const EXIT_USAGE = 2;

/** A failure already phrased for the user, with its exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = "CliError";
  }
}

/** Finds the admin socket: `--socket`, else ADMIN_SOCKET of the config (default ./vento.conf). */
export async function resolveSocketPath(opts: { socket?: string; config?: string }): Promise<string> {
  if (opts.socket !== undefined) return resolve(opts.socket);
  const confPath = resolve(opts.config ?? "vento.conf");
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(confPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || opts.config !== undefined) {
      throw new CliError(`cannot read ${confPath}: ${e instanceof Error ? e.message : e}`, EXIT_USAGE);
    }
  }
  let socket = DEFAULT_CONFIG.adminSocket;
  if (text !== null) {
    const parsed = parseConfig(text);
    if (!parsed.ok) {
      const lines = parsed.errors.map((e) => formatConfigError(confPath, e));
      throw new CliError(lines.join("\n"), EXIT_USAGE);
    }
    socket = parsed.config.adminSocket;
  }
  if (socket === "off") {
    throw new CliError(
      `the admin socket is off in ${confPath} (ADMIN_SOCKET=off); pass --socket PATH`,
      EXIT_USAGE,
    );
  }
  return isAbsolute(socket) ? socket : resolve(dirname(confPath), socket);
}

/** Connects, runs `body`, closes; maps every failure to a message and exit code. */
export async function withClient(
  socketPath: string,
  body: (client: AdminClient) => Promise<string>,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  let client: AdminClient;
  try {
    client = await AdminClient.connect(socketPath);
  } catch (e) {
    return { exitCode: EXIT_REFUSED, stdout: "", stderr: unavailableMessage(e, socketPath) };
  }
  try {
    return { exitCode: EXIT_OK, stdout: await body(client), stderr: "" };
  } catch (e) {
    if (e instanceof AdminRefused) {
      return { exitCode: EXIT_REFUSED, stdout: "", stderr: `vento-admin: ${e.error.code}: ${e.message}\n` };
    }
    if (e instanceof AdminGone) {
      return {
        exitCode: EXIT_REFUSED,
        stdout: "",
        stderr: "vento-admin: the server closed the connection\n",
      };
    }
    if (e instanceof CliError) {
      return { exitCode: e.exitCode, stdout: "", stderr: `vento-admin: ${e.message}\n` };
    }
    throw e;
  } finally {
    client.close();
    await client.closed;
  }
}

/** The one sentence printed when no server answers. */
export function unavailableMessage(e: unknown, path: string): string {
  const why = e instanceof AdminUnavailable ? e.reason : e instanceof Error ? e.message : String(e);
  return `vento-admin: no Vento server is listening on ${path} (${why}); start one with \`deno task start\`` +
    ` or point to its socket with --socket PATH.\n`;
}

const json = (data: unknown) => JSON.stringify(data, null, 2) + "\n";
const lines = (ls: string[]) => ls.join("\n") + "\n";

// --- tables -----------------------------------------------------------------------------------------

/** `stats` for humans: one labelled line per family. */
export function formatStats(r: StatsReport, hello: HelloData | null): string[] {
  const s = r.snapshot;
  const rt = r.rates;
  const rows: [string, string][] = [];
  if (hello !== null) {
    rows.push(["server", `Vento ${hello.version}  pid ${hello.pid}  up ${formatDuration(hello.uptimeMs)}`]);
    rows.push(["listen", hello.listen.join(", ") || "-"]);
  }
  rows.push(
    ["connections", `open ${s.open}/${r.maxConns}  active ${s.active}  idle ${s.idle}`],
    ["accepted", `${s.accepted}  (${formatRate(rt.acceptsPerSec)}/s)`],
    ["refused", REFUSE_REASONS.map((k) => `${k} ${s.refused[k]}`).join("  ")],
    ["requests", `${s.requests}  (${formatRate(rt.requestsPerSec)}/s)`],
    ["responses", [1, 2, 3, 4, 5].map((c) => `${c}xx ${s.responses[c]}`).join("  ")],
    ["limited", `429 ${s.status429}  408 ${s.status408}  protocol errors ${s.protocolErrors}`],
    ["closed early", `timeouts ${s.timeouts}  peer resets ${s.peerResets}`],
    ["bans", `active ${s.bansActive}  added ${s.bansAdded}  expired ${s.bansExpired}`],
    ["guard table", `${s.guardTableSize} clients  full ${s.guardTableFull}`],
    ...(s.guardStoreDegraded > 0
      ? [["guard store", "DEGRADED: shared store unreachable, limiting per instance"] as [string, string]]
      : []),
    ...(Object.keys(s.appRequests ?? {}).length > 0
      ? [[
        "app",
        Object.entries(s.appRequests).map(([p, n]) => `${p} ${n}`).join("  ") +
        `  failures ${APP_FAILURES.map((k) => `${k} ${s.appFailures[k]}`).join("  ")}`,
      ] as [string, string]]
      : []),
    ["traffic in", `${formatBytes(s.bytesIn)}  (${formatMBps(rt.bytesInPerSec)} MB/s)`],
    ["traffic out", `${formatBytes(s.bytesOut)}  (${formatMBps(rt.bytesOutPerSec)} MB/s)`],
  );
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
}

export const CONN_COLUMNS: readonly Column<ConnInfo>[] = [
  { title: "ID", align: "right", value: (c) => String(c.id) },
  {
    title: "REMOTE",
    value: (c) => (c.remote.includes(":") ? `[${c.remote}]:${c.remotePort}` : `${c.remote}:${c.remotePort}`),
  },
  { title: "STATE", value: (c) => c.state },
  { title: "AGE", align: "right", value: (c) => formatDuration(c.ageMs) },
  { title: "REQS", align: "right", value: (c) => String(c.requests) },
  { title: "IN", align: "right", value: (c) => formatBytes(c.bytesIn) },
  { title: "OUT", align: "right", value: (c) => formatBytes(c.bytesOut) },
  { title: "REQUEST", value: (c) => c.request },
];

export const CLIENT_COLUMNS: readonly Column<ClientInfo>[] = [
  { title: "CLIENT", value: (c) => c.key },
  { title: "CONNS", align: "right", value: (c) => String(c.conns) },
  { title: "REQ/S", align: "right", value: (c) => formatRate(c.requestRatePerSec) },
  { title: "REQUESTS", align: "right", value: (c) => String(c.requests) },
  { title: "VIOLATIONS", align: "right", value: (c) => String(c.violations) },
  { title: "LIMITED", value: (c) => (c.limited ? "yes" : "no") },
];

export const BAN_COLUMNS: readonly Column<BanInfo>[] = [
  { title: "TARGET", value: (b) => b.key },
  { title: "LEFT", align: "right", value: (b) => formatDuration(b.remainingMs) },
  { title: "OFFENCES", align: "right", value: (b) => String(b.offences) },
  { title: "REASON", value: (b) => b.reason },
];

function tableOrNone<T>(cols: readonly Column<T>[], rows: readonly T[], none: string): string[] {
  return rows.length === 0 ? [none] : table(cols, rows);
}

// --- commands ---------------------------------------------------------------------------------------

/** Global flags every command sees. */
export interface GlobalOpts {
  json: boolean;
}

export const commands = {
  async stats(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("stats");
    if (g.json) return json(r);
    return lines(formatStats(r, await c.request("hello")));
  },
  async conns(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("conns");
    return g.json ? json(r) : lines(tableOrNone(CONN_COLUMNS, r, "no open connections"));
  },
  async clients(c: AdminClient, g: GlobalOpts, limit: number): Promise<string> {
    const r = await c.request("clients", { limit });
    return g.json ? json(r) : lines(tableOrNone(CLIENT_COLUMNS, r, "no clients tracked"));
  },
  async bans(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("bans");
    return g.json ? json(r) : lines(tableOrNone(BAN_COLUMNS, r, "no bans"));
  },
  async ban(c: AdminClient, g: GlobalOpts, target: string, ms: number, reason: string): Promise<string> {
    const r = await c.request("ban", { target, ms, reason });
    return g.json ? json(r) : `banned ${r.target} for ${formatDuration(r.ms)}\n`;
  },
  async unban(c: AdminClient, g: GlobalOpts, target: string): Promise<string> {
    const r = await c.request("unban", { target });
    return g.json ? json(r) : `unbanned ${r.target}\n`;
  },
  async kick(c: AdminClient, g: GlobalOpts, id: number): Promise<string> {
    const r = await c.request("kick", { id });
    return g.json ? json(r) : `closed connection ${r.id}\n`;
  },
  async reload(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("reload");
    if (g.json) return json(r);
    const out = [`reloaded: ${r.applied.length ? r.applied.join(", ") : "nothing changed"}`];
    if (r.needsRestart.length) out.push(`needs a restart to apply: ${r.needsRestart.join(", ")}`);
    return lines(out);
  },
  async drain(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("drain");
    return g.json
      ? json(r)
      : "draining: the server stops accepting and exits when in-flight requests finish\n";
  },
  async metrics(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("metrics");
    return g.json ? json(r) : r;
  },
};
