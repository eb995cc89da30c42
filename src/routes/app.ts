/**
 * User endpoints as `deno serve`-style modules: a default export `{ fetch(request, info) }` answering a
 * Web `Request` with a `Response`. This file loads such a module (`loadApp`, cache-busted so a reload
 * imports a changed file again) and runs it for one exchange (`AppRoute`): it builds the `Request` from the
 * already parsed, limited and admitted request (absolute URL from the validated Host, headers as
 * received, the body as a stream the connection bounds), waits for the `Response` under `appTimeoutMs`
 * (then 503), and hands the conversion to `app_response.ts`.
 *
 * Must never let the app crash or stall the server: a throw or a rejection is a 500 with one log line, a
 * late answer a 503, a response Vento cannot send a 500; `request.signal` aborts when the connection
 * closes first (peer gone, kick, deadline, forced shutdown) or the answer is too late.
 */

import { pathToFileURL } from "node:url";
import { BodyError, type BodySource, type Exchange } from "../http/handler.ts";
import { type Reply, textReply } from "../http/response.ts";
import { BadResponse, type Converted, ResponseConverter } from "./app_response.ts";
import type { AppFailure, Stats } from "../stats/stats.ts";
import { checkedRequest, isPlain, lazyRequest, type RequestParts } from "./app_request.ts";
import { errorMessage } from "../core/errors.ts";

/** What `fetch` receives besides the request, as `deno serve` gives it. */
export interface AppServeInfo {
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
}

/** A loaded app: the module's default export. */
export interface AppModule {
  fetch(request: Request, info: AppServeInfo): Response | Promise<Response>;
}

/** The settings an app route reads (from `Config`, read per request so a reload reaches them). */
export interface AppOptions {
  appMaxBodyBytes: number;
  appTimeoutMs: number;
}

/** The module could not be loaded or has no usable default export. The message says what to fix. */
export class AppLoadError extends Error {}

/**
 * Imports the module at the absolute `path` and checks its default export. `generation` makes the
 * import URL new (`?v=N`), so a reload loads the file again instead of the cached module; modules it
 * imports itself stay cached as first loaded.
 */
export async function loadApp(path: string, generation: number): Promise<AppModule> {
  const url = `${pathToFileURL(path).href}?v=${generation}`;
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (e) {
    throw new AppLoadError(
      `APP ${path}: cannot load the module: ${errorMessage(e)}`,
    );
  }
  const app = mod.default as { fetch?: unknown } | undefined;
  if ((typeof app !== "object" && typeof app !== "function") || app === null) {
    throw new AppLoadError(
      `APP ${path}: the module has no default export; add \`export default { fetch(request) { … } }\``,
    );
  }
  if (typeof app.fetch !== "function") {
    throw new AppLoadError(`APP ${path}: the default export has no fetch(request, info) method`);
  }
  return app as AppModule;
}

/** Methods the Fetch standard refuses to put in a `Request` (compared case-insensitively, as it does). */
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/** Methods whose `Request` may not carry a body (the Fetch standard refuses one). */
const BODYLESS = new Set(["GET", "HEAD"]);

const TIMED_OUT: unique symbol = Symbol("timed out");

/** Distinct Host values whose URL form is remembered (an attacker's spray of hosts only evicts). */
const ORIGIN_CACHE_MAX = 256;

/** Per-exchange state the body stream and the error path share. */
interface BodyState {
  failed: boolean;
}

/** Runs one app for the exchanges the router sends it. */
export class AppRoute {
  #app: AppModule;
  #options: AppOptions;
  #logError: (message: string) => void;
  /** `scheme://host` → whether the URL standard keeps it as written (so a lazy `url` is exact). */
  #plainOrigins = new Map<string, boolean>();
  #lastPlainOrigin = "";
  #converter = new ResponseConverter();

  #stats: Stats | null;

  constructor(
    app: AppModule,
    options: AppOptions,
    logError: (message: string) => void,
    stats: Stats | null = null,
  ) {
    this.#app = app;
    this.#options = options;
    this.#logError = logError;
    this.#stats = stats;
  }

  #fail(reason: AppFailure): void {
    if (this.#stats !== null) this.#stats.appFailures[reason]++;
  }

  /** The largest body the app accepts. */
  get maxBodyBytes(): number {
    return this.#options.appMaxBodyBytes;
  }

  /**
   * Answers one exchange with the app: synchronously when `fetch` returns a Response at once and its
   * body is in memory (the common JSON answer), else a promise. Never throws or rejects.
   */
  handle(ex: Exchange): Reply | Promise<Reply> {
    const head = ex.head;
    const origin = `${ex.secure === true ? "https" : "http"}://${head.host === "" ? "localhost" : head.host}`;
    const controller = new AbortController();
    const state: BodyState = { failed: false };
    const parts: RequestParts = {
      url: origin + head.path,
      method: head.method,
      headers: head.headers,
      body: ex.bodySource != null && !BODYLESS.has(head.method) ? requestBody(ex.bodySource, state) : null,
      signal: controller.signal,
    };
    let request: Request;
    if (this.#isPlainOrigin(origin) && isPlain(head.method, head.path)) request = lazyRequest(parts);
    else {
      try {
        request = checkedRequest(parts);
      } catch {
        // What the Fetch standard refuses though RFC 9112 allowed it: a method it forbids (CONNECT, TRACE,
        // TRACK: 501, as for any method a server does not implement) or a host the URL standard cannot
        // parse (400). The client's doing, not worth a log line.
        return textReply(FORBIDDEN_METHODS.has(head.method.toUpperCase()) ? 501 : 400);
      }
    }
    const watch = ex.closeWatch;
    if (watch !== undefined) {
      watch.onClose = () => controller.abort(new DOMException("the client connection closed", "AbortError"));
    }
    const info: AppServeInfo = {
      remoteAddr: { transport: "tcp", hostname: ex.remote, port: ex.remotePort ?? 0 },
    };
    let result: Response | Promise<Response>;
    try {
      result = this.#app.fetch(request, info);
      if (result instanceof Response) {
        const converted = this.#converter.convertStatic(result);
        if (converted !== null) return this.#done(ex, converted);
      }
    } catch (e) {
      return this.#failed(ex, e, state);
    }
    return this.#answer(ex, result, controller, state);
  }

  /** Whether `origin` is in the URL standard's own form (lower-case host, no default port …). */
  #isPlainOrigin(origin: string): boolean {
    // Nearly every request of a site names the same host: compare with the last one before hashing.
    if (origin === this.#lastPlainOrigin) return true;
    let plain = this.#plainOrigins.get(origin);
    if (plain === true) this.#lastPlainOrigin = origin;
    if (plain === undefined) {
      try {
        plain = new URL(origin).origin === origin;
      } catch {
        plain = false;
      }
      if (this.#plainOrigins.size >= ORIGIN_CACHE_MAX) this.#plainOrigins.clear();
      this.#plainOrigins.set(origin, plain);
    }
    return plain;
  }

  /** The reply, after one log line for headers the app may not set. */
  #done(ex: Exchange, converted: Converted): Reply {
    if (converted.refused.length > 0) {
      const names = converted.refused.join(", ");
      this.#log(ex, `dropped response header(s) ${names}: Vento sets framing and connection headers itself`);
    }
    return converted.reply;
  }

  async #answer(
    ex: Exchange,
    result: Response | Promise<Response>,
    controller: AbortController,
    state: BodyState,
  ): Promise<Reply> {
    const timeoutMs = this.#options.appTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), timeoutMs);
    });
    try {
      // The app's Response, then the first chunk(s) of its body (which decide the framing), within the time.
      const converted = await Promise.race([
        Promise.resolve(result).then((res) => {
          if (!(res instanceof Response)) {
            throw new BadResponse(`fetch answered ${typeOfValue(res)}, not a Response`);
          }
          return this.#converter.convert(res, {
            http10: ex.head.version === 10,
            isHead: ex.head.method === "HEAD",
          });
        }),
        late,
      ]);
      if (converted === TIMED_OUT) {
        controller.abort(
          new DOMException(`no Response within APP_TIMEOUT_MS (${timeoutMs} ms)`, "TimeoutError"),
        );
        // Whatever the app answers later is dropped without reading its body.
        Promise.resolve(result).then((res) => res?.body?.cancel(), () => {}).catch(() => {});
        this.#log(ex, `no Response within APP_TIMEOUT_MS (${timeoutMs} ms); answered 503`);
        this.#fail("timeout");
        return textReply(503);
      }
      return this.#done(ex, converted);
    } catch (e) {
      return this.#failed(ex, e, state);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A throw, a rejection or an unsendable response: 500 and one log line (unless the body failed). */
  #failed(ex: Exchange, e: unknown, state: BodyState): Reply {
    // The connection answers a body that broke a limit (413, 408, 400) itself, in place of this reply.
    if (!state.failed && !(e instanceof BodyError)) {
      this.#log(ex, describe(e));
      this.#fail(e instanceof BadResponse ? "bad_response" : "exception");
    }
    return textReply(500);
  }

  #log(ex: Exchange, what: string): void {
    const path = ex.head.path.length > 200 ? ex.head.path.slice(0, 200) + "..." : ex.head.path;
    this.#logError(`conn ${ex.connId} ${ex.remote}: app: ${ex.head.method} ${JSON.stringify(path)}: ${what}`);
  }
}

/**
 * The request body as a `ReadableStream` pulled from the connection: nothing is read before the app
 * asks (high-water mark 0), so a slow app slows the client, and the connection's limits and deadlines
 * apply to every read.
 */
function requestBody(source: BodySource, state: BodyState): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await source.read();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      } catch (e) {
        // A body over a limit, too slow, malformed, or a client gone mid-body: the client's doing, which
        // the connection answers (or cannot); the app's resulting failure is not worth a log line.
        state.failed = true;
        controller.error(e);
      }
    },
  }, { highWaterMark: 0 });
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`.replace(/[\r\n]+/g, " ");
  return String(e).replace(/[\r\n]+/g, " ");
}

function typeOfValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === "object") return `a ${(v as object).constructor?.name ?? "object"}`;
  return `a ${typeof v}`;
}
