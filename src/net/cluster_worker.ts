/**
 * A worker thread's entry when WORKERS > 1: runs the ordinary server (`startVento`, so the data path
 * is exactly the single-threaded one) on the shared port with SO_REUSEPORT and its own event loop, with
 * the guard over the shared client table (`SharedGate`), and answers the supervisor's messages
 * (`cluster_protocol.ts`): reports, ban/unban/kick/reload/shutdown.
 *
 * It never opens the admin socket (the supervisor owns it) and never exits the process: a fatal error
 * surfaces as the worker's error event, and the supervisor restarts it.
 */

import { kickBanned, startVento, type Vento } from "../../main.ts";
import { SharedGate } from "../guard/shared_gate.ts";
import { SharedClientTable } from "../guard/shared_table.ts";
import { systemClock } from "./clock.ts";
import { type FromWorker, globalConnId, type ToWorker } from "./cluster_protocol.ts";

const scope = self as unknown as {
  postMessage(message: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};

function post(message: FromWorker): void {
  scope.postMessage(message);
}

/** This worker's share of the server-wide connection cap (the kernel spreads connections evenly). */
function shareOf(maxConns: number, workers: number): number {
  return Math.max(1, Math.ceil(maxConns / workers));
}

let vento: Vento | null = null;
let gate: SharedGate | null = null;
let index = 0;
let workers = 1;
let lists = false;
/** The configured (whole-server) MAX_CONNS, which this worker holds a share of. */
let fullMaxConns = 0;
let reportTimer: ReturnType<typeof setInterval> | undefined;

function report(): void {
  if (vento === null) return;
  const v = vento;
  const stats = v.stats.snapshot(systemClock.nowMs(), systemClock.wallMs());
  const conns = lists ? v.server.connections().map((c) => ({ ...c, id: globalConnId(c.id, index) })) : null;
  post({ op: "report", stats, conns, bans: lists ? v.guard.bans() : null });
}

async function start(m: Extract<ToWorker, { op: "start" }>): Promise<void> {
  index = m.index;
  workers = m.workers;
  lists = m.lists;
  fullMaxConns = m.config.maxConns;
  const table = new SharedClientTable(m.memory);
  try {
    vento = await startVento(
      { ...m.config, adminSocket: "off", maxConns: shareOf(m.config.maxConns, workers) },
      {
        configPath: m.configPath,
        portOverride: m.portOverride,
        reusePort: true,
        guardTable: table,
        gate: (guard) => gate = new SharedGate(guard, table, index),
        logError: (line) => post({ op: "log", line: `worker ${index}: ${line}` }),
      },
    );
  } catch (e) {
    post({
      op: "failed",
      name: e instanceof Error ? e.name : "Error",
      message: e instanceof Error ? e.message : String(e),
    });
    return;
  }
  post({ op: "listening", addr: vento.addr, tlsAddr: vento.tlsAddr });
  reportTimer = setInterval(report, m.reportMs);
  vento.done.then(() => {
    clearInterval(reportTimer);
    report();
    post({ op: "stopped" });
  });
}

async function reload(id: number): Promise<void> {
  const v = vento!;
  const result = await v.reload();
  if (!("errors" in result) && result.applied.includes("MAX_CONNS")) {
    // The live value is this worker's share: a reload sees it differ from the file every time.
    const full = v.config.maxConns;
    if (full === fullMaxConns) result.applied = result.applied.filter((k) => k !== "MAX_CONNS");
    fullMaxConns = full;
    v.config.maxConns = shareOf(full, workers);
    gate!.withLock(() => v.guard.applyOptions(v.config));
  }
  post({ op: "reloaded", id, result });
}

scope.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.op === "start") {
    void start(m);
    return;
  }
  const v = vento;
  if (v === null || gate === null) return;
  const g = gate;
  switch (m.op) {
    case "lists":
      lists = m.on;
      if (lists) report();
      return;
    case "ban": {
      const r = g.withLock(() => v.guard.ban(m.target, m.ms, m.reason));
      if (r.ok) {
        // The supervisor counts operator bans once; each worker applying one is not a new ban.
        v.stats.bansAdded--;
        kickBanned(v.server, m.target, v.config);
      }
      return;
    }
    case "unban":
      g.withLock(() => v.guard.unban(m.target));
      return;
    case "kick":
      v.server.kick(m.id);
      return;
    case "reload":
      void reload(m.id).catch((err) => post({ op: "reloaded", id: m.id, result: { errors: [String(err)] } }));
      return;
    case "shutdown":
      void v.shutdown();
      return;
    case "crash":
      setTimeout(() => {
        throw new Error(`worker ${index}: crash requested by the supervisor`);
      }, 0);
      return;
    case "mute":
      clearInterval(reportTimer);
      return;
  }
};
