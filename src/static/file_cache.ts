/**
 * The in-memory cache of small files: bytes plus fully precomputed replies, so the common request is
 * answered without a syscall. A bounded LRU: total bytes never exceed `maxBytes`, each file at most
 * `maxFileBytes`; the least recently used entries go first.
 *
 * Pure data structure; no Deno APIs, no timers. The responder decides freshness (`checkedAtMs` against
 * its `fileCacheRevalidateMs`) and reloads with one stat; this module only stores and evicts. The LRU
 * list is intrusive (prev/next on the entry) so a hit allocates nothing.
 */

import type { Reply } from "../http/response.ts";

/** What identifies the file's content on disk: a change in any field means reload. */
export interface FileIdentity {
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

/** One cached representation (a file, or one of its sidecars). */
export interface CachedFile {
  /** `relative path` + NUL + coding (`identity`, `br`, `gzip`). */
  readonly key: string;
  readonly bytes: Uint8Array;
  readonly identity: FileIdentity;
  readonly etag: string;
  /** Truncated to the second, as sent. */
  readonly lastModifiedMs: number;
  readonly contentType: string;
  /** The content coding (of a sidecar, or compressed on the fly), or null for the plain file. */
  readonly encoding: "br" | "gzip" | null;
  /** Header pairs a 304 repeats from the 200 (ETag, Last-Modified, Cache-Control, Vary). */
  readonly validatorHeaders: ReadonlyArray<readonly [string, string]>;
  /** Frozen 200 reply for GET (body = bytes) and HEAD (body = null), shared by every request. */
  readonly getReply: Reply;
  readonly headReply: Reply;
  /** Frozen 304 reply, built on first use. */
  notModified: Reply | null;
  /** Monotonic ms of the last load or successful revalidation. */
  checkedAtMs: number;
  prev: CachedFile | null;
  next: CachedFile | null;
  /** False once evicted or replaced: holders of a stale pointer must look up again. */
  live: boolean;
}

export class FileCache {
  readonly #maxBytes: number;
  readonly #maxFileBytes: number;
  readonly #map = new Map<string, CachedFile>();
  /** Most recently used. */
  #head: CachedFile | null = null;
  /** Least recently used (evicted first). */
  #tail: CachedFile | null = null;
  #bytes = 0;

  constructor(maxBytes: number, maxFileBytes: number) {
    this.#maxBytes = maxBytes;
    this.#maxFileBytes = maxFileBytes;
  }

  /** Whether a file of `size` bytes may be cached at all. */
  accepts(size: number): boolean {
    return size <= this.#maxFileBytes && size <= this.#maxBytes;
  }

  /** The entry for `key`, marked most recently used; no allocation. */
  get(key: string): CachedFile | undefined {
    const e = this.#map.get(key);
    if (e !== undefined) this.touch(e);
    return e;
  }

  /** The entry without changing its LRU position (tests, revalidation). */
  peek(key: string): CachedFile | undefined {
    return this.#map.get(key);
  }

  /** Marks `e` most recently used. */
  touch(e: CachedFile): void {
    if (this.#head === e) return;
    this.#unlink(e);
    this.#pushFront(e);
  }

  /**
   * Inserts or replaces `e.key`, then evicts least recently used entries until within `maxBytes`.
   * `maxFileBytes` overrides the per-file limit for this entry (compressed copies of files the cache
   * would not hold whole); the total budget always applies.
   */
  set(e: CachedFile, maxFileBytes = this.#maxFileBytes): boolean {
    const n = e.bytes.byteLength;
    if (n > maxFileBytes || n > this.#maxBytes) return false;
    this.delete(e.key);
    this.#map.set(e.key, e);
    this.#pushFront(e);
    e.live = true;
    this.#bytes += e.bytes.byteLength;
    while (this.#bytes > this.#maxBytes && this.#tail !== null) this.delete(this.#tail.key);
    return true;
  }

  /** Removes `key` (gone from disk, replaced, or evicted). */
  delete(key: string): void {
    const e = this.#map.get(key);
    if (e === undefined) return;
    this.#map.delete(key);
    this.#unlink(e);
    e.live = false;
    this.#bytes -= e.bytes.byteLength;
  }

  /** Drops everything. */
  clear(): void {
    for (const e of this.#map.values()) e.live = false;
    this.#map.clear();
    this.#head = this.#tail = null;
    this.#bytes = 0;
  }

  /** Bytes of file content held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held. */
  get size(): number {
    return this.#map.size;
  }

  /** Keys from most to least recently used (tests and the admin view). */
  keys(): string[] {
    const out: string[] = [];
    for (let e = this.#head; e !== null; e = e.next) out.push(e.key);
    return out;
  }

  #unlink(e: CachedFile): void {
    if (e.prev !== null) e.prev.next = e.next;
    else if (this.#head === e) this.#head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    else if (this.#tail === e) this.#tail = e.prev;
    e.prev = e.next = null;
  }

  #pushFront(e: CachedFile): void {
    e.prev = null;
    e.next = this.#head;
    if (this.#head !== null) this.#head.prev = e;
    this.#head = e;
    if (this.#tail === null) this.#tail = e;
  }
}
