/**
 * The `guardStoreDegraded` gauge in the admin views: `top`'s header, `stats` and /metrics say so while
 * the shared guard store is unreachable, and say nothing extra while it is fine (or not configured).
 */

import assert from "node:assert/strict";
import { adminViews } from "../_helpers/admin_views.ts";

const views = (degraded: number) => adminViews((s) => s.guardStoreDegraded = degraded);

Deno.test("top, stats and metrics show a degraded guard store, and only then", () => {
  const bad = views(1);
  assert.match(bad.top, /STORE DEGRADED/);
  assert.match(bad.stats, /guard store\s+DEGRADED/);
  assert.match(bad.metrics, /^vento_guard_store_degraded 1$/m);
  const fine = views(0);
  assert.doesNotMatch(fine.top, /STORE/);
  assert.doesNotMatch(fine.stats, /guard store/);
  assert.match(fine.metrics, /^vento_guard_store_degraded 0$/m);
});
