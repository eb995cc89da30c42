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

const encoder = new TextEncoder();

function response(close: boolean): Uint8Array {
  const head = encoder.encode(
    "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/octet-stream\r\n" +
      `Connection: ${close ? "close" : "keep-alive"}\r\n\r\n`,
  );
  const out = new Uint8Array(head.length + 1024);
  out.set(head);
  out.fill(0x61, head.length);
  return out;
}

const KEEP_ALIVE = response(false);
const CLOSE = response(true);

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
      if (new TextDecoder().decode(chunk).toLowerCase().includes("close")) socket.end(CLOSE);
      else socket.write(KEEP_ALIVE);
    });
  });
  server.listen({ host: "127.0.0.1", port, backlog: 4096 });
}
