/**
 * The `vento-admin` side of the admin socket: connects, sends requests, matches replies by id and
 * delivers subscription events. Speaks only `src/admin/protocol.ts`; knows nothing of commands or
 * screens. A malformed server line or a dropped socket fails every pending request, never hangs.
 */

import {
  type AdminError,
  decodeResponse,
  encodeRequest,
  type Op,
  type OpArgs,
  type OpData,
  type SnapshotEvent,
} from "../src/admin/protocol.ts";
import { errorMessage } from "../src/core/errors.ts";

/** No server answers on the socket path (absent file, refused, or not a socket). */
export class AdminUnavailable extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`no Vento admin socket answers at ${path} (${reason})`);
    this.name = "AdminUnavailable";
  }
}

/**
 * The socket may not be used: the OS refused (a 0600 socket of another user), or, `byRuntime`, this
 * program's Deno permissions do not cover the path (a bundle's `--allow-write=vento.sock`).
 */
export class AdminForbidden extends Error {
  constructor(readonly path: string, readonly reason: string, readonly byRuntime: boolean) {
    super(`permission denied on the admin socket ${path} (${reason})`);
    this.name = "AdminForbidden";
  }
}

/** The server answered `ok: false`. */
export class AdminRefused extends Error {
  constructor(readonly error: AdminError) {
    super(error.details?.length ? `${error.message}: ${error.details.join("; ")}` : error.message);
    this.name = "AdminRefused";
  }
}

/** The connection went away with requests outstanding. */
export class AdminGone extends Error {
  constructor() {
    super("the admin connection closed");
    this.name = "AdminGone";
  }
}

type Pending = { resolve: (data: unknown) => void; reject: (e: Error) => void };

const encoder = new TextEncoder();
/** A server line longer than this is treated as a protocol error (a snapshot of 4096 conns is ~1 MiB). */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** One connection to the admin socket. */
export class AdminClient {
  #conn: Deno.Conn;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #events = new Map<number, (ev: SnapshotEvent) => void>();
  #closed = false;
  /** Resolves when the connection has closed (either side). */
  readonly closed: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.closed = this.#readLoop();
  }

  /**
   * Connects to the admin socket; throws `AdminUnavailable` when nothing listens there and
   * `AdminForbidden` when this user or this program may not use it.
   */
  static async connect(path: string): Promise<AdminClient> {
    try {
      return new AdminClient(await Deno.connect({ transport: "unix", path }));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new AdminUnavailable(path, "no such socket file");
      if (e instanceof Deno.errors.ConnectionRefused) throw new AdminUnavailable(path, "connection refused");
      if (e instanceof Deno.errors.NotCapable) throw new AdminForbidden(path, e.message, true);
      if (e instanceof Deno.errors.PermissionDenied) {
        // Deno before 2 reported its own permission refusals this way too; its message says "Requires".
        throw new AdminForbidden(path, e.message, /Requires \w+ access/.test(e.message));
      }
      throw new AdminUnavailable(path, errorMessage(e));
    }
  }

  /** Sends one request and resolves with its data, or rejects with `AdminRefused` / `AdminGone`. */
  async request<K extends Exclude<Op, "subscribe">>(op: K, args?: Partial<OpArgs[K]>): Promise<OpData[K]> {
    if (this.#closed) throw new AdminGone();
    const id = this.#nextId++;
    const reply = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    await this.#write(encodeRequest(id, op, args));
    return await reply as OpData[K];
  }

  /** Starts a subscription; `onEvent` runs for every snapshot until `unsubscribe` or close. */
  async subscribe(args: Partial<OpArgs["subscribe"]>, onEvent: (ev: SnapshotEvent) => void): Promise<void> {
    if (this.#closed) throw new AdminGone();
    const id = this.#nextId++;
    this.#events.set(id, onEvent);
    await this.#write(encodeRequest(id, "subscribe", args));
  }

  async #write(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let off = 0;
    try {
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch {
      this.close();
      throw new AdminGone();
    }
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder();
    let partial = "";
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        partial += decoder.decode(buf.subarray(0, n), { stream: true });
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          if (!this.#dispatch(line)) return;
        }
        if (partial.length > MAX_REPLY_BYTES) return;
      }
    } catch {
      // closed by us or the peer
    } finally {
      this.close();
    }
  }

  /** Routes one server line; false when it is malformed (the connection is then abandoned). */
  #dispatch(line: string): boolean {
    const msg = decodeResponse(line);
    if (msg === null) return false;
    const id = msg.id;
    if (msg.ok && "event" in msg && msg.event === "snapshot" && id !== null) {
      this.#events.get(id)?.(msg.data as SnapshotEvent);
      return true;
    }
    if (id === null) {
      // An error the server could not tie to a request (BUSY, LINE_TOO_LONG): fail everything.
      if (!msg.ok) { for (const p of this.#pending.values()) p.reject(new AdminRefused(msg.error)); }
      this.#pending.clear();
      return true;
    }
    const p = this.#pending.get(id);
    if (p === undefined) {
      // An error for a subscription arrives with its id.
      return true;
    }
    this.#pending.delete(id);
    if (msg.ok) p.resolve(msg.data);
    else p.reject(new AdminRefused(msg.error));
    return true;
  }

  /** Closes the connection; outstanding requests reject with `AdminGone`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    for (const p of this.#pending.values()) p.reject(new AdminGone());
    this.#pending.clear();
    this.#events.clear();
  }
}
