/**
 * Vento's command line: the only file that reads argv and signals. Parses the arguments, loads the config,
 * starts one Vento (`src/app/vento.ts`) or a supervisor with worker threads (`src/cluster/`), and turns
 * SIGINT/SIGTERM into a graceful shutdown (a second signal forces) and SIGHUP into a reload.
 *
 * It is also every worker thread's entry when WORKERS > 1: the supervisor names its threads
 * `WORKER_NAME_PREFIX` + index, and a thread so named runs `runClusterWorker` instead of `main()`. The
 * entry module is the one module a bundle or a compiled binary is sure to contain, so they need no second
 * file for their workers.
 */

import { parseArgs } from "node:util";
import { loadConfig } from "./src/config/config.ts";
import { Cluster, resolveWorkers, startCluster, WORKER_NAME_PREFIX } from "./src/cluster/supervisor.ts";
import { runClusterWorker, type WorkerPort } from "./src/cluster/worker.ts";
import { FORCED_STOP_FLUSH_MS, kickBanned, startVento, type Vento } from "./src/app/vento.ts";
import { AdminSocketInUse } from "./src/admin/server.ts";
import { describeReload } from "./src/admin/protocol.ts";
import { preflight, tlsPairNotes } from "./src/app/preflight.ts";
import { HEADERS_FILE, loadSiteRules, REDIRECTS_FILE, SiteRulesError } from "./src/static/site_rules.ts";
import { DEFAULT_HASH_ITERATIONS, hashPassword } from "./src/static/basic_auth.ts";
import { precompressSite } from "./src/static/precompress.ts";
import { VERSION } from "./src/core/version.ts";
import { errorMessage } from "./src/core/errors.ts";

const HELP = `Vento ${VERSION}: a hardened, fast HTTP/1.1 server for static sites.

Usage: vento [PORT] [options]
       vento --precompress [DIR] [--config PATH]
  (from source: deno task start [PORT] [options]; bundled: dist/vento.js; compiled: dist/vento)

  PORT              listen on this port (overrides PORT in the config)
  --config PATH     config file (default: vento.conf in the working directory, if present)
  --check           run every start-up check without binding, then exit (0 would start, 2 would not):
                    config and the site's _headers and _redirects, document root readable, access log
                    opens, TLS key matches certificate, ports, admin socket folder
  --hash-password   read a password from stdin and print its hash for a Basic-Auth line in _headers
  --precompress     write .br/.gz sidecars (brotli 11, gzip 9) for every file of DIR (default: the
                    config's DOCUMENT_ROOT) that COMPRESS_TYPES and COMPRESS_MIN_BYTES select, skipping
                    fresh ones; exit 0, or 1 if a file could not be compressed
  --help            show this help
  --version         print the version

Every setting is documented in vento.conf. Signals: SIGINT/SIGTERM shut down gracefully (a second one
forces), SIGHUP reloads the config (as \`vento-admin reload\`) and reopens the access log.
Exit codes: 0 stopped cleanly or --check passed, 1 forced stop, 2 bad arguments, config or start-up
problem (each message names the setting and the fix), 70 a stuck worker thread.`;

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

/**
 * `--hash-password`: reads one password from stdin (typed without echo on a terminal, or piped) and prints
 * its `$pbkdf2-sha256$…` hash. Returns the exit code.
 */
async function printPasswordHash(): Promise<number> {
  const bytes: number[] = [];
  const buf = new Uint8Array(256);
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    console.error("password (not shown): ");
    Deno.stdin.setRaw(true);
  }
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const chunk = buf.subarray(0, n);
      if (tty && chunk.includes(0x03)) return 130; // Ctrl-C in raw mode
      const end = tty ? chunk.findIndex((b) => b === 0x0d || b === 0x0a) : -1;
      bytes.push(...(end < 0 ? chunk : chunk.subarray(0, end)));
      if (end >= 0 || bytes.length > 4096) break;
    }
  } finally {
    if (tty) Deno.stdin.setRaw(false);
  }
  // A piped password usually ends with the newline `echo` added; it is not part of the password.
  const password = new TextDecoder().decode(new Uint8Array(bytes)).replace(/\r?\n$/, "");
  if (password === "" || password.length > 1024) {
    console.error("vento: --hash-password needs a password of 1 to 1024 characters on stdin");
    return 2;
  }
  console.log(await hashPassword(password, DEFAULT_HASH_ITERATIONS));
  return 0;
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
        "hash-password": { type: "boolean" },
        precompress: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (e) {
    console.error(`vento: ${errorMessage(e)}\nTry --help.`);
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
  if (values["hash-password"]) return await printPasswordHash();
  if (positionals.length > 1) {
    const what = values.precompress ? "the folder" : "the port";
    console.error(`vento: expected at most one argument (${what}), got ${positionals.length}\nTry --help.`);
    return 2;
  }
  if (values.precompress) return await precompress(values.config ?? null, positionals[0] ?? null);
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
  // What a start would refuse (log, TLS pair, document root, ports), before anything binds.
  const problems = await preflight(loaded.config, loaded.locate);
  if (problems.length > 0) {
    for (const m of problems) console.error(`vento: ${m}`);
    return 2;
  }
  const rules = await loadSiteRules(loaded.config.documentRoot);
  if (!rules.ok) {
    for (const m of rules.messages) console.error(`vento: ${m}`);
    return 2;
  }
  const c = loaded.config;
  const notes = c.tlsCert === "off" ? [] : await tlsPairNotes(c.tlsCert, Date.now());
  for (const n of notes) console.error(`vento: warning: ${n}`);
  if (values.check) {
    const host = c.host.includes(":") ? `[${c.host}]` : c.host;
    const listen = [
      ...(c.plainHttp ? [`http://${host}:${c.port}/`] : []),
      ...(c.tlsCert === "off" ? [] : [`https://${host}:${c.tlsPort}/`]),
    ];
    const r = rules.rules;
    const count = (n: number) => `${n} rule${n === 1 ? "" : "s"}`;
    const site = r === null
      ? ""
      : ` (${HEADERS_FILE}: ${count(r.headers.length)}, ${REDIRECTS_FILE}: ${count(r.redirects.length)})`;
    console.log(
      `vento: ${loaded.found ? loaded.path : "defaults (no config file)"}: OK${site}; would listen on ` +
        `${listen.join(" and ")} serving ${c.documentRoot}`,
    );
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
    // Bind failures arrive phrased (`PORT=80: …`), from this thread or, with WORKERS > 1, from a worker.
    if (e instanceof AdminSocketInUse) console.error(`vento: ${e.message}`);
    else if (e instanceof SiteRulesError) { for (const m of e.messages) console.error(`vento: ${m}`); }
    else console.error(`vento: cannot start: ${errorMessage(e)}`);
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

  // Every way out of the process (a forced stop, a stuck worker's exit, an uncaught error) removes the
  // admin socket file, so the next start finds no stale socket and scripts see the server is gone. An
  // uncaught error does not run `unload`, so its events do it too (without handling the error: the
  // process still ends as it would).
  const onExit = () => vento.admin?.removeSocketFileSync();
  globalThis.addEventListener("unload", onExit);
  globalThis.addEventListener("error", onExit);
  globalThis.addEventListener("unhandledrejection", onExit);
  let signals = 0;
  const onStop = () => {
    signals++;
    if (signals === 1) {
      console.log("vento: shutting down (send the signal again to force)");
      void vento.shutdown();
    } else if (signals === 2) {
      console.error(`vento: forced stop: closing every connection, flushing the access log`);
      // `forceStop` is bounded; this is the backstop should anything in it hang regardless.
      setTimeout(() => Deno.exit(1), FORCED_STOP_FLUSH_MS * 2);
      void vento.forceStop();
    } else Deno.exit(1);
  };
  const onHup = () => {
    vento.reload().catch((e) => ({ errors: [String(e)] })).then((r) => {
      if ("errors" in r) {
        console.error(`vento: reload refused, the running config is unchanged:\n  ${r.errors.join("\n  ")}`);
      } else console.log(describeReload(r).map((l) => `vento: ${l}`).join("\n"));
    });
  };
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGHUP", onHup);
  await vento.done;
  Deno.removeSignalListener("SIGINT", onStop);
  Deno.removeSignalListener("SIGTERM", onStop);
  Deno.removeSignalListener("SIGHUP", onHup);
  if (signals >= 2) {
    console.error("vento: stopped (forced)");
    return 1;
  }
  console.log("vento: stopped");
  return 0;
}

/** `--precompress [DIR]`: sidecars for a whole site, with the config's types, minimum size and DOTFILES. */
async function precompress(configPath: string | null, dir: string | null): Promise<number> {
  const loaded = await loadConfig(configPath);
  if (!loaded.ok) {
    for (const m of loaded.messages) console.error(`vento: ${m}`);
    return 2;
  }
  const root = dir ?? loaded.config.documentRoot;
  try {
    if (!(await Deno.stat(root)).isDirectory) {
      console.error(`vento: --precompress: ${root} is not a directory`);
      return 2;
    }
  } catch (e) {
    console.error(`vento: --precompress: ${root}: ${errorMessage(e)}`);
    return 2;
  }
  const started = performance.now();
  const r = await precompressSite(root, loaded.config);
  for (const e of r.errors) console.error(`vento: precompress: ${e}`);
  const skipped = r.notSmaller > 0 ? `, ${r.notSmaller} skipped as not smaller` : "";
  const removed = r.removed > 0 ? `, ${r.removed} stale removed` : "";
  const errors = r.errors.length > 0 ? `, ${r.errors.length} errors` : "";
  console.log(
    `vento: precompressed ${root}: ${r.files} files to compress; ${r.written} sidecars written, ` +
      `${r.fresh} already fresh${skipped}${removed}${errors} (${Math.round(performance.now() - started)} ms)`,
  );
  return r.errors.length > 0 ? 1 : 0;
}

/** The name of this thread: "vento-worker-<i>" in a supervisor's worker, "" on the main thread. */
const threadName = (globalThis as unknown as { name?: unknown }).name;
if (typeof threadName === "string" && threadName.startsWith(WORKER_NAME_PREFIX)) {
  runClusterWorker(self as unknown as WorkerPort, { startVento, kickBanned });
} else if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
