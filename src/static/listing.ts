/**
 * Directory listing renderers (HTML and JSON), their sort order (`?sort=name|size|date&order=asc|desc`)
 * and the `Accept` check that picks between them.
 *
 * Pure; no Deno APIs; never throws on input (an unknown sort or order falls back to the default). Every
 * name is HTML-escaped in text and percent-encoded in hrefs, so a file called `<script>` or `a"b`
 * renders as text; the page carries its own small stylesheet (no request to the site, which may not
 * have one). Hiding dotfiles is the caller's job (it knows the setting).
 */

/** One directory entry to list. */
export interface ListingEntry {
  name: string;
  isDirectory: boolean;
  /** Bytes, or null where a size means nothing (directories, symbolic links). */
  size: number | null;
  /** Last modification, ms since the epoch; null when unknown. */
  mtimeMs: number | null;
}

/** The column a listing is sorted by. */
export type ListingSort = "name" | "size" | "date";
export type ListingOrder = "asc" | "desc";

/** How to order a listing, from its query string. */
export interface ListingView {
  sort: ListingSort;
  order: ListingOrder;
}

/** The order a column starts in: names A→Z, sizes and dates largest and newest first. */
const NATURAL_ORDER: Readonly<Record<ListingSort, ListingOrder>> = {
  name: "asc",
  size: "desc",
  date: "desc",
};

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML content and double- or single-quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/**
 * Reads `sort` and `order` from a raw query (`?sort=size&order=asc`, with or without its `?`). Unknown
 * or repeated-and-conflicting values are ignored (the first valid one wins); the default is by name,
 * and a column without `order` gets its natural one.
 */
export function parseListingQuery(query: string): ListingView {
  let sort: ListingSort | null = null;
  let order: ListingOrder | null = null;
  const q = query.startsWith("?") ? query.slice(1) : query;
  for (const pair of q.split(/[&;]/)) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1).toLowerCase();
    if (key === "sort" && sort === null && (value === "name" || value === "size" || value === "date")) {
      sort = value;
    } else if (key === "order" && order === null && (value === "asc" || value === "desc")) order = value;
  }
  const s = sort ?? "name";
  return { sort: s, order: order ?? NATURAL_ORDER[s] };
}

/** Case-insensitive, numbers compared as numbers (`file2` before `file10`), as file managers sort. */
const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

function byName(a: ListingEntry, b: ListingEntry): number {
  return collator.compare(a.name, b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * Directories first (as in most file managers), then by the view's column and order; ties by name, so
 * the order is total and stable across requests. Unknown sizes and dates sort as the smallest.
 */
export function sortEntries(entries: readonly ListingEntry[], view: ListingView): ListingEntry[] {
  const sign = view.order === "asc" ? 1 : -1;
  const key = (e: ListingEntry): number =>
    view.sort === "size" ? (e.size ?? -1) : view.sort === "date" ? (e.mtimeMs ?? -1) : 0;
  return [...entries].sort((a, b) => {
    if (a.isDirectory !== b.isDirectory) return a.isDirectory ? -1 : 1;
    if (view.sort === "name") return sign * byName(a, b);
    return sign * (key(a) - key(b)) || byName(a, b);
  });
}

const UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/** `512 B`, `1.5 KiB`, `23 KiB`, `4.2 GiB`: one decimal below ten, none above. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let v = bytes / 1024;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? (Math.floor(v * 10) / 10).toFixed(1) : Math.floor(v)} ${UNITS[u]}`;
}

/** `2026-12-04 13:55` in UTC (the server's visitors are in any time zone; the exact time is in the tooltip). */
export function formatListingDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

/** The page's stylesheet: the welcome page's palette and type, light and dark from the OS setting. */
const STYLE = `
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--text:#1d2330;--muted:#5b6475;--accent:#2f6fed;
--accent-soft:#e6eefe;--border:#e1e5ec;--radius:14px;
--mono:ui-monospace,"SFMono-Regular","Cascadia Code",Menlo,Consolas,"Liberation Mono",monospace}
@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#171b22;--text:#e6e9ef;--muted:#9aa3b2;
--accent:#7aa5ff;--accent-soft:#1c2740;--border:#262c36}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;
padding:clamp(1.5rem,6vw,4rem) 1rem;background:var(--bg);color:var(--text);
font:16px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{width:100%;max-width:56rem}
h1{margin:0 0 .25rem;font-size:clamp(1.4rem,3.5vw,1.9rem);letter-spacing:-.02em;line-height:1.25;
overflow-wrap:anywhere}
h1 code{font-family:var(--mono);font-size:.85em;background:var(--accent-soft);color:var(--accent);
padding:.05em .4em;border-radius:8px}
.count{margin:0 0 1.25rem;color:var(--muted);font-size:.95rem}
section{background:var(--card);border:1px solid var(--border);border-radius:var(--radius);overflow:hidden}
table{width:100%;border-collapse:collapse}
th,td{padding:.55rem 1rem;text-align:left;border-bottom:1px solid var(--border)}
tbody tr:last-child td{border-bottom:0}
tbody tr:hover{background:var(--accent-soft)}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
th a{color:inherit;text-decoration:none}
th a:hover{color:var(--accent)}
th[aria-sort] a{color:var(--accent)}
.size,.date{white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--muted);font-size:.92rem}
.size{text-align:right}
td.name a{color:var(--text);text-decoration:none;overflow-wrap:anywhere}
td.name a:hover{color:var(--accent);text-decoration:underline}
td.name a::before{content:"";display:inline-block;width:.8em;height:1em;margin-right:.6em;
vertical-align:-.12em;border:1.5px solid var(--muted);border-radius:2px}
tr.dir td.name a::before{width:1em;height:.8em;border:0;background:var(--accent);border-radius:2px 4px 2px 2px;
vertical-align:-.05em}
tr.up td.name a::before{display:none}
tr.dir td.name a{font-weight:600}
.more{color:var(--muted);margin:1rem 0 0}
footer{margin-top:1.5rem;color:var(--muted);font-size:.85rem;text-align:center}
@media (max-width:36rem){.date{display:none}th,td{padding:.5rem .7rem}}
`.trim();

/** A column header: a link that sorts by it (toggling the order when it is the current column). */
function columnHeader(label: string, sort: ListingSort, view: ListingView, cls: string): string {
  const current = view.sort === sort;
  const order = current ? (view.order === "asc" ? "desc" : "asc") : NATURAL_ORDER[sort];
  const arrow = current ? (view.order === "asc" ? " ↑" : " ↓") : "";
  const aria = current ? ` aria-sort="${view.order === "asc" ? "ascending" : "descending"}"` : "";
  return `<th class="${cls}"${aria}><a href="?sort=${sort}&amp;order=${order}">${label}${arrow}</a></th>`;
}

/** HTML page for `urlPath` (the canonical, encoded directory path ending in `/`). */
export function renderListingHtml(
  urlPath: string,
  entries: readonly ListingEntry[],
  truncated: boolean,
  view: ListingView = parseListingQuery(""),
): string {
  const title = escapeHtml(safeDecode(urlPath));
  let rows = urlPath === "/"
    ? ""
    : `<tr class="up"><td class="name"><a href="../">../</a></td><td class="size"></td><td class="date"></td></tr>\n`;
  for (const e of sortEntries(entries, view)) {
    const suffix = e.isDirectory ? "/" : "";
    const href = escapeHtml(encodeURIComponent(e.name) + suffix);
    const size = e.size === null || e.isDirectory
      ? "—"
      : `<span title="${e.size.toLocaleString("en")} bytes">${formatSize(e.size)}</span>`;
    const date = e.mtimeMs === null
      ? ""
      : `<time datetime="${new Date(e.mtimeMs).toISOString()}">${formatListingDate(e.mtimeMs)}</time>`;
    rows += `<tr class="${e.isDirectory ? "dir" : "file"}"><td class="name"><a href="${href}">` +
      `${
        escapeHtml(e.name)
      }${suffix}</a></td><td class="size">${size}</td><td class="date">${date}</td></tr>\n`;
  }
  const dirs = entries.filter((e) => e.isDirectory).length;
  const count = `${plural(dirs, "folder")}, ${plural(entries.length - dirs, "file")}`;
  const more = truncated
    ? `<p class="more">The listing was cut short: this folder holds more entries.</p>\n`
    : "";
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>Index of ${title}</title>\n<style>\n${STYLE}\n</style></head>\n` +
    `<body><main>\n<h1>Index of <code>${title}</code></h1>\n<p class="count">${count}</p>\n` +
    `<section><table>\n<thead><tr>${columnHeader("Name", "name", view, "name")}` +
    `${columnHeader("Size", "size", view, "size")}${columnHeader("Modified (UTC)", "date", view, "date")}` +
    `</tr></thead>\n<tbody>\n${rows}</tbody></table></section>\n${more}` +
    `<footer>Served by Vento</footer>\n</main></body></html>\n`;
}

function plural(n: number, word: string): string {
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * JSON listing, in the view's order: `{"path": "/a/", "entries": [{"name": "x", "type": "file"|"directory",
 * "size": 12|null, "modified": "2026-12-04T13:55:36.000Z"|null}], "truncated": false}`.
 */
export function renderListingJson(
  urlPath: string,
  entries: readonly ListingEntry[],
  truncated: boolean,
  view: ListingView = parseListingQuery(""),
): string {
  const list = sortEntries(entries, view).map((e) => ({
    name: e.name,
    type: e.isDirectory ? "directory" : "file",
    size: e.isDirectory ? null : e.size,
    modified: e.mtimeMs === null ? null : new Date(e.mtimeMs).toISOString(),
  }));
  return JSON.stringify({ path: safeDecode(urlPath), entries: list, truncated }) + "\n";
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** q of `type` in an Accept value: exact match, then `major/*`, then `*\/*`; 0 when not accepted. */
function acceptQ(accept: string, type: string): number {
  const major = type.slice(0, type.indexOf("/"));
  let exact = -1;
  let wildMajor = -1;
  let wildAll = -1;
  for (const element of accept.split(",")) {
    const parts = element.split(";");
    const range = parts[0].trim().toLowerCase();
    let q = 1;
    for (let i = 1; i < parts.length; i++) {
      const [k, v] = parts[i].split("=").map((x) => x.trim());
      if (k.toLowerCase() === "q" && v !== undefined) q = Number(v);
    }
    if (!(q >= 0 && q <= 1)) continue;
    if (range === type) exact = Math.max(exact, q);
    else if (range === `${major}/*`) wildMajor = Math.max(wildMajor, q);
    else if (range === "*/*") wildAll = Math.max(wildAll, q);
  }
  if (exact >= 0) return exact;
  if (wildMajor >= 0) return wildMajor;
  return Math.max(wildAll, 0);
}

/** Whether the client prefers `application/json` over `text/html` (ties and absence: HTML). */
export function prefersJson(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return acceptQ(accept, "application/json") > acceptQ(accept, "text/html");
}
