/**
 * Picks the route for a request: the health and metrics probes (when on, for their allowlisted peers), the
 * dynamic echo endpoint (unless `ECHO=off`), or the static file responder for every other path. Only this
 * file knows the route table; per-route body limits are decided here, before any body byte is read.
 *
 * Reads its settings from the live config on each request, so a reload reaches them. Pure apart from what
 * the static responder does.
 */

import type { Exchange, Handler } from "../http/handler.ts";
import type { RequestHead } from "../http/head.ts";
import type { Reply } from "../http/response.ts";
import { buildHead } from "../http/response.ts";
import type { Config } from "../config/config.ts";
import { ECHO_PATH, echoReply } from "./echo.ts";
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

/** The settings the router reads (pass the live `Config`). */
export type RouterOptions = Pick<Config, "echo" | "echoMaxBodyBytes" | "healthPath" | "metricsPath">;

/** Whether `path` (path plus optional query) names the route `route` exactly. */
function isRoute(path: string, route: string): boolean {
  if (!path.startsWith(route)) return false;
  const next = path.charCodeAt(route.length);
  return Number.isNaN(next) || next === 0x3f; // end, or "?"
}

export class Router implements Handler {
  #static: StaticHandler;
  #options: RouterOptions;
  #probes: Probes | null;

  constructor(staticHandler: StaticHandler, options: RouterOptions, probes: Probes | null = null) {
    this.#static = staticHandler;
    this.#options = options;
    this.#probes = probes;
  }

  /** Serves static files from `handler` from now on (a reload that changed the document root or its settings). */
  setStatic(handler: StaticHandler): void {
    this.#static = handler;
  }

  bodyLimitBytes(head: RequestHead): number {
    const o = this.#options;
    return o.echo && head.method === "POST" && isRoute(head.path, ECHO_PATH) ? o.echoMaxBodyBytes : 0;
  }

  handle(ex: Exchange): Reply | Promise<Reply> {
    // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7).
    if (ex.head.targetForm === "asterisk") return OPTIONS_STAR;
    const path = ex.head.path;
    const o = this.#options;
    if (this.#probes !== null && (o.healthPath !== "off" || o.metricsPath !== "off")) {
      const q = path.indexOf("?");
      const reply = this.#probes.answer(ex, q < 0 ? path : path.slice(0, q));
      if (reply !== null) return reply;
    }
    if (o.echo && isRoute(path, ECHO_PATH)) return echoReply(ex);
    return this.#static.handle(ex.head);
  }
}
