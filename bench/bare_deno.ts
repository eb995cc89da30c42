/**
 * The runtime's floor, for comparisons in bench/README.md: the least a Deno program can do per
 * connection on raw TCP. It accepts, reads into one buffer per connection, answers every read with the
 * same fixed 1 KiB response (no parsing: a read that contains "close" gets `Connection: close` and the
 * connection is closed after the answer), and closes at EOF. No limits, no timeouts, no guard: never
 * serve anything with it.
 *
 *   deno run --allow-net bench/bare_deno.ts --port 8090 [--buffer 1024]
 *
 * `--buffer` sets the per-connection read buffer, so bench/idle.ts can show what an idle connection costs
 * the runtime itself (a pending read, its promise, the connection object and the socket resource).
 */

import { parseArgs } from "node:util";
import { asksClose, CLOSE, KEEP_ALIVE } from "./_bare.ts";

async function serve(conn: Deno.TcpConn, bufferBytes: number): Promise<void> {
  const buf = new Uint8Array(bufferBytes);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const close = asksClose(buf, n);
      await conn.write(close ? CLOSE : KEEP_ALIVE);
      if (close) break;
    }
  } catch {
    // the peer went away
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string" }, buffer: { type: "string", default: "1024" } },
  });
  const port = Number(values.port);
  const bufferBytes = Number(values.buffer);
  if (
    !Number.isInteger(port) || port < 1 || port > 65535 || !Number.isInteger(bufferBytes) || bufferBytes < 1
  ) {
    console.error("usage: deno run --allow-net bench/bare_deno.ts --port N [--buffer BYTES]");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  for await (const conn of listener) serve(conn, bufferBytes);
}
