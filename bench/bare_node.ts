/**
 * A baseline for bench/load.ts's fairness scenarios: the least a `node:net` server run by Deno does per
 * connection. It answers every chunk it receives with the same fixed 1 KiB response as
 * bench/bare_deno.ts (a chunk that contains "close" gets `Connection: close` and the socket is ended
 * after the answer). No parsing, no limits, no timeouts, no guard: never serve anything with it.
 *
 *   deno run --allow-net bench/bare_node.ts --port 8092
 */

import net from "node:net";
import { parseArgs } from "node:util";
import { asksClose, CLOSE, KEEP_ALIVE } from "./_bare.ts";

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("usage: deno run --allow-net bench/bare_node.ts --port N");
    Deno.exit(2);
  }
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => {
      if (asksClose(chunk, chunk.byteLength)) socket.end(CLOSE);
      else socket.write(KEEP_ALIVE);
    });
  });
  server.listen({ host: "127.0.0.1", port, backlog: 4096 });
}
