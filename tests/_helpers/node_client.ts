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
import { concat, latin1, type RawResponse } from "./raw_client.ts";

const decoder = new TextDecoder();

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

export class NodeClient {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #buf: Uint8Array = new Uint8Array(0);
  #eof = false;
  /** The first error that was not a peer-gone event (rethrown by reads). */
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #released: Promise<void>;
  /** Bytes received in all (for "refused with no bytes" checks). */
  bytesReceived = 0;

  private constructor(sock: net.Socket) {
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

  /** Moves received chunks into the buffer; waits for more when none. False at end of stream. */
  async #fill(): Promise<boolean> {
    for (;;) {
      if (this.#chunks.length > 0) {
        this.#buf = concat([this.#buf, ...this.#chunks]);
        this.#chunks = [];
        return true;
      }
      if (this.#error !== null) throw this.#error;
      if (this.#eof) return false;
      await new Promise<void>((r) => this.#wake = r);
    }
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  async #readLine(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf(0x0a);
      if (i >= 0) return decoder.decode(this.#take(i + 1)).replace(/\r?\n$/, "");
      if (!(await this.#fill())) {
        throw new Error(`connection closed mid-line (have ${this.#buf.length} bytes)`);
      }
    }
  }

  async #readExactly(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!(await this.#fill())) {
        throw new Error(`connection closed after ${this.#buf.length} of ${n} body bytes`);
      }
    }
    return this.#take(n);
  }

  /** Reads one response. `method` tells whether a body follows (HEAD has none). */
  async read(method = "GET"): Promise<RawResponse> {
    const statusLine = await this.#readLine();
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
    if (m === null) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (;;) {
      const line = await this.#readLine();
      if (line === "") break;
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    let body: Uint8Array = new Uint8Array(0);
    const noBody = method === "HEAD" || status < 200 || status === 204 || status === 304;
    if (!noBody) {
      if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
        const parts: Uint8Array[] = [];
        for (;;) {
          const size = parseInt(await this.#readLine(), 16);
          if (size === 0) {
            while ((await this.#readLine()) !== "");
            break;
          }
          parts.push(await this.#readExactly(size));
          await this.#readLine();
        }
        body = concat(parts);
      } else if (headers.has("content-length")) {
        body = await this.#readExactly(Number(headers.get("content-length")));
      } else {
        while (await this.#fill());
        body = this.#take(this.#buf.length);
      }
    }
    return { status, statusLine, headers, body, text: decoder.decode(body) };
  }

  /** Reads until the server closes; returns the bytes that came (empty when none). Resolves on reset too. */
  async readToEnd(): Promise<Uint8Array> {
    while (await this.#fill());
    return this.#take(this.#buf.length);
  }

  /** True once the server closed the connection (EOF or reset within `ms`); false (and closes) if not. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
    const eof = (async () => {
      while (await this.#fill());
      return true as const;
    })();
    const r = await Promise.race([eof, timeout]);
    clearTimeout(timer);
    if (!r) {
      await this.close();
      await eof.catch(() => {});
    }
    return r;
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
