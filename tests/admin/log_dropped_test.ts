/**
 * The `accessLogDropped` counter in the admin views: `top`'s header shows it once lines were lost (and
 * says nothing while none were), `stats` and /metrics always carry it.
 */

import assert from "node:assert/strict";
import { Stats } from "../../src/stats/stats.ts";
import { initialState, render } from "../../cli/render.ts";
import { applySnapshot } from "../../cli/top.ts";
import { formatStats } from "../../cli/commands.ts";
import { formatMetrics } from "../../src/admin/metrics.ts";

const WALL_MS = Date.UTC(2026, 0, 1);

function views(dropped: number): { top: string; stats: string; metrics: string } {
  const s = new Stats();
  s.accessLogDropped = dropped;
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
