import assert from "node:assert/strict";
import type { Reply } from "../../src/http/response.ts";
import { type CachedFile, FileCache } from "../../src/static/file_cache.ts";

function entry(key: string, size: number): CachedFile {
  const bytes = new Uint8Array(size);
  const reply: Reply = {
    status: 200,
    head: new Uint8Array(0),
    body: bytes,
    stream: null,
    length: size,
    close: false,
  };
  return {
    key,
    bytes,
    identity: { size, mtimeMs: 0, ino: 1, dev: 1 },
    etag: '"x"',
    lastModifiedMs: 0,
    contentType: "text/plain",
    encoding: null,
    validatorHeaders: [],
    getReply: reply,
    headReply: reply,
    notModified: null,
    checkedAtMs: 0,
    prev: null,
    next: null,
    live: false,
  };
}

Deno.test("file cache evicts least recently used entries beyond maxBytes", () => {
  const cache = new FileCache(100, 50);
  const a = entry("a", 40);
  cache.set(a);
  cache.set(entry("b", 40));
  assert.ok(cache.get("a") !== undefined); // a becomes most recent
  cache.set(entry("c", 40));
  assert.deepEqual(cache.keys(), ["c", "a"]);
  assert.equal(cache.bytes, 80);
  assert.equal(cache.peek("b"), undefined);
  assert.equal(a.live, true);
});

Deno.test("file cache refuses files above maxFileBytes and marks replaced entries dead", () => {
  const cache = new FileCache(100, 50);
  assert.equal(cache.set(entry("big", 51)), false);
  assert.equal(cache.size, 0);
  const first = entry("k", 10);
  cache.set(first);
  const second = entry("k", 20);
  cache.set(second);
  assert.equal(first.live, false, "holders of the old entry must look up again");
  assert.equal(second.live, true);
  assert.equal(cache.bytes, 20);
  cache.delete("k");
  assert.equal(second.live, false);
  assert.equal(cache.bytes, 0);
  assert.deepEqual(cache.keys(), []);
});

Deno.test("file cache keeps its LRU list consistent under many operations", () => {
  const cache = new FileCache(1000, 1000);
  const live = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const key = `k${(i * 7919) % 53}`;
    if (i % 5 === 0) {
      cache.delete(key);
      live.delete(key);
    } else {
      const size = (i * 31) % 97;
      cache.set(entry(key, size));
      live.set(key, size);
    }
    assert.ok(cache.bytes <= 1000);
    const keys = cache.keys();
    assert.equal(keys.length, cache.size);
    assert.equal(new Set(keys).size, keys.length);
    assert.equal(keys.reduce((n, k) => n + cache.peek(k)!.bytes.length, 0), cache.bytes);
  }
});

Deno.test("file cache takes a per-entry file limit (compressed copies) but never beyond the total budget", () => {
  const cache = new FileCache(100, 50);
  assert.equal(cache.set(entry("big", 80)), false, "above the per-file limit");
  assert.equal(cache.set(entry("big", 80), 90), true, "allowed by the entry's own limit");
  assert.equal(cache.bytes, 80);
  assert.equal(cache.set(entry("huge", 120), 1000), false, "never above the total budget");
  assert.equal(cache.set(entry("small", 30)), true);
  assert.deepEqual(cache.keys(), ["small"], "the budget still evicts");
});
