/**
 * The `Request` an app receives: a real `Request` (`instanceof Request`, every method and property of
 * the Fetch standard), built lazily. Most handlers read only `url`, `method`, a header or two and maybe
 * `signal`; those come straight from the parsed head without constructing Deno's `Request` (whose
 * constructor, with its URL parse, header validation and signal wiring, cost more than the rest of the
 * exchange). The first use of anything else (the body, `clone()`, passing it to `fetch` or
 * `new Request`) builds the full `Request` once, from the same head, and delegates to it from then on.
 *
 * Must never: give two different answers for one property (once built, the full `Request` is the only
 * source, and the lazily made `Headers` object is the one it was built from), or trust the head beyond
 * what the parser validated (`Headers` validates names and values again when built).
 */

/** Everything a Request is made from. */
export interface RequestParts {
  /** Absolute URL (already a valid URL string for the happy path; `URL` parsing is left to the full build). */
  url: string;
  method: string;
  /** Header fields as received: `[name0, value0, name1, value1, …]`, names lower-cased. */
  headers: string[];
  /** The body stream, or null for none. */
  body: ReadableStream<Uint8Array> | null;
  /** Aborted by the server (connection closed, answer too late). */
  signal: AbortSignal;
}

/** The internal (symbol-keyed) slots Deno's Request methods and `new Request(input)` read from a Request. */
const SLOTS: readonly symbol[] = Object.getOwnPropertySymbols(new Request("http://localhost/"));

/** Module-private key of the method that builds (once) and returns the full Request. */
const FULL: unique symbol = Symbol("full request");

class LazyRequest {
  #parts: RequestParts;
  #headers: Headers | null = null;
  #full: Request | null = null;

  constructor(parts: RequestParts) {
    this.#parts = parts;
  }

  [FULL](): Request {
    if (this.#full !== null) return this.#full;
    const p = this.#parts;
    const init: RequestInit & { duplex?: "half" } = {
      method: p.method,
      headers: this.headers,
      signal: p.signal,
    };
    if (p.body !== null) {
      init.body = p.body;
      init.duplex = "half";
    }
    return this.#full = new Request(p.url, init);
  }

  get url(): string {
    return this.#full !== null ? this.#full.url : this.#parts.url;
  }

  get method(): string {
    return this.#full !== null ? this.#full.method : this.#parts.method;
  }

  get headers(): Headers {
    if (this.#full !== null) return this.#full.headers;
    if (this.#headers === null) {
      const h = new Headers();
      const list = this.#parts.headers;
      for (let i = 0; i < list.length; i += 2) h.append(list[i], list[i + 1]);
      this.#headers = h;
    }
    return this.#headers;
  }

  get signal(): AbortSignal {
    return this.#full !== null ? this.#full.signal : this.#parts.signal;
  }

  get body(): ReadableStream<Uint8Array> | null {
    return this[FULL]().body;
  }

  get bodyUsed(): boolean {
    if (this.#full !== null) return this.#full.bodyUsed;
    return false;
  }

  get redirect(): RequestRedirect {
    return this[FULL]().redirect;
  }
  get cache(): RequestCache {
    return this[FULL]().cache;
  }
  get credentials(): RequestCredentials {
    return this[FULL]().credentials;
  }
  get integrity(): string {
    return this[FULL]().integrity;
  }
  get keepalive(): boolean {
    return this[FULL]().keepalive;
  }
  get mode(): RequestMode {
    return this[FULL]().mode;
  }
  get referrer(): string {
    return this[FULL]().referrer;
  }
  get referrerPolicy(): ReferrerPolicy {
    return this[FULL]().referrerPolicy;
  }
  get destination(): RequestDestination {
    return this[FULL]().destination;
  }
  clone(): Request {
    return this[FULL]().clone();
  }
  arrayBuffer(): Promise<ArrayBuffer> {
    return this[FULL]().arrayBuffer();
  }
  blob(): Promise<Blob> {
    return this[FULL]().blob();
  }
  bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return this[FULL]().bytes();
  }
  formData(): Promise<FormData> {
    return this[FULL]().formData();
  }
  json(): Promise<unknown> {
    return this[FULL]().json();
  }
  text(): Promise<string> {
    return this[FULL]().text();
  }
}

// `instanceof Request`, `Symbol.toStringTag` and the inherited internals: Deno's own code that reads a
// Request's slots (`new Request(req)`, `fetch(req)`, the prototype's internal getters) reads them from the
// full Request.
Object.setPrototypeOf(LazyRequest.prototype, Request.prototype);
for (const slot of SLOTS) {
  Object.defineProperty(LazyRequest.prototype, slot, {
    get(this: LazyRequest) {
      return (this[FULL]() as unknown as Record<symbol, unknown>)[slot];
    },
    configurable: true,
  });
}
const DEFAULT_INSPECT = Symbol.for("Deno.customInspect");
Object.defineProperty(LazyRequest.prototype, DEFAULT_INSPECT, {
  value(this: LazyRequest, inspect: (v: unknown, o: unknown) => string, options: unknown) {
    return inspect(this[FULL](), options);
  },
  configurable: true,
});

/**
 * Path-and-query bytes the URL standard keeps exactly as sent (RFC 3986 unreserved, sub-delims but `'`,
 * `:`, `@`, `/`, `%`, and `?`): 1 in the table. A lazy `url` then equals the one the full Request holds.
 */
const PLAIN_TARGET_BYTE = (() => {
  const t = new Uint8Array(128);
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&()*+,;=:@/%?") {
    t[c.charCodeAt(0)] = 1;
  }
  return t;
})();
/** A dot segment (`.`, `..`, or their `%2e` spellings), which the URL standard removes. */
const DOT_SEGMENT = /\/(\.|%2[eE]){1,2}(\/|\?|$)/;
/** Methods the URL standard keeps as sent and the Fetch standard allows. */
const PLAIN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/**
 * Whether a request with this method and origin-form target can be served lazily: its URL path and
 * method are what the full Request would hold. (The origin is checked by the caller.)
 */
export function isPlain(method: string, target: string): boolean {
  if (!PLAIN_METHODS.has(method) || target.charCodeAt(0) !== 0x2f) return false;
  let dot = false;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c >= 128 || PLAIN_TARGET_BYTE[c] === 0) return false;
    if (c === 0x2e || c === 0x25) dot = true;
  }
  // Only a target with a "." or a "%" can hold a dot segment.
  return !dot || !DOT_SEGMENT.test(target);
}

/** A `Request` for `parts`, built lazily (see the module comment). Only for `isPlain` parts. */
export function lazyRequest(parts: RequestParts): Request {
  return new LazyRequest(parts) as unknown as Request;
}

/**
 * Builds the full Request now: the URL and headers the Fetch standard refuses (which RFC 9112 may allow)
 * throw here, where the caller can answer 400, rather than inside the app on first use.
 */
export function checkedRequest(parts: RequestParts): Request {
  const r = new LazyRequest(parts);
  r[FULL]();
  return r as unknown as Request;
}
