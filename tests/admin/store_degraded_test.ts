/**
 * The `guardStoreDegraded` gauge in the admin views: `top`'s header, `stats` and /metrics say so while
 * the shared guard store is unreachable, and say nothing extra while it is fine (or not configured).
 */

import assert from "node:assert/strict";
import { Stats } from "../../src/stats/stats.ts";
import { initialState, render } from "../../cli/render.ts";
import { applySnapshot } from "../../cli/top.ts";
import { formatStats } from "../../cli/commands.ts";
import { formatMetrics } from "../../src/admin/metrics.ts";

const WALL_MS = Date.UTC(2026, 0, 1);

function views(degraded: number): { top: string; stats: string; metrics: string } {
  const s = new Stats();
  s.guardStoreDegraded = degraded;
  const report = {
    snapshot: s.snapshot(1000, WALL_MS),
    rates: initialState("", WALL_MS).rates,
    maxConns: 64,
  };
  const state = initialState("/tmp/v.sock", WALL_MS);
  state.connected = true;
  applySnapshot(state, { stats: report, conns: [], bans: [], clients: [] }, WALL_MS);
  return {
    top: render(state, { cols: 120, rows: 12 }, { color: false }).join("\n"),
    stats: formatStats(report, null).join("\n"),
    metrics: formatMetrics(report.snapshot, 64, 0),
  };
}

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
