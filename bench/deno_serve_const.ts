/**
 * A baseline for bench/load.ts's fairness scenarios: `Deno.serve` answering every request with the same
 * 1 KiB body from memory (no file system), i.e. the runtime's own HTTP server at its cheapest. Never serve
 * anything with it.
 *
 *   deno run --allow-net bench/deno_serve_const.ts --port 8093
 */

import { parseArgs } from "node:util";

const BODY = new Uint8Array(1024).fill(0x61);

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("usage: deno run --allow-net bench/deno_serve_const.ts --port N");
    Deno.exit(2);
  }
  Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    () => new Response(BODY, { headers: { "content-type": "application/octet-stream" } }),
  );
}
