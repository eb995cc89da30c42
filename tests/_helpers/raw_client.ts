/**
 * A tiny HTTP/1.1 client over raw TCP for end-to-end tests: writes exact bytes and reads responses with
 * the tests' own small reader (`response_reader.ts`), never the server's parser checking itself.
 */

import { concat, type RawResponse, ResponseReader } from "./response_reader.ts";

export { concat, type RawResponse };

export class RawClient extends ResponseReader {
  #conn: Deno.TcpConn;

  private constructor(conn: Deno.TcpConn) {
    super();
    this.#conn = conn;
  }

  /** Connects to `port` on `hostname` (default 127.0.0.1). */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname, port }));
  }

  get conn(): Deno.TcpConn {
    return this.#conn;
  }

  /** Writes a string (latin1) or bytes. */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? latin1(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  protected override async nextChunk(): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(65536);
    try {
      const n = await this.#conn.read(chunk);
      return n === null ? null : chunk.subarray(0, n);
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionReset) return null;
      throw e;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** A loopback port free a moment ago (for a server started in another process). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** One-shot: connect, send, read one response, close. */
export async function request(port: number, raw: string | Uint8Array, method = "GET"): Promise<RawResponse> {
  const c = await RawClient.connect(port);
  try {
    await c.send(raw);
    return await c.read(method);
  } finally {
    c.close();
  }
}

export function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
