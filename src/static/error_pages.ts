/**
 * Error replies: `<status>.html` from the document root when present (confined, regular, at most
 * `MAX_ERROR_PAGE_BYTES`), else a small built-in page. Pages are kept with precomputed replies and
 * re-read at most every `revalidateMs`, so a flood of 404s costs no syscalls.
 *
 * Never throws: a page that cannot be read falls back to the built-in one (with one log line).
 */

import type { Clock } from "../core/clock.ts";
import { buildHead, type Reply } from "../http/response.ts";
import { statusText } from "../http/status.ts";
import { ConfinedFs } from "./confined_fs.ts";

/** Largest `<status>.html` served as an error page; bigger ones fall back to the built-in page. */
export const MAX_ERROR_PAGE_BYTES = 256 * 1024;

type Headers = ReadonlyArray<readonly [string, string]>;

interface ErrorPage {
  status: number;
  bytes: Uint8Array;
  getReply: Reply;
  headReply: Reply;
  checkedAtMs: number;
}

const encoder = new TextEncoder();

function builtinPage(status: number): Uint8Array {
  const title = `${status} ${statusText(status)}`.trim();
  return encoder.encode(
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>` +
      `<body><h1>${title}</h1></body></html>\n`,
  );
}

function pageHeaders(bytes: Uint8Array): Array<readonly [string, string]> {
  return [
    ["Content-Type", "text/html; charset=utf-8"],
    ["Content-Length", String(bytes.length)],
    ["Cache-Control", "no-cache"],
  ];
}

export class ErrorPages {
  readonly #fs: ConfinedFs;
  readonly #clock: Clock;
  readonly #revalidateMs: number;
  readonly #pages = new Map<number, ErrorPage>();

  readonly #logError: (message: string) => void;

  /** `logError` receives one line when a custom error page cannot be read (the built-in page is used). */
  constructor(fs: ConfinedFs, clock: Clock, revalidateMs: number, logError: (message: string) => void) {
    this.#logError = logError;
    this.#fs = fs;
    this.#clock = clock;
    this.#revalidateMs = revalidateMs;
  }

  /**
   * The reply for `status`: synchronous (and shared) while its page is fresh and no `extra` headers or
   * `close` are asked for. HEAD gets the same head without the body.
   */
  reply(
    status: number,
    isHead: boolean,
    close = false,
    extra: Headers | null = null,
  ): Reply | Promise<Reply> {
    const page = this.#pages.get(status);
    if (page !== undefined && this.#clock.nowMs() - page.checkedAtMs < this.#revalidateMs) {
      return this.#reply(page, isHead, close, extra);
    }
    return this.#load(status).then((p) => this.#reply(p, isHead, close, extra));
  }

  clear(): void {
    this.#pages.clear();
  }

  #reply(page: ErrorPage, isHead: boolean, close: boolean, extra: Headers | null): Reply {
    if (extra === null && !close) return isHead ? page.headReply : page.getReply;
    const head = extra === null
      ? page.getReply.head
      : buildHead(page.status, [...pageHeaders(page.bytes), ...extra]);
    const length = page.bytes.length;
    return { status: page.status, head, body: isHead ? null : page.bytes, stream: null, length, close };
  }

  async #load(status: number): Promise<ErrorPage> {
    let bytes: Uint8Array | null = null;
    if (status >= 400) {
      try {
        const found = await this.#fs.findFile(this.#fs.rootPrefix + `${status}.html`);
        if (found !== null && found.info.size <= MAX_ERROR_PAGE_BYTES) {
          bytes = (await this.#fs.readVerified(found))?.bytes ?? null;
        }
      } catch (e) {
        this.#logError(`static: reading ${status}.html: ${(e as Error).name}`);
      }
    }
    bytes ??= builtinPage(status);
    const head = buildHead(status, pageHeaders(bytes));
    const page: ErrorPage = {
      status,
      bytes,
      getReply: Object.freeze({
        status,
        head,
        body: bytes,
        stream: null,
        length: bytes.length,
        close: false,
      }),
      headReply: Object.freeze({
        status,
        head,
        body: null,
        stream: null,
        length: bytes.length,
        close: false,
      }),
      checkedAtMs: this.#clock.nowMs(),
    };
    this.#pages.set(status, page);
    return page;
  }
}
