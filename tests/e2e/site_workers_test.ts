/**
 * METRICS_PATH with WORKERS=2: whichever worker thread the kernel hands a scrape to, it answers the whole
 * server's counters (the supervisor's sum, as the admin `metrics` op), never only its own.
 */

import assert from "node:assert/strict";
import { DEFAULT_CONFIG } from "../../src/config/config.ts";
import { startCluster } from "../../src/cluster/supervisor.ts";
import { request } from "../_helpers/raw_client.ts";

/** Requests spread over fresh connections, so both workers answer some (the kernel hashes each 4-tuple). */
const SPREAD = 24;
const EFFECT_TIMEOUT_MS = 10_000;

Deno.test("METRICS_PATH with WORKERS=2 answers every worker's counters summed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-site-workers-" });
  await Deno.writeTextFile(`${dir}/index.html`, "hi\n");
  const cluster = await startCluster(
    {
      ...DEFAULT_CONFIG,
      host: "127.0.0.1",
      port: 0,
      documentRoot: dir,
      accessLog: "off",
      adminSocket: "off",
      requestRatePerSec: 100_000,
      requestBurst: 100_000,
      connRatePerSec: 100_000,
      connBurst: 100_000,
      metricsPath: "/metrics",
    },
    2,
    { configPath: null, logError: () => {} },
  );
  try {
    const port = cluster.addr.port;
    for (let i = 0; i < SPREAD; i++) {
      assert.equal(
        (await request(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")).status,
        200,
      );
    }
    // The supervisor sums the workers' reports (sent every 100 ms): wait until it has them all.
    const deadline = performance.now() + EFFECT_TIMEOUT_MS;
    while (cluster.stats().responses[2] < SPREAD) {
      if (performance.now() > deadline) throw new Error("the supervisor never saw every response");
      await new Promise((r) => setTimeout(r, 20));
    }
    const perWorker = cluster.workerStats().map((r) => r?.responses[2] ?? 0);
    assert.ok(perWorker.every((n) => n < SPREAD), `both workers served some: ${perWorker}`);
    for (let i = 0; i < 8; i++) {
      const r = await request(port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
      assert.equal(r.status, 200);
      const m = /^vento_responses_total\{class="2xx"\} (\d+)$/m.exec(r.text);
      assert.ok(m !== null, r.text);
      assert.ok(Number(m[1]) >= SPREAD, `scrape ${i}: ${m[1]} 2xx, fewer than the ${SPREAD} sent`);
    }
  } finally {
    await cluster.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
