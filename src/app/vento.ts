/**
 * Assembling one Vento from a validated config: stats, guard (and its shared store), static responder,
 * router, access log, server, admin socket; reload and graceful shutdown of what it built.
 *
 * `startVento` is what `deno task start` runs on one thread, what every worker thread runs when
 * WORKERS > 1, and what end-to-end tests run on port 0. It reads no argv, env or signals: the CLI
 * (`main.ts`) does that and calls it.
 */

import { settleWithin } from "../core/settle.ts";
import { type Config, loadConfig, type Reload, SETTINGS } from "../config/config.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { type ConnGate, Server } from "../net/server.ts";
import { Stats } from "../stats/stats.ts";
import { Guard } from "../guard/policy.ts";
import { createGuardStore } from "../guard/store/guard_store.ts";
import type { GuardTable } from "../guard/table.ts";
import { addressInCidr, banTarget } from "../guard/client_key.ts";
import { StaticResponder } from "../static/responder.ts";
import { Router } from "../routes/router.ts";
import { AppRoute, loadApp } from "../routes/app.ts";
import { AccessLog } from "./access_log.ts";
import { HEADERS_FILE, loadSiteRules, REDIRECTS_FILE, SiteRulesError } from "../static/site_rules.ts";
import { Probes } from "../routes/probes.ts";
import { formatMetrics } from "../admin/metrics.ts";
import { type AdminBackend, AdminServer, AdminSocketInUse, helloData } from "../admin/server.ts";
import { bindErrorMessage, preflight, StartError } from "./preflight.ts";
import { errorMessage } from "../core/errors.ts";

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
  reload(): Promise<ReloadAnswer>;
  /** Graceful shutdown (idempotent); resolves when every descriptor is released. */
  shutdown(): Promise<void>;
  /**
   * The forced stop (a second signal): closes every connection now, then flushes the access log and
   * removes the admin socket, waiting at most `FORCED_STOP_FLUSH_MS`. The process exits after it.
   */
  forceStop(): Promise<void>;
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
  /** WORKERS > 1 (set by `src/cluster/worker.ts`): bind with SO_REUSEPORT to share the port. */
  reusePort?: boolean;
  /** WORKERS > 1: the shared client table, so limits and bans are global across workers. */
  guardTable?: GuardTable;
  /**
   * WORKERS > 1: the whole server's Prometheus text (every worker's counters, from the supervisor) for
   * METRICS_PATH; null when it could not be had. Without it METRICS_PATH shows this server's own counters.
   */
  metricsText?: () => Promise<string | null>;
  /** WORKERS > 1: wraps the guard as the server's gate (the shared table's lock around each decision). */
  gate?: (guard: Guard) => ConnGate;
  /** WORKERS > 1: every worker applies another instance's ban; all but one apply it without a log line. */
  /** WORKERS > 1: this worker's index (access-log lines name it). */
  workerIndex?: number;
  /** WORKERS > 1: the server-wide id of this worker's connection `id` (as the admin `conns` list shows it). */
  connIdOf?: (id: number) => number;
  quietSharedBans?: boolean;
}

/**
 * How long a forced stop (a second signal) waits for the access log's last lines to be written and the
 * admin socket to be removed before the process exits anyway (a disk that hangs must not keep it alive).
 */
export const FORCED_STOP_FLUSH_MS = 1_000;

/** Keys a reload applies on the live config (`reload: "live"` in SETTINGS). */
const LIVE_KEYS = keysReloaded("live");
/** Keys whose change builds a new static responder (`reload: "files"`). */
const STATIC_KEYS = keysReloaded("files");

function keysReloaded(how: Reload): ReadonlySet<string> {
  return new Set(SETTINGS.filter((s) => s.reload === how).map((s) => s.key));
}

/** What a reload answers: the keys applied and the keys waiting for a restart, or why it was refused. */
export type ReloadAnswer = { applied: string[]; needsRestart: string[] } | { errors: string[] };

/** Builds and starts every part of the server from a validated config. */
export async function startVento(config: Config, options: StartOptions): Promise<Vento> {
  const clock = options.clock ?? systemClock;
  const logError = options.logError ?? ((m: string) => console.error(m));
  // The live config object: reload mutates the fields that may change while running.
  const live: Config = { ...config };
  const stats = new Stats();
  const startedWallMs = clock.wallMs();
  // `_headers` / `_redirects`: a bad line stops the start (before anything is opened), as a bad vento.conf
  // line does.
  const siteRules = await loadSiteRules(live.documentRoot);
  if (!siteRules.ok) throw new SiteRulesError(siteRules.messages);
  let ruleTexts = siteRules.texts;
  // The app module first: a module that fails to load stops start-up before anything is bound. Each
  // worker thread runs this too, so each loads its own copy. `appGeneration` makes every import new.
  let appGeneration = 0;
  const appRoute = live.app === "off"
    ? null
    : new AppRoute(await loadApp(live.app, appGeneration), live, logError, stats);
  const guard = new Guard(live, clock, stats, undefined, options.guardTable);
  // GUARD_STORE=redis://…: rates and bans shared with other instances (null for the default, memory).
  const store = createGuardStore(live, guard, stats, logError);
  // `let`: a reload may replace the responder (DOCUMENT_ROOT and its settings) and the access log.
  let staticResponder = await StaticResponder.create(live, clock, undefined, logError);
  staticResponder.setRules(siteRules.rules);
  // The probes read the server once it exists (they answer only after `serve()`).
  let serverRef: Server | null = null;
  const probes = new Probes(live, {
    serving: () => serverRef !== null && !serverRef.shuttingDown,
    metrics: options.metricsText ?? (() =>
      formatMetrics(
        stats.snapshot(clock.nowMs(), clock.wallMs()),
        live.maxConns,
        clock.wallMs() - startedWallMs,
      )),
  });
  const router = new Router(staticResponder, live, appRoute, stats, logError, probes);
  // Lost lines are counted in stats (and so in `stats`, `metrics` and `top`) and reported on the error log.
  const worker = options.workerIndex;
  const openLog = (c: Config) =>
    AccessLog.open(c.accessLog, {
      format: c.accessLogFormat,
      worker: worker ?? 0,
      ...(options.connIdOf === undefined ? {} : { connIdOf: options.connIdOf }),
    }, { counters: stats, logError });
  let accessLog = live.accessLog === "off" ? null : await openLog(live);
  // WORKERS=1 keeps the guard itself as the gate: no wrapper on the hot path.
  const gate: ConnGate = options.gate?.(guard) ?? guard;
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
  /** The certificate and key the HTTPS listener uses now (a reload compares the files with them). */
  let tlsPems: { certPem: string; keyPem: string } | null = null;
  try {
    if (live.plainHttp) {
      try {
        await server.listen();
      } catch (e) {
        throw new StartError(bindErrorMessage(e, "PORT", live.host, live.port));
      }
    }
    if (live.tlsCert !== "off") {
      const [certPem, keyPem] = await Promise.all([
        Deno.readTextFile(live.tlsCert),
        Deno.readTextFile(live.tlsKey),
      ]);
      tlsPems = { certPem, keyPem };
      try {
        tlsAddr = await server.listenTls({ port: live.tlsPort, certPem, keyPem });
      } catch (e) {
        throw new StartError(bindErrorMessage(e, "TLS_PORT", live.host, live.tlsPort));
      }
    }
    addr = server.addr;
  } catch (e) {
    server.forceClose();
    staticResponder.close();
    await accessLog?.close();
    throw e;
  }
  serverRef = server;
  // Bans published by other instances also close the open connections they cover, as a local one does.
  await store?.start({
    ban: (target, ms, reason) => {
      guard.applySharedBan(target, ms, reason, options.quietSharedBans === true);
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

  const forceStop = async (): Promise<void> => {
    server.forceClose();
    await settleWithin(
      Promise.all([store?.close(), admin?.close(), accessLog?.close()]),
      FORCED_STOP_FLUSH_MS,
    );
    staticResponder.close();
    resolveDone();
  };

  // All or nothing: everything that can fail (reading and validating the file and the site's rule files,
  // opening the access log again) happens before anything changes; the answer lists exactly what took effect.
  const reload = async (): Promise<ReloadAnswer> => {
    const loaded = options.configPath === null
      ? null
      : await loadConfig(options.configPath, { portOverride: options.portOverride });
    if (loaded !== null && !loaded.ok) return { errors: loaded.messages };
    const next = loaded === null ? live : loaded.config;
    // The rules are validated with the config, from the root the new config serves.
    const rules = await loadSiteRules(next.documentRoot);
    if (!rules.ok) return { errors: rules.messages };
    const ruleFilesChanged = ([HEADERS_FILE, REDIRECTS_FILE] as const).filter((n) =>
      rules.texts[n] !== ruleTexts[n]
    );
    if (loaded === null) {
      // Without a config file only the rule files can change.
      staticResponder.setRules(rules.rules);
      ruleTexts = rules.texts;
      return { applied: ruleFilesChanged, needsRestart: [] };
    }
    // What a start would refuse, a reload refuses too, before anything changes.
    const problems = await preflight(next, loaded.locate);
    if (problems.length > 0) return { errors: problems };
    // The app is imported again (a changed file takes effect) before anything is applied: a module that
    // no longer loads refuses the whole reload and the old one keeps serving.
    let nextApp: AppRoute | null = null;
    if (next.app !== "off") {
      try {
        nextApp = new AppRoute(await loadApp(next.app, ++appGeneration), live, logError, stats);
      } catch (e) {
        return { errors: [errorMessage(e)] };
      }
    }

    const changed = SETTINGS.filter((s) => JSON.stringify(live[s.field]) !== JSON.stringify(next[s.field]));
    const keys = new Set(changed.map((s) => s.key));
    const needsRestart: string[] = [];
    const applied: string[] = [];
    // HTTPS switched on or off is a listening address: a restart. A new pair (other paths, or the same
    // files renewed in place) is swapped in below.
    const tlsToggled = (live.tlsCert === "off") !== (next.tlsCert === "off");
    for (const s of changed) {
      if (s.reload === "live" || s.reload === "files" || s.reload === "log" || s.reload === "app") continue;
      if (s.reload === "tls" && !tlsToggled) continue;
      needsRestart.push(s.key);
    }

    // Prepare everything that can fail first; nothing is applied unless all of it succeeded.
    let nextStatic: StaticResponder | null = null;
    let nextLog: AccessLog | null = null;
    const release = async () => {
      nextStatic?.close();
      await nextLog?.close();
    };
    try {
      if (changed.some((s) => STATIC_KEYS.has(s.key))) {
        nextStatic = await StaticResponder.create(next, clock, undefined, logError);
        nextStatic.setRules(rules.rules);
      }
      if (keys.has("ACCESS_LOG") && next.accessLog !== "off") nextLog = await openLog(next);
    } catch (e) {
      const key = nextStatic === null ? "DOCUMENT_ROOT" : "ACCESS_LOG";
      await release();
      return { errors: [`${loaded.locate(key)}: ${key}: ${errorMessage(e)}`] };
    }
    // The same log path: a rotation reopens it, prepared here (the new file opened) and committed below.
    let reopen: { commit(): void } | null = null;
    if (!keys.has("ACCESS_LOG")) {
      try {
        reopen = (await accessLog?.prepareReopen()) ?? null;
      } catch (e) {
        // Rotation into an unwritable place: nothing changes, logging goes on to the old file.
        await release();
        return {
          errors: [
            `reopening the access log ${live.accessLog}: ${errorMessage(e)}` +
            " (nothing was applied; the old file stays in use)",
          ],
        };
      }
    }
    let nextPems: { certPem: string; keyPem: string } | null = null;
    if (tlsPems !== null && !tlsToggled) {
      try {
        const [certPem, keyPem] = await Promise.all([
          Deno.readTextFile(next.tlsCert),
          Deno.readTextFile(next.tlsKey),
        ]);
        if (certPem !== tlsPems.certPem || keyPem !== tlsPems.keyPem) {
          await server.replaceTls(certPem, keyPem);
          nextPems = { certPem, keyPem };
        }
      } catch (e) {
        await release();
        const why = errorMessage(e);
        return {
          errors: [`${loaded.locate("TLS_CERT")}: the new TLS_CERT/TLS_KEY were not applied: ${why}`],
        };
      }
    }

    // Apply: from here nothing fails.
    for (const s of changed) {
      if (needsRestart.includes(s.key)) continue;
      (live as unknown as Record<string, unknown>)[s.field] = next[s.field];
      applied.push(s.key);
    }
    if (nextPems !== null) {
      // Renewed in place (same paths): still a change the operator made, so it is reported.
      if (nextPems.certPem !== tlsPems!.certPem && !applied.includes("TLS_CERT")) applied.push("TLS_CERT");
      if (nextPems.keyPem !== tlsPems!.keyPem && !applied.includes("TLS_KEY")) applied.push("TLS_KEY");
      tlsPems = nextPems;
    }
    if (nextStatic !== null) {
      const old = staticResponder;
      staticResponder = nextStatic;
      router.setStatic(nextStatic);
      old.close();
    } else {
      staticResponder.setRules(rules.rules);
    }
    ruleTexts = rules.texts;
    applied.push(...ruleFilesChanged);
    // New requests go to the new module; in-flight ones finish on the one they started with.
    router.setApp(nextApp);
    if (nextApp !== null && !applied.includes("APP")) applied.push("APP");
    if (keys.has("ACCESS_LOG")) {
      const old = accessLog;
      accessLog = nextLog;
      server.setAccessLog(nextLog);
      await old?.close();
    }
    if (changed.some((s) => LIVE_KEYS.has(s.key))) {
      // With WORKERS > 1 the guard's table is shared (a shrinking ban list clears its mirror there).
      const apply = () => guard.applyOptions(live);
      if (gate.withLock !== undefined) gate.withLock(apply);
      else apply();
      admin?.setOptions({ idleTimeoutMs: live.adminIdleTimeoutMs, sendTimeoutMs: live.adminSendTimeoutMs });
    }
    if (keys.has("ACCESS_LOG_FORMAT")) accessLog?.setFormat(live.accessLogFormat);
    reopen?.commit();
    return { applied, needsRestart };
  };

  const backend: AdminBackend = {
    hello: () =>
      helloData(
        startedWallMs,
        clock.wallMs(),
        [...(live.plainHttp ? [addr] : []), ...(tlsAddr === null ? [] : [tlsAddr])],
        options.configPath,
      ),
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
      admin = await AdminServer.start(live.adminSocket, backend, clock, {
        idleTimeoutMs: live.adminIdleTimeoutMs,
        sendTimeoutMs: live.adminSendTimeoutMs,
        logError,
      });
    } catch (e) {
      server.forceClose();
      await store?.close();
      staticResponder.close();
      await accessLog?.close();
      if (e instanceof AdminSocketInUse) throw e;
      throw new StartError(
        `ADMIN_SOCKET "${live.adminSocket}": cannot create the socket (${
          errorMessage(e)
        }): make its folder writable by this user, or set ADMIN_SOCKET elsewhere (off for none)`,
      );
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
    forceStop,
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
