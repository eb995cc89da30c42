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

const encoder = new TextEncoder();

/** The fixed answer: status line, headers, a 1 KiB body. */
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
const NEEDLE = encoder.encode("close");

/** Whether `buf[0..n)` contains "close" (a crude stand-in for the Connection header). */
function asksClose(buf: Uint8Array, n: number): boolean {
  outer: for (let i = 0; i + NEEDLE.length <= n; i++) {
    for (let j = 0; j < NEEDLE.length; j++) if ((buf[i + j] | 0x20) !== NEEDLE[j]) continue outer;
    return true;
  }
  return false;
}

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
