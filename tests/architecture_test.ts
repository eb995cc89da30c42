/**
 * The layering rules, enforced by reading the source. Imports flow one way:
 *
 *   main.ts → src/cluster → src/app → src/admin | src/net | src/static | src/routes | src/guard
 *           → src/http | src/config | src/stats | src/core
 *
 * Nothing imports main.ts; the socket layer (src/net) reaches neither files, nor the admin server, nor the
 * cluster; src/config and src/core import nothing above them; src/http imports only itself. Pure modules
 * never mention `Deno.`, and the `vento-admin` CLI (cli/) reaches the server only through the admin
 * protocol. There is no exceptions list: a new edge either fits these rules or the design changes.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Source without comments and string contents, so a doc comment saying "never mentions Deno." is fine. */
function code(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|[^:])\/\/.*$/gm, "$1")
    .replace(/`(?:\\[\s\S]|[^`\\])*`/g, "``")
    .replace(/"(?:\\.|[^"\\\n])*"/g, '""');
}

interface Import {
  spec: string;
  typeOnly: boolean;
  /** The imported file, repository-relative, for relative specifiers; null for `npm:`, `node:`… */
  target: string | null;
}

function imports(file: string, text: string): Import[] {
  const out: Import[] = [];
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : "";
  for (const m of text.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+"([^"]+)";/gms)) {
    const spec = m[3];
    let target: string | null = null;
    if (spec.startsWith(".")) {
      const parts = dir === "" ? [] : dir.split("/");
      for (const p of spec.split("/")) {
        if (p === "..") parts.pop();
        else if (p !== ".") parts.push(p);
      }
      target = parts.join("/");
    }
    out.push({ spec, typeOnly: m[2] !== undefined, target });
  }
  return out;
}

/** Every .ts file below `dir` (repository-relative), recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await filesUnder(path));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

/** The subsystem a `src/` file belongs to (its first folder below src/), or null outside src/. */
function subsystem(path: string): string | null {
  const m = /^src\/([^/]+)\//.exec(path);
  return m === null ? null : m[1];
}

/** What each subsystem may import besides itself. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  cluster: ["app", "admin", "net", "static", "routes", "guard", "http", "config", "stats", "core"],
  app: ["admin", "net", "static", "routes", "guard", "http", "config", "stats", "core"],
  admin: ["net", "guard", "http", "config", "stats", "core"],
  net: ["guard", "http", "config", "stats", "core"],
  static: ["http", "config", "stats", "core"],
  routes: ["static", "guard", "http", "config", "stats", "core"],
  guard: ["http", "config", "stats", "core"],
  http: [],
  config: ["core"],
  stats: ["core"],
  core: [],
};

/** Modules with I/O by design (the file system, sockets): everything else in their folders is pure. */
const IMPURE = new Set([
  "src/config/config.ts",
  "src/static/confined_fs.ts",
  "src/static/file_stream.ts",
  "src/static/responder.ts",
  "src/static/site_rules.ts",
  "src/static/mime_gen.ts",
  "src/static/precompress.ts",
]);

Deno.test("every src/ file belongs to a known subsystem", async () => {
  for (const f of await filesUnder("src")) {
    const s = subsystem(f);
    assert.ok(s !== null && s in MAY_IMPORT, `${f} is outside the known subsystems`);
  }
});

Deno.test("imports flow one way between subsystems", async () => {
  let edges = 0;
  for (const f of await filesUnder("src")) {
    const from = subsystem(f)!;
    for (const imp of imports(f, await Deno.readTextFile(`${ROOT}${f}`))) {
      if (imp.target === null) continue;
      const to = subsystem(imp.target);
      assert.ok(to !== null, `${f} imports ${imp.spec}, outside src/`);
      if (to === from) continue;
      edges++;
      assert.ok(MAY_IMPORT[from].includes(to!), `${f} (${from}) imports ${imp.spec} (${to})`);
    }
  }
  assert.ok(edges > 50, "the import scan found the edges");
});

Deno.test("nothing imports main.ts", async () => {
  const files = [...await filesUnder("src"), ...await filesUnder("cli"), ...await filesUnder("tests")];
  for (const f of [...files, ...await filesUnder("bench")]) {
    for (const imp of imports(f, await Deno.readTextFile(`${ROOT}${f}`))) {
      assert.notEqual(imp.target, "main.ts", `${f} imports main.ts`);
    }
  }
});

Deno.test("pure modules never mention Deno", async () => {
  const pure = [
    ...await filesUnder("src/http"),
    ...(await filesUnder("src/guard")).filter((f) => !f.startsWith("src/guard/store/")),
    ...await filesUnder("src/stats"),
    ...await filesUnder("src/static"),
    ...await filesUnder("src/routes"),
    ...await filesUnder("src/core"),
    ...await filesUnder("src/config"),
    "src/admin/protocol.ts",
    "src/admin/metrics.ts",
    "cli/render.ts",
    "cli/format.ts",
  ].filter((f) => !IMPURE.has(f));
  assert.ok(pure.length > 30);
  for (const f of pure) {
    const text = code(await Deno.readTextFile(`${ROOT}${f}`));
    assert.doesNotMatch(text, /\bDeno\./, `${f} mentions Deno.`);
  }
});

Deno.test("vento-admin reaches the server only through the shared admin protocol", async () => {
  for (const f of await filesUnder("cli")) {
    for (const imp of imports(f, await Deno.readTextFile(`${ROOT}${f}`))) {
      if (imp.target === null || !imp.target.startsWith("src/")) continue;
      const allowed = imp.target === "src/admin/protocol.ts" || imp.target.startsWith("src/config/") ||
        imp.target.startsWith("src/core/") || imp.typeOnly;
      assert.ok(allowed, `${f} imports ${imp.spec}`);
    }
  }
});

Deno.test("no jsr: or https: imports anywhere", async () => {
  const files = [
    "main.ts",
    ...await filesUnder("src"),
    ...await filesUnder("cli"),
    ...await filesUnder("tests"),
    ...await filesUnder("bench"),
  ];
  for (const f of files) {
    for (const imp of imports(f, await Deno.readTextFile(`${ROOT}${f}`))) {
      assert.doesNotMatch(imp.spec, /^(jsr:|https?:)/, `${f} imports ${imp.spec}`);
    }
  }
});
