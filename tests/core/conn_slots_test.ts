/**
 * The server's connection slots: values come back from forEach/find until removed, freed slots are
 * reused first (the array stays as dense as the peak), removal is idempotent, and a random add/remove
 * sequence agrees with a Map model.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ConnSlots } from "../../src/core/conn_slots.ts";

function values<T>(s: ConnSlots<T>): T[] {
  const out: T[] = [];
  s.forEach((v) => out.push(v));
  return out;
}

Deno.test("ConnSlots: add, remove, size, forEach and find", () => {
  const s = new ConnSlots<string>();
  const a = s.add("a");
  const b = s.add("b");
  const c = s.add("c");
  assert.deepEqual([a, b, c], [0, 1, 2]);
  assert.equal(s.size, 3);
  s.remove(b);
  assert.equal(s.size, 2);
  assert.deepEqual(values(s), ["a", "c"]);
  assert.equal(s.find((v) => v === "b"), undefined);
  assert.equal(s.find((v) => v === "c"), "c");
  // Idempotent, and out-of-range slots are ignored.
  s.remove(b);
  s.remove(-1);
  s.remove(99);
  assert.equal(s.size, 2);
  // The freed slot is reused before the array grows.
  assert.equal(s.add("d"), b);
  assert.deepEqual(values(s), ["a", "d", "c"]);
});

Deno.test("ConnSlots: a removed value is no longer referenced (its slot is cleared at once)", () => {
  const s = new ConnSlots<{ n: number }>();
  const slot = s.add({ n: 1 });
  s.remove(slot);
  let seen = 0;
  s.forEach(() => seen++);
  assert.equal(seen, 0);
  assert.equal(s.find(() => true), undefined);
});

Deno.test("ConnSlots: property: agrees with a Map model; slots never exceed the peak size", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(40)), { maxLength: 300 }), (ops) => {
      const s = new ConnSlots<number>();
      const model = new Map<number, number>(); // slot -> value
      let next = 0;
      let peak = 0;
      for (const [isAdd, pick] of ops) {
        if (isAdd || model.size === 0) {
          const v = next++;
          const slot = s.add(v);
          assert.ok(!model.has(slot), "a live slot was handed out twice");
          model.set(slot, v);
          peak = Math.max(peak, model.size);
          assert.ok(slot < peak, `slot ${slot} beyond the peak ${peak}`);
        } else {
          const slots = [...model.keys()];
          const slot = slots[pick % slots.length];
          s.remove(slot);
          model.delete(slot);
        }
        assert.equal(s.size, model.size);
      }
      assert.deepEqual(values(s).sort((x, y) => x - y), [...model.values()].sort((x, y) => x - y));
    }),
  );
});
