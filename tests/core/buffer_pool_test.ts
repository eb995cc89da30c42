import assert from "node:assert/strict";
import { BufferPool } from "../../src/core/buffer_pool.ts";

Deno.test("buffer pool reuses released buffers and keeps at most maxKept idle", () => {
  const pool = new BufferPool(1024, 2);
  const bufs = [pool.acquire(), pool.acquire(), pool.acquire()];
  assert.equal(pool.inUse, 3);
  assert.ok(bufs.every((b) => b.byteLength === 1024));
  assert.equal(new Set(bufs).size, 3, "never the same buffer twice");
  for (const b of bufs) pool.release(b);
  assert.equal(pool.inUse, 0);
  assert.equal(pool.idle, 2);
  const again = pool.acquire();
  assert.ok(again === bufs[0] || again === bufs[1]);
  pool.release(again);
  pool.clear();
  assert.equal(pool.idle, 0);
});
