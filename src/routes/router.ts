/**
 * Picks the route for a request: the dynamic echo endpoint, or the static file responder for every other
 * path. Only this file knows the route table; per-route body limits are decided here, before any body
 * byte is read.
 *
 * Pure apart from what the static responder does.
 */

import type { Exchange, Handler } from "../http/handler.ts";
import type { RequestHead } from "../http/head.ts";
import type { Reply } from "../http/response.ts";
import { buildHead } from "../http/response.ts";
import { ECHO_PATH, echoReply } from "./echo.ts";

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

/** Whether `path` (path plus optional query) names the route `route` exactly. */
function isRoute(path: string, route: string): boolean {
  if (!path.startsWith(route)) return false;
  const next = path.charCodeAt(route.length);
  return Number.isNaN(next) || next === 0x3f; // end, or "?"
}

export class Router implements Handler {
  #static: StaticHandler;
  /** The live options object (read per request, so a reload of ECHO_MAX_BODY_BYTES reaches it). */
  readonly #options: { readonly echoMaxBodyBytes: number };

  constructor(staticHandler: StaticHandler, options: { readonly echoMaxBodyBytes: number }) {
    this.#static = staticHandler;
    this.#options = options;
  }

  /** Serves static files from `handler` from now on (a reload that changed the document root or its settings). */
  setStatic(handler: StaticHandler): void {
    this.#static = handler;
  }

  bodyLimitBytes(head: RequestHead): number {
    return head.method === "POST" && isRoute(head.path, ECHO_PATH) ? this.#options.echoMaxBodyBytes : 0;
  }

  handle(ex: Exchange): Reply | Promise<Reply> {
    // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7).
    if (ex.head.targetForm === "asterisk") return OPTIONS_STAR;
    if (isRoute(ex.head.path, ECHO_PATH)) return echoReply(ex);
    return this.#static.handle(ex.head);
  }
}
