/**
 * A worker thread's entry when WORKERS > 1: runs the ordinary server (`startVento`, so the data path
 * is exactly the single-threaded one) on the shared port with SO_REUSEPORT and its own event loop, with
 * the guard over the shared client table (`SharedGate`), and answers the supervisor's messages
 * (`cluster_protocol.ts`): reports, ban/unban/kick/reload/shutdown; kick and reload are answered with
 * their request id.
 *
 * Not a module a thread starts by itself: the thread runs the program's entry (main.ts, or the one file
 * of a bundle or compiled binary), which calls `runClusterWorker` when its thread name says it is a worker
 * (`WORKER_NAME_PREFIX`). main.ts hands in `startVento` and `kickBanned`, so this module imports only
 * types from it (no import cycle) and holds no module-level state (each call owns its own).
 *
 * It never opens the admin socket (the supervisor owns it) and never exits the process: a fatal error
 * surfaces as the worker's error event, and the supervisor restarts it.
 */

import type { kickBanned, StartOptions, Vento } from "../app/vento.ts";
import type { Config } from "../config/config.ts";
import { SharedGate } from "../guard/shared_gate.ts";
import { SharedClientTable } from "../guard/shared_table.ts";
import { systemClock } from "../core/clock.ts";
import { type FromWorker, globalConnId, type ToWorker } from "./protocol.ts";
import { errorMessage } from "../core/errors.ts";

/** How long METRICS_PATH waits for the supervisor's summed metrics before answering 503. */
export const METRICS_REPLY_TIMEOUT_MS = 2_000;

/** The worker thread's side of its message channel (the worker's global scope). */
export interface WorkerPort {
  postMessage(message: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
}

/** What a worker needs from the composition root, passed in rather than imported. */
export interface WorkerEntryDeps {
  startVento: (config: Config, options: StartOptions) => Promise<Vento>;
  kickBanned: typeof kickBanned;
}

/**
 * Makes this thread a Vento worker: answers the supervisor's `start` (then serves) and every later
 * message on `port`. Returns at once; the thread lives on its listener and its message handler.
 */
export function runClusterWorker(port: WorkerPort, deps: WorkerEntryDeps): void {
  const post = (message: FromWorker): void => port.postMessage(message);
  let vento: Vento | null = null;
  let gate: SharedGate | null = null;
  let index = 0;
  let lists = false;
  let reportTimer: ReturnType<typeof setInterval> | undefined;
  /** Set by the `mute` test hook: the worker then looks stuck (no reports, kicks unanswered). */
  let muted = false;
  /** METRICS_PATH requests waiting for the supervisor's text, by request id. */
  const metricsWaiting = new Map<number, (text: string | null) => void>();
  let metricsId = 0;
  /** The whole server's metrics from the supervisor; null when it does not answer in time. */
  const metricsText = (): Promise<string | null> =>
    new Promise((resolve) => {
      const id = ++metricsId;
      const timer = setTimeout(() => {
        metricsWaiting.delete(id);
        resolve(null);
      }, METRICS_REPLY_TIMEOUT_MS);
      metricsWaiting.set(id, (text) => {
        clearTimeout(timer);
        metricsWaiting.delete(id);
        resolve(text);
      });
      post({ op: "metrics", id });
    });

  const report = (): void => {
    if (vento === null || muted) return;
    const v = vento;
    const stats = v.stats.snapshot(systemClock.nowMs(), systemClock.wallMs());
    const conns = lists ? v.server.connections().map((c) => ({ ...c, id: globalConnId(c.id, index) })) : null;
    post({ op: "report", stats, conns, bans: lists ? v.guard.bans() : null });
  };

  const start = async (m: Extract<ToWorker, { op: "start" }>): Promise<void> => {
    index = m.index;
    lists = m.lists;
    const table = new SharedClientTable(m.memory);
    let started: Vento;
    try {
      // The full MAX_CONNS: the gate makes the guard count every worker's connections against it.
      started = await deps.startVento(
        { ...m.config, adminSocket: "off" },
        {
          configPath: m.configPath,
          portOverride: m.portOverride,
          reusePort: true,
          workerIndex: index,
          connIdOf: (id: number) => globalConnId(id, index),
          guardTable: table,
          metricsText,
          gate: (guard) => gate = new SharedGate(guard, table, index),
          // A ban published by another instance reaches every worker; worker 0 logs it, once.
          quietSharedBans: index !== 0,
          logError: (line) => post({ op: "log", line: `worker ${index}: ${line}` }),
        },
      );
    } catch (e) {
      post({
        op: "failed",
        name: e instanceof Error ? e.name : "Error",
        message: errorMessage(e),
      });
      return;
    }
    vento = started;
    post({ op: "listening", addr: started.addr, tlsAddr: started.tlsAddr });
    reportTimer = setInterval(report, m.reportMs);
    started.done.then(() => {
      clearInterval(reportTimer);
      for (const settle of [...metricsWaiting.values()]) settle(null);
      report();
      post({ op: "stopped" });
    });
  };

  const reload = async (v: Vento, id: number): Promise<void> => {
    post({ op: "reloaded", id, result: await v.reload() });
  };

  port.onmessage = (e: MessageEvent<ToWorker>) => {
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
        // Quiet: the supervisor logs the operator's ban once, not once per worker.
        const r = g.withLock(() => v.guard.ban(m.target, m.ms, m.reason, true));
        if (r.ok) {
          // The supervisor counts operator bans once; each worker applying one is not a new ban.
          v.stats.bansAdded--;
          deps.kickBanned(v.server, m.target, v.config);
        }
        return;
      }
      case "unban":
        g.withLock(() => v.guard.unban(m.target));
        return;
      case "kick":
        if (muted) return;
        post({ op: "kicked", id: m.id, found: v.server.kick(m.connId) });
        return;
      case "reload":
        void reload(v, m.id).catch((err) =>
          post({ op: "reloaded", id: m.id, result: { errors: [String(err)] } })
        );
        return;
      case "query":
        if (muted) return;
        post({
          op: "lists",
          id: m.id,
          conns: v.server.connections().map((c) => ({ ...c, id: globalConnId(c.id, index) })),
          bans: v.guard.bans(),
        });
        return;
      case "metrics":
        metricsWaiting.get(m.id)?.(m.text);
        return;
      case "shutdown":
        void v.shutdown();
        return;
      case "force":
        clearInterval(reportTimer);
        void v.forceStop().finally(() => post({ op: "stopped" }));
        return;
      case "crash":
        setTimeout(() => {
          throw new Error(`worker ${index}: crash requested by the supervisor`);
        }, 0);
        return;
      case "mute":
        muted = true;
        clearInterval(reportTimer);
        return;
    }
  };
}
