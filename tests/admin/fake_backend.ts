/**
 * A scripted `AdminBackend` for the admin tests: fixed connections, clients and bans, counters that
 * grow with each `stats()` call, and a record of every action (ban, unban, kick, drain, reload).
 * Test helper only; never imported by `src/`.
 */

import type { AdminBackend } from "../../src/admin/server.ts";
import type { HelloData } from "../../src/admin/protocol.ts";
import type { ConnInfo } from "../../src/net/conn_info.ts";
import type { BanInfo, ClientInfo } from "../../src/guard/views.ts";
import { Stats } from "../../src/stats/stats.ts";
import type { Clock } from "../../src/core/clock.ts";

export const FIXED_WALL_MS = Date.UTC(2026, 0, 1, 12, 0, 0);

export function fakeConns(): ConnInfo[] {
  return [
    {
      id: 1,
      remote: "203.0.113.9",
      remotePort: 51234,
      key: "203.0.113.9",
      state: "active",
      ageMs: 65_000,
      requests: 12,
      bytesIn: 2_048,
      bytesOut: 5_000_000,
      request: "GET /big.iso HTTP/1.1",
    },
    {
      id: 2,
      remote: "198.51.100.7",
      remotePort: 40000,
      key: "198.51.100.7",
      state: "idle",
      ageMs: 3_000,
      requests: 3,
      bytesIn: 900,
      bytesOut: 12_000,
      request: "",
    },
    {
      id: 7,
      remote: "2001:db8::1",
      remotePort: 443,
      key: "2001:db8::/64",
      state: "new",
      ageMs: 120,
      requests: 0,
      bytesIn: 0,
      bytesOut: 0,
      request: "",
    },
  ];
}

export function fakeClients(): ClientInfo[] {
  return [
    { key: "203.0.113.9", conns: 1, requestRatePerSec: 18.5, requests: 1200, violations: 2, limited: false },
    { key: "198.51.100.7", conns: 1, requestRatePerSec: 0.5, requests: 30, violations: 0, limited: false },
    { key: "192.0.2.66", conns: 0, requestRatePerSec: 250, requests: 9000, violations: 51, limited: true },
  ];
}

export interface Recorded {
  bans: { target: string; ms: number; reason: string }[];
  unbans: string[];
  kicks: number[];
  drains: number;
  reloads: number;
}

/** A backend over fixed data; `stats()` advances counters by a fixed step each call. */
export class FakeBackend implements AdminBackend {
  readonly recorded: Recorded = { bans: [], unbans: [], kicks: [], drains: 0, reloads: 0 };
  readonly counters = new Stats();
  conns_: ConnInfo[] = fakeConns();
  bans_: BanInfo[] = [
    {
      key: "192.0.2.66",
      reason: "flood",
      expiresAtWallMs: FIXED_WALL_MS + 540_000,
      remainingMs: 540_000,
      offences: 2,
    },
  ];
  reloadResult: { applied: string[]; needsRestart: string[] } | { errors: string[] } = {
    applied: ["REQUEST_RATE_PER_SEC"],
    needsRestart: ["PORT"],
  };
  #clock: Clock;
  #wallMs: () => number;

  constructor(clock: Clock, wallMs: () => number = () => FIXED_WALL_MS) {
    this.#clock = clock;
    this.#wallMs = wallMs;
    this.bans_ = [
      {
        key: "192.0.2.66",
        reason: "flood",
        expiresAtWallMs: wallMs() + 540_000,
        remainingMs: 540_000,
        offences: 2,
      },
    ];
    this.counters.accepted = 100;
    this.counters.open = 3;
    this.counters.idle = 1;
    this.counters.requests = 1000;
    this.counters.responses = [0, 0, 950, 20, 25, 5];
    this.counters.status429 = 12;
    this.counters.refused.banned = 4;
    this.counters.bansActive = 1;
  }

  hello(): HelloData {
    return {
      version: "0.1.0",
      protocol: 1,
      pid: 4242,
      uptimeMs: 3_723_000,
      listen: ["[::]:8080"],
      configPath: "/srv/vento.conf",
    };
  }
  stats() {
    this.counters.requests += 10;
    this.counters.bytesOut += 1_000_000;
    this.counters.bytesIn += 1_000;
    return this.counters.snapshot(this.#clock.nowMs(), this.#wallMs());
  }
  conns(): ConnInfo[] {
    return this.conns_;
  }
  clients(limit: number): ClientInfo[] {
    return fakeClients().slice(0, limit);
  }
  bans(): BanInfo[] {
    return this.bans_;
  }
  ban(target: string, ms: number, reason: string): { ok: true } | { ok: false; error: string } {
    if (target === "127.0.0.1") return { ok: false, error: "127.0.0.1 is on the allowlist" };
    this.recorded.bans.push({ target, ms, reason });
    this.bans_ = [...this.bans_.filter((b) => b.key !== target), {
      key: target,
      reason,
      expiresAtWallMs: this.#wallMs() + ms,
      remainingMs: ms,
      offences: 1,
    }];
    return { ok: true };
  }
  unban(target: string): boolean {
    const had = this.bans_.some((b) => b.key === target);
    if (had) {
      this.recorded.unbans.push(target);
      this.bans_ = this.bans_.filter((b) => b.key !== target);
    }
    return had;
  }
  kick(id: number): boolean {
    const had = this.conns_.some((c) => c.id === id);
    if (had) this.recorded.kicks.push(id);
    return had;
  }
  reload(): Promise<{ applied: string[]; needsRestart: string[] } | { errors: string[] }> {
    this.recorded.reloads++;
    return Promise.resolve(this.reloadResult);
  }
  drain(): void {
    this.recorded.drains++;
  }
  limits(): { maxConns: number } {
    return { maxConns: 4096 };
  }
}

/** A fresh temp directory and a socket path inside it. */
export async function tempSocket(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "vento_admin_" });
  return { dir, path: `${dir}/vento.sock` };
}
