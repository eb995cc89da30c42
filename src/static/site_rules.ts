/**
 * Reads a site's `_headers` and `_redirects` from the document root (at start, for `--check`, and on each
 * reload) into `SiteRules`, or every problem as `PATH:LINE: problem`. A missing file is no rules; a file
 * larger than `MAX_RULES_FILE_BYTES`, not UTF-8, or not a regular file is an error. Never throws.
 */

import {
  type HeaderRule,
  MAX_RULES_FILE_BYTES,
  type Parsed,
  parseHeadersFile,
  parseRedirectsFile,
  type RedirectRule,
  type SiteRules,
} from "./rules.ts";
import { errorMessage } from "../core/errors.ts";

/** The two file names, read from the document root and never served. */
export const HEADERS_FILE = "_headers";
export const REDIRECTS_FILE = "_redirects";

export type LoadedRules =
  | {
    ok: true;
    rules: SiteRules | null;
    /** Each file's text (null: absent), so a reload can say which of them changed. */
    texts: Record<typeof HEADERS_FILE | typeof REDIRECTS_FILE, string | null>;
  }
  | { ok: false; messages: string[] };

/** Start-up refused: the rule files hold errors (each `PATH:LINE: problem`). */
export class SiteRulesError extends Error {
  constructor(readonly messages: string[]) {
    super(messages.join("\n"));
    this.name = "SiteRulesError";
  }
}

/** The text of `path`, null when it does not exist, or a problem. */
async function readRulesFile(path: string): Promise<{ text: string | null } | { error: string }> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) return { error: `${path}: not a regular file` };
    if (info.size > MAX_RULES_FILE_BYTES) {
      return { error: `${path}: larger than ${MAX_RULES_FILE_BYTES} bytes (${info.size})` };
    }
    const bytes = await Deno.readFile(path);
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { text: null };
    if (e instanceof TypeError) return { error: `${path}: not valid UTF-8` };
    return { error: `${path}: cannot be read: ${errorMessage(e)}` };
  }
}

/** Loads both files from `documentRoot` (an absolute path). */
export async function loadSiteRules(documentRoot: string): Promise<LoadedRules> {
  const dir = documentRoot.endsWith("/") ? documentRoot : documentRoot + "/";
  const messages: string[] = [];
  const texts: Record<string, string | null> = { [HEADERS_FILE]: null, [REDIRECTS_FILE]: null };
  const parse = async <T>(name: string, parser: (text: string) => Parsed<T>): Promise<T[]> => {
    const path = dir + name;
    const read = await readRulesFile(path);
    if ("error" in read) {
      messages.push(read.error);
      return [];
    }
    if (read.text === null) return [];
    texts[name] = read.text;
    const parsed = parser(read.text);
    if (parsed.ok) return parsed.rules;
    for (const e of parsed.errors) messages.push(`${path}:${e.line}: ${e.message}`);
    return [];
  };
  const headers: HeaderRule[] = await parse(HEADERS_FILE, parseHeadersFile);
  const redirects: RedirectRule[] = await parse(REDIRECTS_FILE, parseRedirectsFile);
  if (messages.length > 0) return { ok: false, messages };
  const t = texts as Record<typeof HEADERS_FILE | typeof REDIRECTS_FILE, string | null>;
  if (headers.length === 0 && redirects.length === 0) return { ok: true, rules: null, texts: t };
  const rules = { headers, redirects, hasAuth: headers.some((h) => h.auth !== null) };
  return { ok: true, rules, texts: t };
}
