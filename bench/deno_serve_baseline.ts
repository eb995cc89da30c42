/**
 * The `Deno.serve` + `Deno.open` baseline of bench/load.ts: a tiny static-file server that serves a file
 * the way `@std/http`'s file server (`serveDir` → `serveFile`) does, so the bench can show what Vento gains
 * over the idiomatic Deno answer on the same machine and the same files.
 *
 * Per request, as std does: `Deno.stat` the path (directory → 404), compute std's file-info ETag (SHA-256
 * of the mtime, weak), `Deno.open` the file and answer `new Response(file.readable, …)` with
 * content-length, content-type, etag and last-modified. Missing → 404. No caching of handles, metadata or
 * bytes: that per-request file-system work is the cost being measured. Conditional requests, ranges and
 * directory listings are left out (the bench sends none) rather than imitated halfway.
 *
 * Must never: listen anywhere but 127.0.0.1, serve a path outside `--root` (`..` segments and NUL are
 * refused), or log per request (that would measure the console, not the file path).
 * Usage: `deno run --allow-net --allow-read bench/deno_serve_baseline.ts --port N --root DIR`.
 */

import { parseArgs } from "node:util";
import { errorMessage } from "../src/core/errors.ts";

/** Loopback only: the bench aims at nothing else. */
const BASELINE_HOST = "127.0.0.1";

/**
 * The few types the bench serves; std's `contentType(extname(path))` looks the same extensions up in
 * mime-db (a map lookup either way, so the cost is alike).
 */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".bin": "application/octet-stream",
  ".html": "text/html; charset=UTF-8",
  ".txt": "text/plain; charset=UTF-8",
  ".css": "text/css; charset=UTF-8",
  ".js": "text/javascript; charset=UTF-8",
  ".json": "application/json; charset=UTF-8",
};

const encoder = new TextEncoder();

/** std's ETag of a file (`eTag(fileInfo)`): size in hex and 27 base64 chars of SHA-256(mtime), weak. */
async function fileInfoEtag(info: Deno.FileInfo): Promise<string | null> {
  if (info.mtime === null) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(info.mtime.toJSON())));
  const hash = btoa(String.fromCharCode(...digest)).substring(0, 27);
  return `W/"${info.size.toString(16)}-${hash}"`;
}

/** The file under `root` that `pathname` names, or null when it is malformed or would leave the root. */
function fsPath(root: string, pathname: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes("\0")) return null;
  const segments = decoded.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) return null;
  return `${root}/${segments.join("/")}`;
}

function extname(path: string): string {
  const slash = path.lastIndexOf("/");
  const dot = path.lastIndexOf(".");
  return dot > slash + 1 ? path.slice(dot).toLowerCase() : "";
}

const plain = (status: number, text: string): Response =>
  new Response(text, { status, headers: { "content-type": "text/plain; charset=UTF-8" } });

/** Serves one request as std's `serveDir` + `serveFile` would for a plain GET. */
async function handle(root: string, req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") return plain(405, "Method Not Allowed");
  const path = fsPath(root, new URL(req.url).pathname);
  if (path === null) return plain(400, "Bad Request");
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? plain(404, "Not Found") : plain(500, "Internal Server Error");
  }
  if (!info.isFile) return plain(404, "Not Found");

  const headers = new Headers();
  const type = CONTENT_TYPES[extname(path)];
  if (type !== undefined) headers.set("content-type", type);
  if (info.mtime !== null) headers.set("last-modified", info.mtime.toUTCString());
  const etag = await fileInfoEtag(info);
  if (etag !== null) headers.set("etag", etag);
  headers.set("content-length", String(info.size));
  if (req.method === "HEAD") return new Response(null, { status: 200, headers });

  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? plain(404, "Not Found") : plain(500, "Internal Server Error");
  }
  // The stream closes the file when it ends or the client goes away (cancel).
  return new Response(file.readable, { status: 200, headers });
}

function main(args: string[]): number {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: { port: { type: "string" }, root: { type: "string" } },
    }));
  } catch (e) {
    console.error(`deno_serve_baseline: ${errorMessage(e)}`);
    return 2;
  }
  const port = Number(values.port);
  if (values.port === undefined || !/^\d+$/.test(values.port) || port < 1 || port > 65535) {
    console.error("deno_serve_baseline: --port must be a TCP port (1-65535)");
    return 2;
  }
  if (values.root === undefined || values.root === "") {
    console.error("deno_serve_baseline: --root DIR is required");
    return 2;
  }
  const root = values.root.replace(/\/+$/, "") || "/";
  Deno.serve({
    hostname: BASELINE_HOST,
    port,
    onListen: (addr) => console.log(`deno_serve_baseline listening on ${addr.hostname}:${addr.port}`),
    onError: (e) => {
      console.error(`deno_serve_baseline: serving a request: ${errorMessage(e)}`);
      return plain(500, "Internal Server Error");
    },
  }, (req) => handle(root, req));
  return 0;
}

if (import.meta.main) {
  const code = main(Deno.args);
  if (code !== 0) Deno.exit(code);
}
