/**
 * Directory listing renderers (HTML and JSON) and the `Accept` check that picks between them.
 *
 * Pure; no Deno APIs. Every name is HTML-escaped in text and percent-encoded in hrefs, so a file
 * called `<script>` or `a"b` renders as text. Hiding dotfiles is the caller's job (it knows the setting).
 */

/** One directory entry to list. */
export interface ListingEntry {
  name: string;
  isDirectory: boolean;
}

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

function sorted(entries: readonly ListingEntry[]): ListingEntry[] {
  return [...entries].sort((a, b) =>
    a.isDirectory === b.isDirectory
      ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
      : a.isDirectory
      ? -1
      : 1
  );
}

/** HTML page for `urlPath` (the canonical, encoded directory path ending in `/`). */
export function renderListingHtml(
  urlPath: string,
  entries: readonly ListingEntry[],
  truncated: boolean,
): string {
  const title = escapeHtml(safeDecode(urlPath));
  let items = urlPath === "/" ? "" : `<li><a href="../">../</a></li>\n`;
  for (const e of sorted(entries)) {
    const suffix = e.isDirectory ? "/" : "";
    const href = escapeHtml(encodeURIComponent(e.name) + suffix);
    items += `<li><a href="${href}">${escapeHtml(e.name)}${suffix}</a></li>\n`;
  }
  const more = truncated ? "<p>(listing truncated)</p>\n" : "";
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of ${title}</title></head>\n` +
    `<body><h1>Index of ${title}</h1>\n<ul>\n${items}</ul>\n${more}</body></html>\n`;
}

/** JSON listing: `{"path": "/a/", "entries": [{"name": "x", "type": "file"|"directory"}], "truncated": false}`. */
export function renderListingJson(
  urlPath: string,
  entries: readonly ListingEntry[],
  truncated: boolean,
): string {
  const list = sorted(entries).map((e) => ({ name: e.name, type: e.isDirectory ? "directory" : "file" }));
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
