/**
 * The `accessLogDropped` counter in the admin views: `top`'s header shows it once lines were lost (and
 * says nothing while none were), `stats` and /metrics always carry it.
 */

import assert from "node:assert/strict";
import { adminViews } from "../_helpers/admin_views.ts";

const views = (dropped: number) => adminViews((s) => s.accessLogDropped = dropped);

Deno.test("top, stats and metrics count dropped access-log lines; top shows them only once there are some", () => {
  const lost = views(780);
  assert.match(lost.top, /LOG DROPPED 780/);
  assert.match(lost.stats, /access log\s+dropped 780 lines/);
  assert.match(lost.metrics, /^vento_access_log_dropped_total 780$/m);
  const fine = views(0);
  assert.doesNotMatch(fine.top, /LOG DROPPED/);
  assert.match(fine.stats, /access log\s+dropped 0 lines/);
  assert.match(fine.metrics, /^vento_access_log_dropped_total 0$/m);
});
