/**
 * `POST /api/echo`: answers the request body back as `text/plain`, as the original C Vento did. The body
 * limit (`echoMaxBodyBytes`, 64 KiB by default) is enforced by the connection before the body is read;
 * other methods get 405 with `Allow`.
 *
 * Pure; no Deno APIs.
 */

import type { Exchange } from "../http/handler.ts";
import { buildHead, type Reply, textReply } from "../http/response.ts";

/** The path this route answers. */
export const ECHO_PATH = "/api/echo";

const ALLOW: ReadonlyArray<readonly [string, string]> = [["Allow", "POST, OPTIONS"]];

/** Answers the echo route. */
export function echoReply(ex: Exchange): Reply {
  const method = ex.head.method;
  if (method === "POST") {
    const body = ex.body;
    const head = buildHead(200, [
      ["Content-Type", "text/plain; charset=utf-8"],
      ["Content-Length", String(body.byteLength)],
      ["Cache-Control", "no-store"],
    ]);
    return { status: 200, head, body, stream: null, length: body.byteLength, close: false };
  }
  if (method === "OPTIONS") {
    const head = buildHead(204, ALLOW);
    return { status: 204, head, body: null, stream: null, length: 0, close: false };
  }
  return textReply(405, ALLOW);
}
