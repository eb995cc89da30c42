/**
 * The three admin views of one stats snapshot, as an operator sees them: `top`'s screen, `vento-admin
 * stats` and the Prometheus metrics. `set` adjusts a fresh `Stats` before the snapshot is taken.
 */

import { Stats } from "../../src/stats/stats.ts";
import { initialState, render } from "../../cli/render.ts";
import { applySnapshot } from "../../cli/top.ts";
import { formatStats } from "../../cli/commands.ts";
import { formatMetrics } from "../../src/admin/metrics.ts";

const WALL_MS = Date.UTC(2026, 0, 1);

export function adminViews(set: (s: Stats) => void): { top: string; stats: string; metrics: string } {
  const s = new Stats();
  set(s);
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
