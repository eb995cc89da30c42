/**
 * The tests' own small HTTP/1.1 response reader (never the server's parser checking itself), shared by
 * `RawClient` (Deno.connect) and `NodeClient` (node:net, bound to a chosen source address). Understands
 * Content-Length, chunked and read-until-close bodies, and HEAD/1xx/204/304 framing.
 */

import { concatBytes as concat } from "../../src/core/bytes.ts";

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

/** `parts` joined in order into one array (the server's own helper, under the name the tests use). */
export { concat };

/** Buffers a byte stream and reads responses off it. Subclasses say where the bytes come from. */
export abstract class ResponseReader {
  #buf: Uint8Array = new Uint8Array(0);
  #eof = false;

  /** The next bytes from the peer, or null at end of stream (a reset counts as the end). */
  protected abstract nextChunk(): Promise<Uint8Array | null>;

  /** Appends the next chunk to the buffer. False at end of stream. */
  protected async fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = await this.nextChunk();
    if (chunk === null) {
      this.#eof = true;
      return false;
    }
    this.#buf = this.#buf.length === 0 ? chunk : concat([this.#buf, chunk]);
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
      if (i >= 0) return decoder.decode(this.#take(i + 1)).replace(/\r?\n$/, "");
      if (!(await this.fill())) {
        throw new Error(`connection closed mid-line (have ${this.#buf.length} bytes)`);
      }
    }
  }

  async #readExactly(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!(await this.fill())) {
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
        while (await this.fill());
        body = this.#take(this.#buf.length);
      }
    }
    return { status, statusLine, headers, body, text: decoder.decode(body) };
  }

  /** Reads until the server closes; returns the bytes that came (empty when none). Resolves on reset too. */
  async readToEnd(): Promise<Uint8Array> {
    while (await this.fill());
    return this.#take(this.#buf.length);
  }

  /** Closes our side (idempotent). */
  abstract close(): void | Promise<void>;

  /** True once the server closed the connection (EOF or reset within `ms`); false (and closes) if not. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
    const eof = (async () => {
      while (await this.fill());
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
}
