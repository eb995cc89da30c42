/**
 * The `top` dashboard as a pure function: `render(state, size)` → exactly `size.rows` lines, each at
 * most `size.cols` visible columns (SGR colour codes aside). Also owns the dashboard's state type and
 * the view helpers the key handler shares (filtered, sorted connections; column layout).
 *
 * Pure: no Deno APIs, no clock (the time shown is `state.nowWallMs`), never throws on any data or size.
 */

import type { ConnInfo } from "../src/net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../src/guard/views.ts";
import { type HelloData, type Rates, type StatsReport, ZERO_RATES } from "../src/admin/protocol.ts";
import { fit, formatBytes, formatDuration, formatMBps, formatRate, truncate } from "./format.ts";

/** Columns the connections table can be sorted by, in the order `s` cycles through them. */
export const SORT_KEYS = ["age", "id", "remote", "state", "requests", "in", "out"] as const;
export type SortKey = typeof SORT_KEYS[number];

/** Samples kept for the sparklines (10 minutes at 1 Hz). */
export const HISTORY_SAMPLES = 600;

/** Everything the dashboard shows; the `top` loop owns it, the key handler updates it. */
export interface TopState {
  socketPath: string;
  hello: HelloData | null;
  /** Wall time when `hello` was received (uptime advances from there). */
  helloAtWallMs: number;
  connected: boolean;
  /** Why we are disconnected (shown in the frame while retrying). */
  problem: string;
  nowWallMs: number;
  stats: StatsReport | null;
  /** Rates between the last two snapshots received. */
  rates: Rates;
  /** req/s samples, oldest first, at most `HISTORY_SAMPLES`. */
  reqHistory: number[];
  /** Bytes/s out samples, oldest first. */
  bytesOutHistory: number[];
  conns: ConnInfo[];
  bans: BanInfo[];
  clients: ClientInfo[];
  sort: SortKey;
  focus: "conns" | "bans";
  selectedConnId: number | null;
  selectedBanKey: string | null;
  filter: string;
  filterEditing: boolean;
  help: boolean;
  /** Result of the last action ("banned 203.0.113.9 for 10m"), shown in the footer. */
  message: string;
  /** A ban or kick asked for and waiting for `y` (its question is the footer's message). */
  confirm: { kind: "ban"; target: string; ms: number } | { kind: "kick"; id: number } | null;
}

/** A fresh state before the first snapshot. */
export function initialState(socketPath: string, nowWallMs: number): TopState {
  return {
    socketPath,
    hello: null,
    helloAtWallMs: nowWallMs,
    connected: false,
    problem: "connecting…",
    nowWallMs,
    stats: null,
    rates: { ...ZERO_RATES },
    reqHistory: [],
    bytesOutHistory: [],
    conns: [],
    bans: [],
    clients: [],
    sort: "age",
    focus: "conns",
    selectedConnId: null,
    selectedBanKey: null,
    filter: "",
    filterEditing: false,
    help: false,
    message: "",
    confirm: null,
  };
}

export interface Size {
  cols: number;
  rows: number;
}

export interface RenderOptions {
  /** SGR attributes (bold titles, reverse-video selection). Off for `--once` into a pipe. */
  color: boolean;
}

const BOLD = "\x1b[1m";
const REVERSE = "\x1b[7m";
const RESET = "\x1b[0m";
const SPARK = "▁▂▃▄▅▆▇█";

// --- views shared with the key handler --------------------------------------------------------------

function remoteText(c: ConnInfo): string {
  return c.remote.includes(":") ? `[${c.remote}]:${c.remotePort}` : `${c.remote}:${c.remotePort}`;
}

const COMPARE: Record<SortKey, (a: ConnInfo, b: ConnInfo) => number> = {
  age: (a, b) => b.ageMs - a.ageMs || a.id - b.id,
  id: (a, b) => a.id - b.id,
  remote: (a, b) => (a.remote < b.remote ? -1 : a.remote > b.remote ? 1 : a.remotePort - b.remotePort),
  state: (a, b) => (a.state < b.state ? -1 : a.state > b.state ? 1 : a.id - b.id),
  requests: (a, b) => b.requests - a.requests || a.id - b.id,
  in: (a, b) => b.bytesIn - a.bytesIn || a.id - b.id,
  out: (a, b) => b.bytesOut - a.bytesOut || a.id - b.id,
};

/** The connections as shown: filtered (substring of address, state or request line), then sorted. */
export function visibleConns(state: TopState): ConnInfo[] {
  const f = state.filter.toLowerCase();
  const rows = f === ""
    ? [...state.conns]
    : state.conns.filter((c) =>
      remoteText(c).toLowerCase().includes(f) || c.state.includes(f) || c.request.toLowerCase().includes(f) ||
      String(c.id) === f
    );
  return rows.sort(COMPARE[state.sort]);
}

/** Bans as shown: soonest to expire last (longest first), then by key. */
export function visibleBans(state: TopState): BanInfo[] {
  return [...state.bans].sort((a, b) => b.expiresAtWallMs - a.expiresAtWallMs || (a.key < b.key ? -1 : 1));
}

/** How many rows of each panel fit; the key handler pages by these. */
export interface Layout {
  sparkRows: number;
  connRows: number;
  bottomRows: number;
  bottomSideBySide: boolean;
}

const HEADER_ROWS = 3;
const FOOTER_ROWS = 1;

/** Splits the screen between panels for a size. */
export function layout(size: Size): Layout {
  const rows = Math.max(0, size.rows);
  const sparkRows = rows >= 18 ? 2 : 0;
  const body = Math.max(0, rows - HEADER_ROWS - FOOTER_ROWS - sparkRows);
  // Each panel costs a title line and a column header line.
  const bottom = body >= 14 ? Math.max(4, Math.floor(body * 0.35)) : 0;
  return {
    sparkRows,
    connRows: Math.max(0, body - bottom - 2),
    bottomRows: Math.max(0, bottom - 2),
    bottomSideBySide: size.cols >= 70,
  };
}

// --- pieces -----------------------------------------------------------------------------------------

/** A line of `cols` columns: text fitted, then optionally wrapped in an SGR attribute. */
function line(text: string, cols: number, attr: string, o: RenderOptions): string {
  const t = fit(text, cols);
  return o.color && attr !== "" ? attr + t + RESET : t;
}

/** A panel title as a rule: `─ Connections 12 ─ sort: age ──────`. */
function rule(title: string, cols: number): string {
  const t = truncate(`─ ${title} `, cols);
  return t + "─".repeat(Math.max(0, cols - t.length));
}

/** Unicode block sparkline of the last `width` samples, scaled to their maximum. */
export function sparkline(values: readonly number[], width: number): string {
  if (width <= 0) return "";
  const tail = values.slice(-width);
  const max = Math.max(0, ...tail);
  const bars = tail.map((v) => {
    if (!(v > 0) || max === 0) return " ";
    return SPARK[Math.min(SPARK.length - 1, Math.floor((v / max) * (SPARK.length - 1) + 0.5))];
  }).join("");
  return bars.padStart(width);
}

function clock(wallMs: number): string {
  return new Date(wallMs).toISOString().slice(11, 19) + "Z";
}

function headerLines(s: TopState, cols: number, o: RenderOptions): string[] {
  const h = s.hello;
  const uptime = h === null
    ? ""
    : `  up ${formatDuration(h.uptimeMs + Math.max(0, s.nowWallMs - s.helloAtWallMs))}`;
  const left = h === null ? "Vento" : `Vento ${h.version}${uptime}  ${h.listen.join(" ")}  pid ${h.pid}`;
  const right = clock(s.nowWallMs);
  const title = left.length + 2 + right.length <= cols ? left.padEnd(cols - right.length) + right : left;
  const st = s.stats;
  const r = s.rates;
  const l1 = st === null
    ? "waiting for the first snapshot…"
    : `Conns ${st.snapshot.open}/${st.maxConns} (${st.snapshot.active} active, ` +
      `${st.snapshot.idle} idle)  Req/s ${formatRate(r.requestsPerSec)}  MB/s in ${
        formatMBps(r.bytesInPerSec)
      } ` +
      `out ${formatMBps(r.bytesOutPerSec)}`;
  let l2: string;
  let l2attr = "";
  if (!s.connected) {
    l2 = `! ${s.problem}`;
    l2attr = REVERSE;
  } else if (st === null) l2 = "";
  else {
    const x = st.snapshot;
    const refused = Object.values(x.refused).reduce((a, b) => a + b, 0);
    l2 = `2xx ${x.responses[2]}  3xx ${x.responses[3]}  4xx ${x.responses[4]}  5xx ${x.responses[5]}  ` +
      `429 ${x.status429}  bans ${x.bansActive}  refused ${refused}`;
    // GUARD_STORE=redis unreachable: limits fell back to per instance (shown only then).
    if (x.guardStoreDegraded > 0) {
      l2 += "  STORE DEGRADED";
      l2attr = REVERSE;
    }
    // Access-log lines lost (full disk, stalled writer): shown only once there are some.
    if ((x.accessLogDropped ?? 0) > 0) {
      l2 += `  LOG DROPPED ${x.accessLogDropped}`;
      l2attr = REVERSE;
    }
  }
  return [line(title, cols, BOLD, o), line(l1, cols, "", o), line(l2, cols, l2attr, o)];
}

function sparkLines(s: TopState, cols: number, o: RenderOptions): string[] {
  const labelW = 7;
  const maxReq = Math.max(0, ...s.reqHistory.slice(-(cols - labelW - 12)));
  const maxOut = Math.max(0, ...s.bytesOutHistory.slice(-(cols - labelW - 12)));
  const tailReq = ` max ${formatRate(maxReq)}`;
  const tailOut = ` max ${formatMBps(maxOut)}`;
  const w = Math.max(0, cols - labelW - Math.max(tailReq.length, tailOut.length));
  return [
    line("req/s".padEnd(labelW) + sparkline(s.reqHistory, w) + tailReq, cols, "", o),
    line("MB/s".padEnd(labelW) + sparkline(s.bytesOutHistory.map((b) => b / 1e6), w) + tailOut, cols, "", o),
  ];
}

interface ConnCol {
  title: string;
  key: SortKey | null;
  width: number;
  align: "left" | "right";
  value: (c: ConnInfo) => string;
}

// Listed by priority: narrow screens keep the first ones that fit. REQUEST takes what is left.
const CONN_COLS: ConnCol[] = [
  { title: "ID", key: "id", width: 6, align: "right", value: (c) => String(c.id) },
  { title: "REMOTE", key: "remote", width: 21, align: "left", value: remoteText },
  { title: "STATE", key: "state", width: 7, align: "left", value: (c) => c.state },
  { title: "REQS", key: "requests", width: 6, align: "right", value: (c) => String(c.requests) },
  { title: "AGE", key: "age", width: 7, align: "right", value: (c) => formatDuration(c.ageMs) },
  { title: "IN", key: "in", width: 7, align: "right", value: (c) => formatBytes(c.bytesIn) },
  { title: "OUT", key: "out", width: 7, align: "right", value: (c) => formatBytes(c.bytesOut) },
];
const REQUEST_MIN_WIDTH = 10;

function connColumns(cols: number): { cols: ConnCol[]; requestWidth: number } {
  const chosen: ConnCol[] = [];
  let used = 1; // selection marker
  for (const c of CONN_COLS) {
    if (used + c.width + 1 > cols) break;
    chosen.push(c);
    used += c.width + 1;
  }
  const rest = cols - used;
  return { cols: chosen, requestWidth: rest >= REQUEST_MIN_WIDTH ? rest : 0 };
}

function connRow(c: ConnInfo | null, spec: { cols: ConnCol[]; requestWidth: number }, sort: SortKey): string {
  let out = " ";
  for (const col of spec.cols) {
    const text = c === null ? col.title + (col.key === sort ? "▾" : "") : col.value(c);
    out += fit(text, col.width, col.align) + " ";
  }
  if (spec.requestWidth > 0) out += fit(c === null ? "REQUEST" : c.request, spec.requestWidth);
  return out;
}

/** Index of the first row shown so the selected row is visible (scrolls by keeping it on screen). */
function scrollFor(selected: number, height: number): number {
  return selected < height ? 0 : selected - height + 1;
}

function connPanel(s: TopState, cols: number, rows: number, o: RenderOptions): string[] {
  const list = visibleConns(s);
  const spec = connColumns(cols);
  const focused = s.focus === "conns";
  const filter = s.filter !== "" || s.filterEditing ? ` ─ filter: ${s.filter}` : "";
  const title = `Connections ${list.length}${list.length !== s.conns.length ? `/${s.conns.length}` : ""}` +
    ` ─ sort: ${s.sort}${filter}`;
  const out = [
    line(rule(title, cols), cols, focused ? BOLD : "", o),
    line(connRow(null, spec, s.sort), cols, BOLD, o),
  ];
  const sel = list.findIndex((c) => c.id === s.selectedConnId);
  const top = scrollFor(Math.max(0, sel), rows);
  for (let i = 0; i < rows; i++) {
    const c = list[top + i];
    if (c === undefined) {
      out.push(line(i === 0 && list.length === 0 ? "  (no connections)" : "", cols, "", o));
      continue;
    }
    const selected = top + i === sel;
    const text = (selected ? ">" : " ") + connRow(c, spec, s.sort).slice(1);
    out.push(line(text, cols, selected && focused ? REVERSE : "", o));
  }
  return out;
}

function banPanel(s: TopState, cols: number, rows: number, o: RenderOptions): string[] {
  const list = visibleBans(s);
  const focused = s.focus === "bans";
  const keyW = Math.min(24, Math.max(8, cols - 18));
  const out = [
    line(rule(`Bans ${list.length}`, cols), cols, focused ? BOLD : "", o),
    line(` ${fit("TARGET", keyW)} ${fit("LEFT", 7, "right")} REASON`, cols, BOLD, o),
  ];
  const sel = list.findIndex((b) => b.key === s.selectedBanKey);
  const top = scrollFor(Math.max(0, sel), rows);
  for (let i = 0; i < rows; i++) {
    const b = list[top + i];
    if (b === undefined) {
      out.push(line(i === 0 && list.length === 0 ? "  (no bans)" : "", cols, "", o));
      continue;
    }
    const selected = top + i === sel;
    const left = formatDuration(b.expiresAtWallMs - s.nowWallMs);
    const text = `${selected ? ">" : " "}${fit(b.key, keyW)} ${fit(left, 7, "right")} ${b.reason}`;
    out.push(line(text, cols, selected && focused ? REVERSE : "", o));
  }
  return out;
}

function talkerPanel(s: TopState, cols: number, rows: number, o: RenderOptions): string[] {
  const list = [...s.clients].sort((a, b) =>
    b.requestRatePerSec - a.requestRatePerSec || (a.key < b.key ? -1 : 1)
  );
  const keyW = Math.min(24, Math.max(8, cols - 24));
  const out = [
    line(rule("Top talkers", cols), cols, "", o),
    line(
      ` ${fit("CLIENT", keyW)} ${fit("REQ/S", 7, "right")} ${fit("CONNS", 5, "right")} VIOL`,
      cols,
      BOLD,
      o,
    ),
  ];
  for (let i = 0; i < rows; i++) {
    const c = list[i];
    if (c === undefined) {
      out.push(line(i === 0 && list.length === 0 ? "  (no clients)" : "", cols, "", o));
      continue;
    }
    const text = ` ${fit(c.key, keyW)} ${fit(formatRate(c.requestRatePerSec), 7, "right")} ` +
      `${fit(String(c.conns), 5, "right")} ${c.violations}${c.limited ? " limited" : ""}`;
    out.push(line(text, cols, "", o));
  }
  return out;
}

const HELP_TEXT = [
  "Keys",
  "",
  "  ↑ ↓  j k     move the selection        PgUp PgDn  page",
  "  Tab          switch between connections and bans",
  "  s            sort connections by the next column",
  "  b            ban the selected connection's client for 10m (asks; y confirms)",
  "  u            lift the selected ban",
  "  x            close (kick) the selected connection (asks; y confirms)",
  "  /            filter connections (type, Enter keeps, Esc clears)",
  "  ?            this help          q  Ctrl-C  quit",
  "",
  "Press any key to close this help.",
];

function footer(s: TopState, cols: number, o: RenderOptions): string {
  if (s.filterEditing) return line(`filter: ${s.filter}█  (Enter keeps, Esc clears)`, cols, REVERSE, o);
  const keys = "q quit ? help Tab focus s sort b ban u unban x kick / filter";
  const text = s.message !== "" ? `${s.message}  │ ${keys}` : keys;
  return line(text, cols, REVERSE, o);
}

/** Joins two panels' lines side by side with a `│` between them. */
function beside(a: string[], b: string[]): string[] {
  // Each left line is already exactly its panel's width (SGR codes aside), so the bar lines up.
  return a.map((l, i) => l + "│" + (b[i] ?? ""));
}

/**
 * Renders one frame: exactly `size.rows` lines, each at most `size.cols` visible columns. Degrades
 * gracefully: sparklines, then the bottom panels, then columns disappear as the screen shrinks.
 */
export function render(state: TopState, size: Size, options: RenderOptions = { color: true }): string[] {
  const cols = Math.max(0, Math.floor(size.cols));
  const rows = Math.max(0, Math.floor(size.rows));
  if (rows === 0) return [];
  const o = options;
  const lay = layout({ cols, rows });
  let out: string[] = [...headerLines(state, cols, o)];
  if (lay.sparkRows > 0) out.push(...sparkLines(state, cols, o));
  const bodyRows = Math.max(0, rows - out.length - FOOTER_ROWS);
  if (state.help) {
    for (let i = 0; i < bodyRows; i++) {
      out.push(line(HELP_TEXT[i] === undefined ? "" : " " + HELP_TEXT[i], cols, "", o));
    }
  } else if (lay.bottomRows > 0) {
    out.push(...connPanel(state, cols, lay.connRows, o));
    if (lay.bottomSideBySide) {
      const wl = Math.floor((cols - 1) / 2);
      const wr = cols - 1 - wl;
      out.push(...beside(banPanel(state, wl, lay.bottomRows, o), talkerPanel(state, wr, lay.bottomRows, o)));
    } else out.push(...banPanel(state, cols, lay.bottomRows, o));
  } else if (bodyRows >= 3) {
    // Too small for both: show the focused panel alone.
    out.push(...(state.focus === "bans" ? banPanel : connPanel)(state, cols, bodyRows - 2, o));
  }
  while (out.length < rows - FOOTER_ROWS) out.push(line("", cols, "", o));
  out = out.slice(0, Math.max(0, rows - FOOTER_ROWS));
  out.push(footer(state, cols, o));
  return out.slice(0, rows);
}

/** Visible width of a rendered line (SGR codes take no columns). */
export function visibleWidth(s: string): number {
  // deno-lint-ignore no-control-regex
  return [...s.replace(/\x1b\[[0-9;]*m/g, "")].length;
}
