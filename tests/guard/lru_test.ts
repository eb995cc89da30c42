/** The slot LRU both client tables share: against a plain array model, over random operations. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { NO_SLOT, SlotLru } from "../../src/guard/lru.ts";

const SLOTS = 8;

function makeLru(): SlotLru {
  return new SlotLru(new Int32Array(SLOTS), new Int32Array(SLOTS), new Int32Array([NO_SLOT, NO_SLOT]), 0, 1);
}

Deno.test("an empty LRU has no tail and no length", () => {
  const lru = makeLru();
  assert.equal(lru.tail, NO_SLOT);
  assert.equal(lru.length, 0);
});

Deno.test("the tail is the least recently pushed or touched slot", () => {
  const lru = makeLru();
  lru.pushHead(0);
  lru.pushHead(1);
  lru.pushHead(2);
  assert.equal(lru.tail, 0);
  lru.moveToHead(0);
  assert.equal(lru.tail, 1);
  lru.unlink(1);
  assert.equal(lru.tail, 2);
  assert.equal(lru.length, 2);
});

Deno.test("head and tail can live in another table's header words (the shared layout)", () => {
  const header = new Int32Array([7, 7, NO_SLOT, 7, NO_SLOT]);
  const lru = new SlotLru(new Int32Array(SLOTS), new Int32Array(SLOTS), header, 2, 4);
  lru.pushHead(5);
  assert.deepEqual([...header], [7, 7, 5, 7, 5]);
});

Deno.test("property: push, unlink and touch behave as a most-recent-first array", () => {
  const op = fc.record({ kind: fc.constantFrom("push", "unlink", "touch"), slot: fc.nat(SLOTS - 1) });
  fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
    const lru = makeLru();
    const model: number[] = [];
    for (const { kind, slot } of ops) {
      const on = model.includes(slot);
      if (kind === "push" && !on) {
        lru.pushHead(slot);
        model.unshift(slot);
      } else if (kind === "unlink" && on) {
        lru.unlink(slot);
        model.splice(model.indexOf(slot), 1);
      } else if (kind === "touch" && on) {
        lru.moveToHead(slot);
        model.splice(model.indexOf(slot), 1);
        model.unshift(slot);
      }
      assert.equal(lru.length, model.length);
      assert.equal(lru.tail, model.length === 0 ? NO_SLOT : model[model.length - 1]);
    }
  }));
});
