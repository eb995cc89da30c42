/**
 * The layering rules of GUIDE §3, enforced by reading the source: pure modules never mention `Deno.`, and
 * imports only point the allowed way (no module of src/http, src/guard or src/stats reaches into the socket
 * layer, and the admin client reaches the server only through the shared protocol).
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

function imports(text: string): { spec: string; typeOnly: boolean }[] {
  const out: { spec: string; typeOnly: boolean }[] = [];
  for (const m of text.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+"([^"]+)";/gms)) {
    out.push({ spec: m[3], typeOnly: m[2] !== undefined });
  }
  return out;
}

async function filesIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
    if (e.isFile && e.name.endsWith(".ts")) out.push(`${dir}/${e.name}`);
  }
  return out.sort();
}

/** Modules with I/O by design (the file system, sockets): everything else in these folders must be pure. */
const IMPURE = new Set([
  "src/guard/redis_store.ts",
  "src/static/confined_fs.ts",
  "src/static/file_stream.ts",
  "src/static/responder.ts",
  "src/static/mime_gen.ts",
  "src/static/precompress.ts",
]);

Deno.test("pure modules never mention Deno", async () => {
  const pure = [
    ...await filesIn("src/http"),
    ...await filesIn("src/guard"),
    ...await filesIn("src/stats"),
    ...await filesIn("src/static"),
    ...await filesIn("src/routes"),
    "src/admin/protocol.ts",
    "src/admin/metrics.ts",
    "admin/render.ts",
    "admin/format.ts",
  ].filter((f) => !IMPURE.has(f));
  assert.ok(pure.length > 20);
  for (const f of pure) {
    const text = code(await Deno.readTextFile(`${ROOT}${f}`));
    assert.doesNotMatch(text, /\bDeno\./, `${f} mentions Deno.`);
  }
});

Deno.test("protocol, guard and stats modules never import the socket layer (types of the clock aside)", async () => {
  for (const dir of ["src/http", "src/guard", "src/stats"]) {
    for (const f of await filesIn(dir)) {
      for (const imp of imports(await Deno.readTextFile(`${ROOT}${f}`))) {
        const reachesNet = imp.spec.includes("/net/");
        if (reachesNet) {
          assert.ok(imp.typeOnly && imp.spec.endsWith("/net/clock.ts"), `${f} imports ${imp.spec}`);
        }
        assert.ok(
          !imp.spec.includes("/static/") && !imp.spec.includes("/admin/"),
          `${f} imports ${imp.spec}`,
        );
        if (dir === "src/http") {
          assert.ok(imp.spec.startsWith("./"), `${f} imports ${imp.spec} outside src/http`);
        }
      }
    }
  }
});

Deno.test("vento-admin reaches the server only through the shared admin protocol", async () => {
  for (const f of await filesIn("admin")) {
    for (const imp of imports(await Deno.readTextFile(`${ROOT}${f}`))) {
      if (!imp.spec.startsWith("../src/")) continue;
      const allowed = imp.spec === "../src/admin/protocol.ts" || imp.spec === "../src/config.ts" ||
        imp.spec === "../src/version.ts" || imp.typeOnly;
      assert.ok(allowed, `${f} imports ${imp.spec}`);
    }
  }
});

Deno.test("no jsr: or https: imports anywhere", async () => {
  for (
    const dir of [
      "src/http",
      "src/net",
      "src/static",
      "src/guard",
      "src/stats",
      "src/admin",
      "src/routes",
      "admin",
    ]
  ) {
    for (const f of await filesIn(dir)) {
      for (const imp of imports(await Deno.readTextFile(`${ROOT}${f}`))) {
        assert.doesNotMatch(imp.spec, /^(jsr:|https?:)/, `${f} imports ${imp.spec}`);
      }
    }
  }
});
