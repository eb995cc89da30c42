/**
 * Generates `mime_types.ts` (extension → Content-Type) from `npm:mime-db`. Run with
 * `deno task gen:mime`; the output is committed so the server never loads mime-db at run time.
 *
 * Conflicts (two types claiming one extension) are settled as the `mime-types` package does: IANA
 * beats Apache beats nginx, and on a tie an `application/` type already holding the extension keeps it
 * (otherwise the later type wins), which gives `xml` → `application/xml` as browsers expect. Charset rule: `text/*`
 * always gets `; charset=utf-8`; other types only when mime-db marks them `charset: "UTF-8"`.
 */

import db from "mime-db";

interface MimeEntry {
  source?: string;
  charset?: string;
  extensions?: string[];
}

/**
 * Extensions whose rule-based winner is wrong for browsers (mime-db lists `application/mp4` and
 * `video/mp4`, both IANA; a `<video>` element needs the latter).
 */
const OVERRIDES: Readonly<Record<string, string>> = { mp4: "video/mp4" };

/** Lower index = weaker claim on an extension. */
const SOURCE_PREFERENCE = ["nginx", "apache", undefined, "iana"];

/** Builds the extension table; exported for the generator test. */
export function buildMimeTable(entries: Readonly<Record<string, MimeEntry>>): Map<string, string> {
  const owner = new Map<string, string>();
  for (const [type, entry] of Object.entries(entries)) {
    for (const ext of entry.extensions ?? []) {
      const current = owner.get(ext);
      if (current !== undefined && current !== "application/octet-stream") {
        const from = SOURCE_PREFERENCE.indexOf(entries[current].source);
        const to = SOURCE_PREFERENCE.indexOf(entry.source);
        if (from > to || (from === to && current.startsWith("application/"))) continue;
      }
      owner.set(ext, type);
    }
  }
  for (const [ext, type] of Object.entries(OVERRIDES)) if (type in entries) owner.set(ext, type);
  const table = new Map<string, string>();
  for (const ext of [...owner.keys()].sort()) {
    const type = owner.get(ext)!;
    const utf8 = type.startsWith("text/") || entries[type].charset?.toUpperCase() === "UTF-8";
    table.set(ext, utf8 ? `${type}; charset=utf-8` : type);
  }
  return table;
}

/** The generated module's source text. */
export function renderMimeModule(table: ReadonlyMap<string, string>): string {
  const lines = [
    "/**",
    " * Extension → Content-Type, generated from npm:mime-db by src/static/mime_gen.ts.",
    " * Do not edit: run `deno task gen:mime`. Pure data.",
    " */",
    "",
    "// deno-fmt-ignore",
    "export const MIME_TYPES: ReadonlyArray<readonly [string, string]> = [",
  ];
  for (const [ext, type] of table) lines.push(`  [${JSON.stringify(ext)}, ${JSON.stringify(type)}],`);
  lines.push("];", "");
  return lines.join("\n");
}

if (import.meta.main) {
  const out = new URL("./mime_types.ts", import.meta.url);
  const table = buildMimeTable(db as Record<string, MimeEntry>);
  await Deno.writeTextFile(out, renderMimeModule(table));
  console.log(`wrote ${table.size} extensions to ${out.pathname}`);
}
