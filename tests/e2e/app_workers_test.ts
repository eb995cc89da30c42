/**
 * APP with WORKERS=2: every worker thread loads its own copy of the module and serves it, and a reload
 * reaches every copy (each worker imports the changed file again).
 */

import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/config.ts";
import { startCluster } from "../../src/cluster/supervisor.ts";
import { RawClient } from "../_helpers/raw_client.ts";

/** Connections opened so that both workers hold some (the kernel hashes each 4-tuple). */
const SPREAD_CONNS = 24;

const appSource = (version: string) =>
  `export default { fetch: () => new Response("${version} " + (globalThis.name ?? "main")) };\n`;

/** One answer per connection, each on a new connection: which versions and threads answered. */
async function answers(port: number): Promise<Set<string>> {
  const clients = await Promise.all(Array.from({ length: SPREAD_CONNS }, () => RawClient.connect(port)));
  try {
    const seen = new Set<string>();
    for (const c of clients) {
      await c.send("GET /api/who HTTP/1.1\r\nHost: t\r\n\r\n");
      seen.add((await c.read()).text);
    }
    return seen;
  } finally {
    for (const c of clients) c.close();
  }
}

Deno.test("WORKERS=2: each worker thread serves its own copy of the app; a reload reaches both", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-app-workers-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/app.js`, appSource("v1"));
  await Deno.writeTextFile(
    `${dir}/vento.conf`,
    "PORT=0\nHOST=127.0.0.1\nWORKERS=2\nADMIN_SOCKET=off\nACCESS_LOG=off\nAPP=app.js\n" +
      "REQUEST_RATE_PER_SEC=100000\nREQUEST_BURST=100000\nCONN_RATE_PER_SEC=100000\nCONN_BURST=100000\n",
  );
  const loaded = await loadConfig(`${dir}/vento.conf`);
  if (!loaded.ok) return assert.fail(loaded.messages.join("\n"));
  const errors: string[] = [];
  const cluster = await startCluster(loaded.config, 2, {
    configPath: loaded.path,
    logError: (m) => errors.push(m),
  });
  try {
    const port = cluster.addr.port;
    assert.deepEqual([...await answers(port)].sort(), ["v1 vento-worker-0", "v1 vento-worker-1"]);
    await Deno.writeTextFile(`${dir}/app.js`, appSource("v2"));
    const r = await cluster.reload();
    assert.ok(!("errors" in r), JSON.stringify(r));
    assert.deepEqual([...await answers(port)].sort(), ["v2 vento-worker-0", "v2 vento-worker-1"]);
  } finally {
    await cluster.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(errors, []);
});
