/**
 * A baseline for bench/load.ts and bench/idle.ts: the least the runtime's libuv-style socket handles (the
 * `tcp_wrap` binding under `node:net`, which Vento's transport drives directly) do per connection. It
 * answers every chunk it receives with the same fixed 1 KiB response as bench/bare_deno.ts (a chunk that
 * contains "close" gets `Connection: close` and the socket is closed after the answer). No parsing, no
 * limits, no timeouts, no guard: never serve anything with it.
 *
 *   deno run --allow-net bench/bare_handle.ts --port 8093
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { asksClose, CLOSE, KEEP_ALIVE } from "./_bare.ts";

interface Handle {
  onread: (ab: ArrayBuffer | undefined) => void;
  onconnection: (status: number) => void;
  bind(host: string, port: number): number;
  listen(backlog: number): number;
  accept(client: Handle): number;
  readStart(): number;
  setNoDelay(on: boolean): number;
  writeBuffer(req: object, bytes: Uint8Array): number;
  close(): void;
}

const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
const { TCP, constants } = binding("tcp_wrap") as {
  TCP: new (type: number) => Handle;
  constants: { SOCKET: number; SERVER: number };
};
const { streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = binding("stream_wrap") as {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
};

/** Completion of a write the kernel did not take at once: close after the last answer. */
const closeAfter = { oncomplete: (_status: number, handle: Handle) => handle.close() };
const keepOpen = { oncomplete: () => {} };

function serve(client: Handle): void {
  client.setNoDelay(true);
  client.onread = (ab) => {
    const n = streamBaseState[kReadBytesOrError];
    if (n < 0 || ab === undefined) {
      client.close();
      return;
    }
    const close = asksClose(new Uint8Array(ab, 0, n), n);
    const err = client.writeBuffer(close ? closeAfter : keepOpen, close ? CLOSE : KEEP_ALIVE);
    if (err !== 0) client.close();
    else if (close && streamBaseState[kLastWriteWasAsync] === 0) client.close();
  };
  client.readStart();
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("usage: deno run --allow-net bench/bare_handle.ts --port N");
    Deno.exit(2);
  }
  const server = new TCP(constants.SERVER);
  server.onconnection = (status) => {
    if (status !== 0) return;
    const client = new TCP(constants.SOCKET);
    if (server.accept(client) === 0) serve(client);
    else client.close();
  };
  const err = server.bind("127.0.0.1", port) || server.listen(4096);
  if (err !== 0) {
    console.error(`bare_handle: cannot listen on 127.0.0.1:${port} (error ${err})`);
    Deno.exit(1);
  }
}
