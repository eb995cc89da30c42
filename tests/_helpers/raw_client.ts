/**
 * A tiny HTTP/1.1 client over raw TCP for end-to-end tests: writes exact bytes and reads responses with
 * its own small reader (never the server's parser checking itself). Understands Content-Length, chunked
 * and read-until-close bodies, and HEAD/1xx/204/304 framing.
 */

export interface RawResponse {
  status: number;
  /** The status line as sent. */
  statusLine: string;
  /** Lower-cased names → values (repeated fields joined with ", "). */
  headers: Map<string, string>;
  body: Uint8Array;
  text: string;
}

const decoder = new TextDecoder();

export class RawClient {
  #conn: Deno.TcpConn;
  #buf: Uint8Array = new Uint8Array(0);
  #eof = false;

  private constructor(conn: Deno.TcpConn) {
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

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.#conn.read(chunk);
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionReset) n = null;
      else throw e;
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  async #readLine(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf(0x0a);
      if (i >= 0) {
        const line = this.#take(i + 1);
        return decoder.decode(line).replace(/\r?\n$/, "");
      }
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

  /** True once the server closed the connection (reads EOF within `ms`). */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
    const eof = (async () => {
      while (await this.#fill());
      return true;
    })();
    const r = await Promise.race([eof, timeout]);
    clearTimeout(timer);
    if (!r) {
      this.close();
      await eof.catch(() => {});
    }
    return r;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
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

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
