/**
 * Picks the route for a request: the health and metrics probes (when on, for their allowlisted peers), the
 * app module (`APP`) for the `APP_PATHS` prefixes, the built-in echo endpoint (unless `ECHO=off`), or the
 * static file responder for every other path (and, with `APP_FALLBACK=on`, the app again for a path that
 * names no file). Only this file knows the route table; per-route body limits, and
 * whether a route streams its body, are decided here, before any body byte is read.
 *
 * Settings are read from the live options object per request, so a reload reaches them; the app itself
 * is swapped whole by `setApp` (in-flight requests finish on the module they started with), the static
 * side by `setStatic` (a reload that changed the document root or its settings).
 */

import type { Exchange, Handler } from "../http/handler.ts";
import type { RequestHead } from "../http/head.ts";
import type { Reply } from "../http/response.ts";
import { buildHead } from "../http/response.ts";
import { ECHO_PATH, echoApp } from "./echo.ts";
import { AppRoute } from "./app.ts";
import { APP_FALLBACK_ROUTE, type Stats } from "../stats/stats.ts";
import type { Probes } from "./probes.ts";

const OPTIONS_STAR: Reply = {
  status: 204,
  head: buildHead(204, [["Allow", "GET, HEAD, OPTIONS, POST"]]),
  body: null,
  stream: null,
  length: 0,
  close: false,
};

/** What the router needs from the static side (see `src/static/responder.ts`). */
export interface StaticHandler {
  handle(head: RequestHead): Reply | Promise<Reply>;
}

/** The settings the router reads (the live `Config`). */
export interface RouterOptions {
  /** `ECHO`: the built-in echo endpoint answers (off: an ordinary path). */
  echo: boolean;
  echoMaxBodyBytes: number;
  /** The probe paths (`off` or a path), answered by `Probes` to their allowlisted peers. */
  healthPath: string;
  metricsPath: string;
  /** Also bounds the built-in echo app's answer. */
  appTimeoutMs: number;
  /** Path prefixes routed to the app, compared with the still percent-encoded path. */
  appPaths: string[];
  /** A static 404 goes to the app instead. */
  appFallback: boolean;
}

/** Whether `path` (path plus optional query) names the route `route` exactly. */
function isRoute(path: string, route: string): boolean {
  if (!path.startsWith(route)) return false;
  const next = path.charCodeAt(route.length);
  return Number.isNaN(next) || next === 0x3f; // end, or "?"
}

export class Router implements Handler {
  #static: StaticHandler;
  #options: RouterOptions;
  #app: AppRoute | null;
  #stats: Stats | null;
  /** The built-in echo endpoint, an app served through the same seam as APP. */
  #echo: AppRoute;
  #probes: Probes | null;

  constructor(
    staticHandler: StaticHandler,
    options: RouterOptions,
    app: AppRoute | null = null,
    stats: Stats | null = null,
    logError: (message: string) => void = (m) => console.error(m),
    probes: Probes | null = null,
  ) {
    this.#static = staticHandler;
    this.#options = options;
    this.#app = app;
    this.#stats = stats;
    this.#probes = probes;
    // Its limits are read from the live options per request, as APP's are.
    const echoOptions = {
      get appMaxBodyBytes() {
        return options.echoMaxBodyBytes;
      },
      get appTimeoutMs() {
        return options.appTimeoutMs;
      },
    };
    this.#echo = new AppRoute(echoApp, echoOptions, logError, stats);
  }

  /** Serves static files from `handler` from now on (a reload that changed the document root or its settings). */
  setStatic(handler: StaticHandler): void {
    this.#static = handler;
  }

  /** Replaces the app (a reload imported it again, or APP changed); null turns app routes off. */
  setApp(app: AppRoute | null): void {
    this.#app = app;
  }

  /** The `APP_PATHS` prefix `path` falls under, or null (also when there is no app). */
  appPrefix(path: string): string | null {
    if (this.#app === null) return null;
    const prefixes = this.#options.appPaths;
    for (let i = 0; i < prefixes.length; i++) {
      if (path.startsWith(prefixes[i])) return prefixes[i];
    }
    return null;
  }

  bodyLimitBytes(head: RequestHead): number {
    if (head.targetForm === "asterisk") return 0;
    const app = this.#app;
    if (app !== null && this.appPrefix(head.path) !== null) return app.maxBodyBytes;
    if (this.#options.echo && head.method === "POST" && isRoute(head.path, ECHO_PATH)) {
      return this.#options.echoMaxBodyBytes;
    }
    // A fallback request may reach the app: its body is kept for it (static answers close after it).
    return app !== null && this.#options.appFallback ? app.maxBodyBytes : 0;
  }

  streamsBody(head: RequestHead): boolean {
    if (head.targetForm === "asterisk") return false;
    // Every route that takes a body is an app (echo included): they all read it as a stream.
    return this.bodyLimitBytes(head) > 0;
  }

  handle(ex: Exchange): Reply | Promise<Reply> {
    // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7).
    if (ex.head.targetForm === "asterisk") return OPTIONS_STAR;
    const o = this.#options;
    if (this.#probes !== null && (o.healthPath !== "off" || o.metricsPath !== "off")) {
      const path = ex.head.path;
      const q = path.indexOf("?");
      const reply = this.#probes.answer(ex, q < 0 ? path : path.slice(0, q));
      if (reply !== null) return reply;
    }
    const app = this.#app;
    if (app !== null) {
      const prefix = this.appPrefix(ex.head.path);
      if (prefix !== null) {
        this.#stats?.countAppRequest(prefix);
        return app.handle(ex);
      }
    }
    if (o.echo && isRoute(ex.head.path, ECHO_PATH)) return this.#echo.handle(ex);
    if (app !== null && this.#options.appFallback) return this.#fallback(app, ex);
    return this.#static.handle(ex.head);
  }

  /**
   * A file answers if one matches; else the app. Only GET and HEAD reach files, so another method is
   * first asked as a GET to learn whether a file matches (and then gets the static answer, a 405).
   */
  #fallback(app: AppRoute, ex: Exchange): Reply | Promise<Reply> {
    const head = ex.head;
    const getLike = head.method === "GET" || head.method === "HEAD";
    const probe = this.#static.handle(getLike ? head : { ...head, method: "GET" });
    const decide = (reply: Reply): Reply | Promise<Reply> => {
      if (reply.status === 404) {
        reply.stream?.cancel();
        this.#stats?.countAppRequest(APP_FALLBACK_ROUTE);
        return app.handle(ex);
      }
      if (getLike) return reply;
      reply.stream?.cancel();
      return this.#static.handle(head);
    };
    return probe instanceof Promise ? probe.then(decide) : decide(probe);
  }
}
