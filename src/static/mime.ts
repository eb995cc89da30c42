/**
 * Content-Type by file name, from the table generated out of mime-db (`mime_types.ts`).
 *
 * Pure; no Deno APIs. Lookup is by the last extension, case-insensitive; unknown (or no) extension is
 * `application/octet-stream`, which together with `nosniff` stops browsers from guessing.
 */

import { MIME_TYPES } from "./mime_types.ts";

/** The type for bytes we cannot name. */
export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

const BY_EXTENSION: ReadonlyMap<string, string> = new Map(MIME_TYPES);

/** The Content-Type for `name` (a file name or path; only the last segment's extension counts). */
export function contentTypeFor(name: string): string {
  const dot = name.lastIndexOf(".");
  if (dot < 0 || dot < name.lastIndexOf("/")) return DEFAULT_CONTENT_TYPE;
  return BY_EXTENSION.get(name.slice(dot + 1).toLowerCase()) ?? DEFAULT_CONTENT_TYPE;
}

/** Whether a Content-Type is HTML (it then gets `cacheControlHtml`). */
export function isHtml(contentType: string): boolean {
  return contentType.startsWith("text/html");
}
