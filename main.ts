/**
 * Vento's composition root: the only file that reads argv and signals and wires objects together.
 * load config → build stats, guard, static responder, router, access log → listen → admin socket →
 * signals → graceful shutdown.
 *
 * `startVento` is exported so end-to-end tests run exactly what `deno task start` runs, on port 0.
 *
 * It is also every worker thread's entry when WORKERS > 1: the supervisor names its threads
 * `WORKER_NAME_PREFIX` + index, and a thread so named runs `runClusterWorker` instead of `main()`. The
 * entry module is the one module a bundle or a compiled binary is sure to contain, so they need no second
 * file for their workers.
 */

import { parseArgs } from "node:util";
import { type Config, loadConfig, parseConfig, SETTINGS } from "./src/config.ts";
import { type Clock, systemClock } from "./src/net/clock.ts";
import { type ConnGate, Server } from "./src/net/server.ts";
import { Stats } from "./src/stats/stats.ts";
import { Guard } from "./src/guard/policy.ts";
import { createGuardStore, storeGate } from "./src/net/guard_store.ts";
import type { GuardTable } from "./src/guard/table.ts";
import { Cluster, resolveWorkers, startCluster, WORKER_NAME_PREFIX } from "./src/net/cluster.ts";
import { runClusterWorker, type WorkerPort } from "./src/net/cluster_worker.ts";
import { addressInCidr, banTarget } from "./src/guard/client_key.ts";
import { StaticResponder } from "./src/static/responder.ts";
import { Router } from "./src/routes/router.ts";
import { AccessLog } from "./src/access_log.ts";
import { type AdminBackend, AdminServer, AdminSocketInUse } from "./src/admin/server.ts";
import { PROTOCOL_VERSION } from "./src/admin/protocol.ts";
import { VERSION } from "./src/version.ts";

/** A running Vento. */
export interface Vento {
  readonly config: Config;
  /** The plain HTTP address (the HTTPS one when PLAIN_HTTP=off). */
  readonly addr: Deno.NetAddr;
  /** The HTTPS address, or null when TLS_CERT/TLS_KEY are off. */
  readonly tlsAddr: Deno.NetAddr | null;
  readonly server: Server;
  readonly stats: Stats;
  readonly guard: Guard;
  readonly admin: AdminServer | null;
  /** Re-reads the config file, validates it whole, applies what can change live. */
  reload(): Promise<{ applied: string[]; needsRestart: string[] } | { errors: string[] }>;
  /** Graceful shutdown (idempotent); resolves when every descriptor is released. */
  shutdown(): Promise<void>;
  /** Resolves when the server has shut down (by signal, `drain` or `shutdown()`). */
  readonly done: Promise<void>;
}

export interface StartOptions {
  /** The config file the config came from (for `reload` and `hello`); null when defaults only. */
  configPath: string | null;
  clock?: Clock;
  /** Error lines (default console.error). */
  logError?: (message: string) => void;
  /** The port given on the command line, which a reload must keep winning over PORT in the file. */
  portOverride?: number;
  /** WORKERS > 1 (set by `src/net/cluster_worker.ts`): bind with SO_REUSEPORT to share the port. */
  reusePort?: boolean;
  /** WORKERS > 1: the shared client table, so limits and bans are global across workers. */
  guardTable?: GuardTable;
  /** WORKERS > 1: wraps the guard as the server's gate (the shared table's lock around each decision). */
  gate?: (guard: Guard) => ConnGate;
}

/** Settings that a reload can apply to a running server without a restart. */
const LIVE_KEYS = new Set([
  "MAX_REQUEST_LINE_BYTES",
  "MAX_HEADER_BYTES",
  "MAX_HEADER_COUNT",
  "ECHO_MAX_BODY_BYTES",
  "MAX_REQUESTS_PER_CONN",
  "HEADER_TIMEOUT_MS",
  "IDLE_TIMEOUT_MS",
  "IDLE_TIMEOUT_BUSY_MS",
  "BODY_IDLE_TIMEOUT_MS",
  "BODY_MIN_RATE_GRACE_MS",
  "BODY_MIN_RATE_BYTES_PER_SEC",
  "SEND_TIMEOUT_MS",
  "SEND_MIN_RATE_GRACE_MS",
  "SEND_MIN_RATE_BYTES_PER_SEC",
  "SHUTDOWN_TIMEOUT_MS",
  "CLIENT_IPV6_PREFIX_BITS",
  "TRUSTED_PROXIES",
  "ALLOWLIST",
  "REQUEST_RATE_PER_SEC",
  "REQUEST_BURST",
  "CONN_RATE_PER_SEC",
  "CONN_BURST",
  "BAN_AFTER_VIOLATIONS",
  "VIOLATION_WINDOW_MS",
  "BAN_MS",
  "BAN_MAX_MS",
  "LIMIT_MODE",
  "MAX_CONNS_PER_CLIENT",
  "MAX_CONNS",
  "BUSY_THRESHOLD_PERCENT",
]);

/** Builds and starts every part of the server from a validated config. */
export async function startVento(config: Config, options: StartOptions): Promise<Vento> {
  const clock = options.clock ?? systemClock;
  const logError = options.logError ?? ((m: string) => console.error(m));
  // The live config object: reload mutates the fields that may change while running.
  const live: Config = { ...config };
  const stats = new Stats();
  const guard = new Guard(live, clock, stats, undefined, options.guardTable);
  // GUARD_STORE=redis://…: rates and bans shared with other instances (null for the default, memory).
  const store = createGuardStore(live, guard, stats, logError);
  const staticResponder = await StaticResponder.create(live, clock);
  const router = new Router(staticResponder, live);
  const accessLog = live.accessLog === "off" ? null : await AccessLog.open(live.accessLog);
  // WORKERS=1 keeps the guard itself as the gate: no wrapper on the hot path.
  const gate: ConnGate = options.gate?.(guard) ?? (store === null ? guard : storeGate(guard));
  const server = new Server({
    options: live,
    clock,
    stats,
    handler: router,
    gate,
    accessLog,
    logError,
    reusePort: options.reusePort,
  });
  let addr: Deno.NetAddr;
  let tlsAddr: Deno.NetAddr | null = null;
  try {
    if (live.plainHttp) await server.listen();
    if (live.tlsCert !== "off") {
      const [certPem, keyPem] = await Promise.all([
        Deno.readTextFile(live.tlsCert),
        Deno.readTextFile(live.tlsKey),
      ]);
      tlsAddr = await server.listenTls({ port: live.tlsPort, certPem, keyPem });
    }
    addr = server.addr;
  } catch (e) {
    server.forceClose();
    staticResponder.close();
    await accessLog?.close();
    throw e;
  }
  const startedWallMs = clock.wallMs();
  // Bans published by other instances also close the open connections they cover, as a local one does.
  await store?.start({
    ban: (target, ms, reason) => {
      guard.applySharedBan(target, ms, reason);
      kickBanned(server, target, live);
    },
    unban: (target) => guard.applySharedUnban(target),
    localBans: () => guard.bans(),
  });

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => resolveDone = r);
  let shutdownPromise: Promise<void> | null = null;
  let admin: AdminServer | null = null;

  const shutdown = (): Promise<void> => {
    shutdownPromise ??= (async () => {
      await server.shutdown(live.shutdownTimeoutMs);
      await store?.close();
      await admin?.close();
      staticResponder.close();
      await accessLog?.close();
      resolveDone();
    })();
    return shutdownPromise;
  };

  const reload = async (): Promise<{ applied: string[]; needsRestart: string[] } | { errors: string[] }> => {
    if (options.configPath === null) return { applied: [], needsRestart: [] };
    const loaded = await loadConfig(options.configPath, { portOverride: options.portOverride });
    if (!loaded.ok) return { errors: loaded.messages };
    const next = loaded.config;
    const applied: string[] = [];
    const needsRestart: string[] = [];
    for (const s of SETTINGS) {
      const before = JSON.stringify(live[s.field]);
      const after = JSON.stringify(next[s.field]);
      if (before === after) continue;
      if (LIVE_KEYS.has(s.key)) {
        (live as unknown as Record<string, unknown>)[s.field] = next[s.field];
        applied.push(s.key);
      } else {
        needsRestart.push(s.key);
      }
    }
    if (applied.length > 0) {
      // With WORKERS > 1 the guard's table is shared (a shrinking ban list clears its mirror there).
      const apply = () => guard.applyOptions(live);
      if (gate.withLock !== undefined) gate.withLock(apply);
      else apply();
    }
    try {
      await accessLog?.reopen();
    } catch (e) {
      // Rotation into an unwritable place: keep logging to the old file, and say so.
      return { errors: [`reopening the access log: ${e instanceof Error ? e.message : String(e)}`] };
    }
    return { applied, needsRestart };
  };

  const backend: AdminBackend = {
    hello: () => ({
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      pid: Deno.pid,
      uptimeMs: clock.wallMs() - startedWallMs,
      listen: [...(live.plainHttp ? [addr] : []), ...(tlsAddr === null ? [] : [tlsAddr])].map((a) =>
        `${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`
      ),
      configPath: options.configPath ?? "",
    }),
    stats: () => stats.snapshot(clock.nowMs(), clock.wallMs()),
    conns: () => server.connections(),
    clients: (limit) => guard.clients(limit),
    bans: () => guard.bans(),
    ban: (target, ms, reason) => {
      const r = guard.ban(target, ms, reason);
      if (r.ok) kickBanned(server, target, live);
      return r;
    },
    unban: (target) => guard.unban(target),
    kick: (id) => server.kick(id),
    reload,
    drain: () => void shutdown(),
    limits: () => ({ maxConns: live.maxConns }),
  };

  if (live.adminSocket !== "off") {
    try {
      admin = await AdminServer.start(live.adminSocket, backend, clock);
    } catch (e) {
      server.forceClose();
      await store?.close();
      staticResponder.close();
      await accessLog?.close();
      throw e;
    }
  }

  server.serve();
  return {
    config: live,
    addr,
    tlsAddr,
    server,
    stats,
    guard,
    admin,
    reload,
    shutdown,
    done,
  };
}

/**
 * After an operator ban, closes the open connections it covers, as the accept-time check would refuse
 * them. The target is normalised first: `2001:db8::1` bans the key `2001:db8::/64`, `127.0.0.5/32` the key
 * `127.0.0.5`; a wider CIDR covers every peer inside it except allowlisted ones (the guard exempts those).
 */
export function kickBanned(server: Server, text: string, config: Config): void {
  const target = banTarget(text, config.clientIpv6PrefixBits);
  if (target === null) return;
  if ("key" in target) {
    server.kickKey(target.key);
    return;
  }
  for (const c of server.connections()) {
    if (!addressInCidr(c.remote, target.cidr)) continue;
    if (config.allowlist.some((allowed) => addressInCidr(c.remote, allowed))) continue;
    server.kick(c.id);
  }
}

const HELP = `Vento ${VERSION}: a hardened, fast HTTP/1.1 server for static sites.

Usage: deno run -A main.ts [PORT] [options]

  PORT              listen on this port (overrides PORT in the config)
  --config PATH     config file (default: vento.conf in the working directory, if present)
  --check           validate the config and exit (0 valid, 2 invalid) without binding
  --help            show this help
  --version         print the version

Every setting is documented in vento.conf. Signals: SIGINT/SIGTERM shut down gracefully (a second one
forces), SIGHUP reloads the config and reopens the access log.`;

/**
 * The global `deno task bundle` sets to the bundle's own text (a line after the `#!`): a bundle's worker
 * threads run that text from a `blob:` URL, because a worker's module is loaded like a dynamic import and
 * the bundle file itself lies outside the `--allow-read=.` its `#!` line grants. Unset when running from
 * source or compiled: the workers then load this module's own URL.
 */
const BUNDLE_SOURCE_GLOBAL = "VENTO_BUNDLE_SOURCE";

/** The module worker threads run: this one, from its URL, or (bundled) from the bundle's text. */
function workerEntryUrl(): string {
  const globals = globalThis as unknown as Record<string, unknown>;
  const source = globals[BUNDLE_SOURCE_GLOBAL];
  if (typeof source !== "string") return import.meta.url;
  // Kept alive for the life of the process: a restarted worker loads it again.
  return URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
}

/** Runs the server from the command line. Returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string" },
        check: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (e) {
    console.error(`vento: ${e instanceof Error ? e.message : String(e)}\nTry --help.`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(`vento ${VERSION}`);
    return 0;
  }
  if (positionals.length > 1) {
    console.error(`vento: expected at most one argument (the port), got ${positionals.length}\nTry --help.`);
    return 2;
  }
  let portOverride: number | undefined;
  if (positionals.length === 1) {
    const p = positionals[0];
    if (!/^\d{1,5}$/.test(p) || Number(p) > 65535) {
      console.error(`vento: port must be a number from 0 to 65535, got "${p}"`);
      return 2;
    }
    portOverride = Number(p);
  }
  const loaded = await loadConfig(values.config ?? null, { portOverride });
  if (!loaded.ok) {
    for (const m of loaded.messages) console.error(`vento: ${m}`);
    return 2;
  }
  const configPath = loaded.found ? loaded.path : null;
  if (values.check) {
    console.log(`vento: ${loaded.found ? loaded.path : "defaults (no config file)"}: OK`);
    return 0;
  }

  // WORKERS > 1: worker threads behind a supervisor; 1: this thread serves, exactly as before.
  const workers = resolveWorkers(loaded.config.workers);
  let vento: Vento | Cluster;
  try {
    vento = workers > 1
      ? await startCluster(loaded.config, workers, {
        configPath,
        portOverride,
        workerUrl: workerEntryUrl(),
        onStuck: (index) => {
          // Deno cannot stop a thread spinning in JavaScript; its listener would hold its share of new
          // connections unanswered. Exit non-zero so the service manager starts a clean process.
          console.error(`vento: worker ${index} is stuck; exiting for the service manager to restart Vento`);
          Deno.exit(70);
        },
      })
      : await startVento(loaded.config, { configPath, portOverride });
  } catch (e) {
    if (e instanceof AdminSocketInUse) console.error(`vento: ${e.message}`);
    else if (e instanceof Deno.errors.AddrInUse) {
      const c = loaded.config;
      const ports = [...(c.plainHttp ? [c.port] : []), ...(c.tlsCert === "off" ? [] : [c.tlsPort])];
      console.error(`vento: port ${ports.join(" or ")} on ${c.host} is already in use`);
    } else console.error(`vento: cannot start: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  const urls: [string, Deno.NetAddr][] = loaded.config.plainHttp ? [["http", vento.addr]] : [];
  if (vento.tlsAddr !== null) urls.push(["https", vento.tlsAddr]);
  const shown = urls.map(([scheme, a]) =>
    `${scheme}://${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}/`
  );
  console.log(
    `vento ${VERSION} listening on ${shown.join(" and ")} serving ${loaded.config.documentRoot}` +
      (workers > 1 ? ` with ${workers} worker threads` : ""),
  );

  let signals = 0;
  const onStop = () => {
    signals++;
    if (signals === 1) {
      console.log("vento: shutting down (send the signal again to force)");
      void vento.shutdown();
    } else {
      if (vento instanceof Cluster) vento.forceClose();
      else vento.server.forceClose();
      Deno.exit(1);
    }
  };
  const onHup = () => {
    vento.reload().catch((e) => ({ errors: [String(e)] })).then((r) => {
      if ("errors" in r) console.error(`vento: reload refused:\n  ${r.errors.join("\n  ")}`);
      else {
        console.log(
          `vento: reloaded; applied: ${r.applied.join(", ") || "nothing"}` +
            (r.needsRestart.length > 0 ? `; needs a restart: ${r.needsRestart.join(", ")}` : ""),
        );
      }
    });
  };
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGHUP", onHup);
  await vento.done;
  Deno.removeSignalListener("SIGINT", onStop);
  Deno.removeSignalListener("SIGTERM", onStop);
  Deno.removeSignalListener("SIGHUP", onHup);
  console.log("vento: stopped");
  return 0;
}

// Re-exported for tools that validate configs without starting (bench, tests).
export { parseConfig };

/** The name of this thread: "vento-worker-<i>" in a supervisor's worker, "" on the main thread. */
const threadName = (globalThis as unknown as { name?: unknown }).name;
if (typeof threadName === "string" && threadName.startsWith(WORKER_NAME_PREFIX)) {
  runClusterWorker(self as unknown as WorkerPort, { startVento, kickBanned });
} else if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
