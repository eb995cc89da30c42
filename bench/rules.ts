/**
 * The per-request cost of the site rules on the hot path, without sockets: the static responder answering
 * a cached 1 KiB file with no rules against one with the typical `_headers` (20 rules) and `_redirects`
 * (50) of `bench/load.ts`, interleaved rounds in one process, medians. Also prints the head sizes, since
 * the rules' headers are bytes every response carries (what `deno task bench --servers vento,vento-rules`
 * measures over real sockets).
 *
 * Usage: deno task bench:rules [--rounds N] [--requests N]
 */

import { parseArgs } from "node:util";
import { DEFAULT_CONFIG } from "../src/config/config.ts";
import type { RequestHead } from "../src/http/head.ts";
import type { Reply } from "../src/http/response.ts";
import { FakeClock } from "../src/core/clock.ts";
import { StaticResponder } from "../src/static/responder.ts";
import { parseHeadersFile, parseRedirectsFile } from "../src/static/rules.ts";
import { median } from "./_common.ts";
import { benchRules } from "./load.ts";

/** Bounds that keep a run in seconds. */
const MAX_ROUNDS = 50;
const MAX_REQUESTS = 50_000_000;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { rounds: { type: "string", default: "7" }, requests: { type: "string", default: "2000000" } },
  });
  const rounds = Number(values.rounds);
  const requests = Number(values.requests);
  if (!(rounds >= 1 && rounds <= MAX_ROUNDS) || !(requests >= 1000 && requests <= MAX_REQUESTS)) {
    console.error(`bench:rules: --rounds 1..${MAX_ROUNDS}, --requests 1000..${MAX_REQUESTS}`);
    return 2;
  }
  const root = await Deno.makeTempDir({ prefix: "vento_bench_rules_" });
  try {
    await Deno.writeFile(`${root}/1k.bin`, crypto.getRandomValues(new Uint8Array(1024)));
    const req: RequestHead = {
      method: "GET",
      target: "/1k.bin",
      targetForm: "origin",
      path: "/1k.bin",
      version: 11,
      headers: ["host", "bench", "user-agent", "wrk", "accept", "*/*"],
      host: "bench",
      contentLength: -1,
      chunked: false,
      keepAlive: true,
      expectContinue: false,
    };
    const clock = new FakeClock();
    const plain = await StaticResponder.create({ ...DEFAULT_CONFIG, documentRoot: root }, clock);
    const ruled = await StaticResponder.create({ ...DEFAULT_CONFIG, documentRoot: root }, clock);
    const files = benchRules();
    const h = parseHeadersFile(files.headers);
    const r = parseRedirectsFile(files.redirects);
    if (!h.ok || !r.ok) throw new Error("the benchmark's rule files do not parse");
    ruled.setRules({ headers: h.rules, redirects: r.rules, hasAuth: false });
    const first = [await plain.handle(req), await ruled.handle(req)];
    const ns: Record<"off" | "on", number[]> = { off: [], on: [] };
    let sink: Reply | null = null;
    for (let round = 0; round < rounds; round++) {
      for (const [name, s] of [["off", plain], ["on", ruled]] as const) {
        const t = performance.now();
        for (let i = 0; i < requests; i++) sink = s.handle(req) as Reply;
        ns[name].push(((performance.now() - t) * 1e6) / requests);
      }
    }
    if (sink === null) throw new Error("no reply");
    const off = median(ns.off);
    const on = median(ns.on);
    console.log(
      `cached 1 KiB file, handler only, medians of ${rounds} interleaved rounds of ${requests} requests`,
    );
    console.log(`  rules off: ${off.toFixed(1)} ns/request, head ${first[0].head.length} bytes`);
    console.log(
      `  rules on:  ${on.toFixed(1)} ns/request, head ${first[1].head.length} bytes (20 + 50 rules)`,
    );
    console.log(`  on/off: ${(on / off).toFixed(2)}x, +${(on - off).toFixed(1)} ns/request`);
    plain.close();
    ruled.close();
    return 0;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
