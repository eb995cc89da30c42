/**
 * The one-shot `vento-admin` commands (stats, conns, clients, bans, ban, unban, kick, reload, drain,
 * metrics): each sends one request and prints either an aligned table for humans or, with `--json`,
 * the raw data for scripts. Also finds the socket the way the server does (ADMIN_SOCKET in vento.conf,
 * resolved against the conf's folder).
 *
 * Exit codes are decided here and nowhere else, one per outcome (see `EXIT_CODES`).
 */

import { dirname, isAbsolute, resolve } from "node:path";
import { DEFAULT_CONFIG, unquoteValue } from "../src/config/config.ts";
import type { ConnInfo } from "../src/net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../src/guard/views.ts";
import type { HelloData, StatsReport } from "../src/admin/protocol.ts";
import { APP_FAILURES, describeReload, REFUSE_REASONS } from "../src/admin/protocol.ts";
import { AdminClient, AdminForbidden, AdminGone, AdminRefused, AdminUnavailable } from "./client.ts";
import { type Column, formatBytes, formatDuration, formatMBps, formatRate, table } from "./format.ts";
import { errorMessage } from "../src/core/errors.ts";

export const EXIT_OK = 0;
/** The server answered and said no (a refused ban, a reload it refused, an unknown connection id). */
export const EXIT_REFUSED = 1;
/** Bad command line. */
export const EXIT_USAGE = 2;
/** No server answers on the socket (no socket file, refused, or the connection was lost). */
export const EXIT_NO_SERVER = 3;
/** The socket exists but this user (or this program's Deno permissions) may not use it. */
export const EXIT_PERMISSION = 4;
/** The socket cannot be found: the config file is unreadable, or ADMIN_SOCKET is off or invalid. */
export const EXIT_NO_SOCKET = 5;

/** Every exit code with its meaning, for `--help` (and the docs that copy it). */
export const EXIT_CODES: readonly [number, string][] = [
  [EXIT_OK, "done"],
  [EXIT_REFUSED, "the server refused (e.g. ban of an allowlisted address, reload of a bad config)"],
  [EXIT_USAGE, "bad command line"],
  [EXIT_NO_SERVER, "no server answers on the admin socket"],
  [EXIT_PERMISSION, "permission denied on the admin socket"],
  [EXIT_NO_SOCKET, "no admin socket to use: config unreadable, or ADMIN_SOCKET off or invalid"],
];

/** The stable code of each failure, as `--json` prints it. */
const ERROR_CODES: Record<number, string> = {
  [EXIT_REFUSED]: "REFUSED",
  [EXIT_USAGE]: "USAGE",
  [EXIT_NO_SERVER]: "NO_SERVER",
  [EXIT_PERMISSION]: "PERMISSION",
  [EXIT_NO_SOCKET]: "NO_SOCKET",
};

/** A failure already phrased for the user, with its exit code (and the server's code, when it refused). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number, readonly code: string = ERROR_CODES[exitCode]) {
    super(message);
    this.name = "CliError";
  }
}

/**
 * A failure as printed: one `vento-admin: …` line on stderr, or, under `--json`, one JSON object on stdout
 * (`{"ok":false,"error":{"code","message","exitCode"}}`) so a script reads one stream in one format.
 */
export function formatFailure(e: CliError, json: boolean): { stdout: string; stderr: string } {
  if (!json) return { stdout: "", stderr: `vento-admin: ${e.message}\n` };
  const error = { code: e.code, message: e.message, exitCode: e.exitCode };
  return { stdout: JSON.stringify({ ok: false, error }) + "\n", stderr: "" };
}

/**
 * Finds the admin socket: `--socket`, else ADMIN_SOCKET of the config (default ./vento.conf), resolved
 * against the conf's folder. Reads only the ADMIN_SOCKET line: the rest of the file may be broken (it is
 * when an operator most needs this tool), and is the server's business.
 */
export async function resolveSocketPath(opts: { socket?: string; config?: string }): Promise<string> {
  if (opts.socket !== undefined) return resolve(opts.socket);
  const confPath = resolve(opts.config ?? "vento.conf");
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(confPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && opts.config === undefined) {
      text = null; // no vento.conf here: the default socket
    } else {
      const why = e instanceof Deno.errors.NotFound ? "no such file" : errorMessage(e);
      throw new CliError(`cannot read ${confPath} (${why}); pass --socket PATH`, EXIT_NO_SOCKET);
    }
  }
  let socket = DEFAULT_CONFIG.adminSocket;
  if (text !== null) {
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const m = /^\s*ADMIN_SOCKET\s*=(.*)$/.exec(lines[i]);
      if (m === null) continue;
      const v = unquoteValue("ADMIN_SOCKET", m[1]);
      if ("error" in v || v.value === "") {
        const why = "error" in v ? v.error : "ADMIN_SOCKET must not be empty";
        throw new CliError(`${confPath}:${i + 1}: ${why}; fix it or pass --socket PATH`, EXIT_NO_SOCKET);
      }
      socket = v.value; // the last one, as the server would refuse a repeat anyway
    }
  }
  if (socket === "off") {
    throw new CliError(
      `the admin socket is off in ${confPath} (ADMIN_SOCKET=off); pass --socket PATH`,
      EXIT_NO_SOCKET,
    );
  }
  return isAbsolute(socket) ? socket : resolve(dirname(confPath), socket);
}

/** Connects, runs `body`, closes; maps every failure to a message and exit code. */
export async function withClient(
  socketPath: string,
  body: (client: AdminClient) => Promise<string>,
  json = false,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const fail = (e: CliError) => ({ exitCode: e.exitCode, ...formatFailure(e, json) });
  let client: AdminClient;
  try {
    client = await AdminClient.connect(socketPath);
  } catch (e) {
    return fail(connectFailure(e, socketPath));
  }
  try {
    return { exitCode: EXIT_OK, stdout: await body(client), stderr: "" };
  } catch (e) {
    if (e instanceof AdminRefused) {
      return fail(new CliError(`${e.error.code}: ${e.message}`, EXIT_REFUSED, e.error.code));
    }
    if (e instanceof AdminGone) return fail(new CliError("the server closed the connection", EXIT_NO_SERVER));
    if (e instanceof CliError) return fail(e);
    throw e;
  } finally {
    client.close();
    await client.closed;
  }
}

/** Why connecting failed, as a `CliError`: a permission problem is never reported as a missing server. */
export function connectFailure(e: unknown, path: string): CliError {
  if (e instanceof AdminForbidden) {
    return new CliError(
      e.byRuntime
        ? `this vento-admin may not use ${path}: its Deno permissions do not cover that path (${e.reason}); ` +
          `run it with --allow-read and --allow-write for ${path}, e.g. \`deno run --allow-net ` +
          `--allow-read=${path} --allow-write=${path} dist/vento-admin.js --socket ${path} …\``
        : `permission denied on ${path}: the socket is mode 0600; run vento-admin as the user Vento runs as ` +
          `(or root)`,
      EXIT_PERMISSION,
    );
  }
  return new CliError(unavailableMessage(e, path), EXIT_NO_SERVER);
}

/** The one sentence printed when no server answers. */
export function unavailableMessage(e: unknown, path: string): string {
  const why = e instanceof AdminUnavailable ? e.reason : errorMessage(e);
  return `no Vento server is listening on ${path} (${why}); start one (\`deno task start\`, or the ` +
    `vento service) or point to its socket with --socket PATH.`;
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
    ["access log", `dropped ${s.accessLogDropped ?? 0} lines`],
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

/**
 * `stats --json` for scripts: the protocol's `responses` array (indexed by status class) becomes
 * `{"1xx": n, …, "5xx": n}`, so every number has a name.
 */
export function labelledStats(r: StatsReport): unknown {
  const responses: Record<string, number> = {};
  for (let c = 1; c <= 5; c++) responses[`${c}xx`] = r.snapshot.responses[c] ?? 0;
  return { ...r, snapshot: { ...r.snapshot, responses } };
}

// --- commands ---------------------------------------------------------------------------------------

/** Global flags every command sees. */
export interface GlobalOpts {
  json: boolean;
}

export const commands = {
  async stats(c: AdminClient, g: GlobalOpts): Promise<string> {
    const r = await c.request("stats");
    if (g.json) return json(labelledStats(r));
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
    return lines(describeReload(r));
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
