/**
 * `POST /api/echo`: answers the request body back as `text/plain`, as the original C Vento did. Built in,
 * but written as an app (a `deno serve`-style `fetch` handler) and served through the same seam as APP
 * modules, so it is also their smallest example. The body limit (`ECHO_MAX_BODY_BYTES`, 64 KiB by
 * default) is enforced by the connection before and while the body is read; other methods get 405 with
 * `Allow`.
 */

import type { AppModule } from "./app.ts";

/** The path this route answers. */
export const ECHO_PATH = "/api/echo";

const ALLOW = "POST, OPTIONS";

/** The echo endpoint as an app. */
export const echoApp: AppModule = {
  async fetch(request: Request): Promise<Response> {
    if (request.method === "POST") {
      const body = await request.bytes();
      return new Response(body, {
        headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
      });
    }
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: { allow: ALLOW } });
    return new Response("405 Method Not Allowed\n", {
      status: 405,
      headers: { allow: ALLOW, "content-type": "text/plain; charset=utf-8" },
    });
  },
};
