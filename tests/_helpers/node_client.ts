/**
 * A raw HTTP/1.1 test client that connects FROM a chosen loopback source address (127.0.0.5, …), so
 * end-to-end tests and benches can play several distinct clients against the guard. `Deno.connect`
 * cannot bind a local address; `node:net`'s `localAddress` can.
 *
 * Same read-one-response API as `RawClient` (`send`, `read`, `readToEnd`, `closedWithin`), with its own
 * small response reader (never the server's parser checking itself). `close()` returns a promise that
 * resolves once the socket is fully released, so resource sanitizers stay quiet: always await it.
 *
 * Must never aim anywhere but loopback: `connect` refuses other hosts and source addresses.
 */

import net from "node:net";
import { latin1, type RawResponse } from "./raw_client.ts";
import { concat, ResponseReader } from "./response_reader.ts";

/** Loopback IPv4 only (127.0.0.0/8). */
const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** Errors that mean "the peer went away": treated as end of stream, as `RawClient` treats a reset. */
const PEER_GONE_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

export interface NodeClientOptions {
  /** Server address (default 127.0.0.1). */
  host?: string;
  /** Source address to bind, e.g. "127.0.0.5" (default: the kernel's choice). */
  localAddress?: string;
  /** Stop reading from the kernel until `resume()` (a reader that stalls). */
  paused?: boolean;
}

export class NodeClient extends ResponseReader {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #eof = false;
  /** The first error that was not a peer-gone event (rethrown by reads). */
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #released: Promise<void>;
  /** Bytes received in all (for "refused with no bytes" checks). */
  bytesReceived = 0;

  private constructor(sock: net.Socket) {
    super();
    this.#sock = sock;
    this.#released = new Promise<void>((resolve) => sock.once("close", () => resolve()));
    sock.on("data", (chunk: Uint8Array) => {
      this.bytesReceived += chunk.byteLength;
      this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#notify();
    });
    sock.on("end", () => {
      this.#eof = true;
      this.#notify();
    });
    sock.on("error", (e: Error & { code?: string }) => {
      if (!PEER_GONE_CODES.has(e.code ?? "")) this.#error ??= e;
      this.#eof = true;
      this.#notify();
    });
    sock.on("close", () => {
      this.#eof = true;
      this.#notify();
    });
  }

  /** Connects to `port`; resolves once the TCP handshake completed (the server may still refuse). */
  static connect(port: number, options: NodeClientOptions = {}): Promise<NodeClient> {
    const host = options.host ?? "127.0.0.1";
    if (!LOOPBACK_V4.test(host)) throw new Error(`NodeClient is loopback-only, not ${host}`);
    if (options.localAddress !== undefined && !LOOPBACK_V4.test(options.localAddress)) {
      throw new Error(`NodeClient binds loopback only, not ${options.localAddress}`);
    }
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port, localAddress: options.localAddress });
      sock.setNoDelay(true);
      const onError = (e: Error) => {
        sock.destroy();
        reject(e);
      };
      sock.once("error", onError);
      sock.once("connect", () => {
        sock.off("error", onError);
        const c = new NodeClient(sock);
        if (options.paused) sock.pause();
        resolve(c);
      });
    });
  }

  /** The underlying socket (for local/remote address checks). */
  get socket(): net.Socket {
    return this.#sock;
  }

  /** Resumes reading after `paused`. */
  resume(): void {
    this.#sock.resume();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Writes a string (latin1) or bytes; resolves when handed to the kernel. Rejects if the peer is gone. */
  send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? latin1(data) : data;
    return new Promise((resolve, reject) => {
      if (this.#sock.destroyed || !this.#sock.writable) {
        reject(new Error("socket is not writable"));
        return;
      }
      this.#sock.write(bytes, (e?: Error | null) => e ? reject(e) : resolve());
    });
  }

  /** The next received bytes (waiting for some when none are queued), or null at end of stream. */
  protected override async nextChunk(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#chunks.length > 0) {
        const chunk = concat(this.#chunks);
        this.#chunks = [];
        return chunk;
      }
      if (this.#error !== null) throw this.#error;
      if (this.#eof) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
  }

  /** Destroys the socket; resolves once it is fully released. Idempotent. */
  close(): Promise<void> {
    if (!this.#sock.destroyed) this.#sock.destroy();
    return this.#released;
  }
}

/** One-shot from `localAddress`: connect, send, read one response, close. */
export async function requestFrom(
  port: number,
  localAddress: string,
  raw: string | Uint8Array,
  method = "GET",
): Promise<RawResponse> {
  const c = await NodeClient.connect(port, { localAddress });
  try {
    await c.send(raw);
    return await c.read(method);
  } finally {
    await c.close();
  }
}
