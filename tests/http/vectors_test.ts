/**
 * Runs every golden vector in `tests/vectors/*.md` whole, byte by byte, and split at every offset into
 * two feeds: each run must render the same log, and the whole run must match the case's expected log.
 * See `tests/_helpers/vectors.ts` for the file format.
 */

import assert from "node:assert/strict";
import { compareLog, drive, parseVectors, type Vector } from "../_helpers/vectors.ts";

const VECTOR_DIR = new URL("../vectors/", import.meta.url);
const MIN_VECTOR_CASES = 130;

function loadAll(): Map<string, Vector[]> {
  const files = new Map<string, Vector[]>();
  const names = [...Deno.readDirSync(VECTOR_DIR)].filter((e) => e.isFile && e.name.endsWith(".md")).map((e) =>
    e.name
  ).sort();
  for (const name of names) {
    files.set(name, parseVectors(Deno.readTextFileSync(new URL(name, VECTOR_DIR)), `tests/vectors/${name}`));
  }
  return files;
}

const ALL = loadAll();

Deno.test("golden vector files hold at least 130 cases with unique names", () => {
  const names = [...ALL.values()].flat().map((v) => v.name);
  assert.ok(names.length >= MIN_VECTOR_CASES, `only ${names.length} cases`);
  assert.equal(new Set(names).size, names.length, "case names are unique");
});

for (const [file, vectors] of ALL) {
  Deno.test(`golden vectors in ${file} parse identically under every chunking`, async (t) => {
    for (const v of vectors) {
      await t.step(v.name, () => {
        const whole = drive(v.input, [], v.limits);
        const diff = compareLog(whole, v.expected);
        assert.equal(diff, null, `${v.where}: ${diff}`);
        const n = v.input.length;
        const bytewise = Array.from({ length: Math.max(0, n - 1) }, (_, k) => k + 1);
        assert.deepEqual(drive(v.input, bytewise, v.limits), whole, `${v.where}: byte by byte`);
        for (let cut = 1; cut < n; cut++) {
          assert.deepEqual(drive(v.input, [cut], v.limits), whole, `${v.where}: split at ${cut}`);
        }
      });
    }
  });
}
