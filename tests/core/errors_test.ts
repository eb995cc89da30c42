/** errorMessage: an Error's message, anything else as a string. */

import assert from "node:assert/strict";
import { errorMessage } from "../../src/core/errors.ts";

Deno.test("errorMessage gives an Error's message and any other thrown value as a string", () => {
  assert.equal(errorMessage(new RangeError("out of range")), "out of range");
  assert.equal(errorMessage("plain"), "plain");
  assert.equal(errorMessage(42), "42");
  assert.equal(errorMessage(null), "null");
  assert.equal(errorMessage({ toString: () => "custom" }), "custom");
});
