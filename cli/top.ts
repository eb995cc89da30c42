/**
 * The `top` loop: subscribe to snapshots → update state → render → draw. Redraws only on data, keys
 * or resize (idle CPU at 1 Hz stays far below 1 %), reconnects every second while the server is gone,
 * and restores the terminal on every exit path through one `finally`.
 *
 * Terminal effects live in `terminal.ts`, drawing in `render.ts`, key meaning in `keys.ts`.
 */

import { deriveRates, type SnapshotEvent } from "../src/admin/protocol.ts";
import { AdminClient, AdminRefused, AdminUnavailable } from "./client.ts";
import { CliError, connectFailure, EXIT_NO_SERVER, EXIT_REFUSED, formatFailure } from "./commands.ts";
import { formatDuration } from "./format.ts";
import { type Action, handleKey, parseKeys, reconcileSelection } from "./keys.ts";
import { HISTORY_SAMPLES, initialState, render, type Size, type TopState } from "./render.ts";
import { consoleSize, isInteractive, print, Terminal } from "./terminal.ts";
import { errorMessage } from "../src/core/errors.ts";

/** Wait between reconnection attempts while the server is gone. */
export const RECONNECT_MS = 1_000;
/** Rows of the top-talkers panel requested per snapshot. */
const TALKERS = 10;

export interface TopOptions {
  socketPath: string;
  intervalMs: number;
  /** Print one plain frame and exit (also when stdout is not a terminal). */
  once: boolean;
  /** Failures as JSON (`--json`), as the one-shot commands print them. */
  json?: boolean;
}

/** Applies one snapshot event to the state (history, rates, lists). */
export function applySnapshot(state: TopState, ev: SnapshotEvent, nowWallMs: number): void {
  const prev = state.stats?.snapshot;
  const cur = ev.stats.snapshot;
  // Our own rates over our own interval, as stub_status is read; the server's until we have two.
  state.rates = prev !== undefined && cur.atMs > prev.atMs ? deriveRates(prev, cur) : ev.stats.rates;
  state.stats = ev.stats;
  state.conns = ev.conns ?? [];
  state.bans = ev.bans ?? [];
  state.clients = ev.clients ?? [];
  state.nowWallMs = nowWallMs;
  state.reqHistory.push(state.rates.requestsPerSec);
  state.bytesOutHistory.push(state.rates.bytesOutPerSec);
  if (state.reqHistory.length > HISTORY_SAMPLES) state.reqHistory.shift();
  if (state.bytesOutHistory.length > HISTORY_SAMPLES) state.bytesOutHistory.shift();
  reconcileSelection(state);
}

/** Runs the dashboard; resolves with the exit code. */
export async function runTop(opts: TopOptions): Promise<number> {
  if (opts.once || !isInteractive()) return await once(opts);
  return await interactive(opts);
}

async function once(opts: TopOptions): Promise<number> {
  const fail = async (e: CliError): Promise<number> => {
    const out = formatFailure(e, opts.json === true);
    if (out.stdout) print(out.stdout);
    if (out.stderr) await Deno.stderr.write(new TextEncoder().encode(out.stderr));
    return e.exitCode;
  };
  let client: AdminClient;
  try {
    client = await AdminClient.connect(opts.socketPath);
  } catch (e) {
    return await fail(connectFailure(e, opts.socketPath));
  }
  try {
    const state = initialState(opts.socketPath, Date.now());
    state.hello = await client.request("hello");
    state.helloAtWallMs = Date.now();
    const [stats, conns, bans, clients] = await Promise.all([
      client.request("stats"),
      client.request("conns"),
      client.request("bans"),
      client.request("clients", { limit: TALKERS }),
    ]);
    state.connected = true;
    applySnapshot(state, { stats, conns, bans, clients }, Date.now());
    print(render(state, consoleSize(), { color: false }).map((l) => l.trimEnd()).join("\n") + "\n");
    return 0;
  } catch (e) {
    const message = errorMessage(e);
    return await fail(new CliError(message, e instanceof AdminRefused ? EXIT_REFUSED : EXIT_NO_SERVER));
  } finally {
    client.close();
    await client.closed;
  }
}

async function interactive(opts: TopOptions): Promise<number> {
  const state = initialState(opts.socketPath, Date.now());
  let size: Size = consoleSize();
  let client: AdminClient | null = null;
  let quit = false;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((r) => (wake = r));
  const stop = () => {
    quit = true;
    wake();
  };

  const draw = () => {
    const now = consoleSize();
    if (now.cols !== size.cols || now.rows !== size.rows) {
      size = now;
      term.invalidate();
    }
    state.nowWallMs = Date.now();
    term.draw(render(state, size));
  };

  const perform = async (a: Action) => {
    if (a.kind === "quit") return stop();
    const c = client;
    if (c === null || !state.connected) {
      state.message = "not connected";
      return draw();
    }
    try {
      if (a.kind === "ban") {
        await c.request("ban", { target: a.target, ms: a.ms, reason: "top" });
        state.message = `banned ${a.target} for ${formatDuration(a.ms)}`;
      } else if (a.kind === "unban") {
        await c.request("unban", { target: a.target });
        state.message = `unbanned ${a.target}`;
      } else {
        await c.request("kick", { id: a.id });
        state.message = `kicked connection ${a.id}`;
      }
    } catch (e) {
      state.message = e instanceof AdminRefused ? `refused: ${e.message}` : "the request failed";
    }
    draw();
  };

  const term = Terminal.enter({
    onInput: (text) => {
      for (const key of parseKeys(text)) {
        const action = handleKey(state, key, size);
        if (action !== null) perform(action);
        if (quit) return;
      }
      draw();
    },
    onResize: () => draw(),
    onSignal: () => stop(),
  });

  try {
    draw();
    while (!quit) {
      try {
        const c = await AdminClient.connect(opts.socketPath);
        client = c;
        state.hello = await c.request("hello");
        state.helloAtWallMs = Date.now();
        state.connected = true;
        state.problem = "";
        state.stats = null;
        await c.subscribe(
          { intervalMs: opts.intervalMs, conns: true, bans: true, clients: TALKERS },
          (ev) => {
            applySnapshot(state, ev, Date.now());
            draw();
          },
        );
        draw();
        await Promise.race([c.closed, stopped]);
        if (quit) break;
        state.problem = `the server went away (${opts.socketPath}); reconnecting every ${
          RECONNECT_MS / 1000
        }s…`;
      } catch (e) {
        const why = e instanceof AdminUnavailable ? e.reason : errorMessage(e);
        state.problem = `no server at ${opts.socketPath} (${why}); retrying every ${RECONNECT_MS / 1000}s` +
          " (start one with `deno task start`, or the vento service)";
      } finally {
        client?.close();
        client = null;
      }
      state.connected = false;
      draw();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([new Promise<void>((r) => (timer = setTimeout(r, RECONNECT_MS))), stopped]);
      clearTimeout(timer);
    }
    return 0;
  } finally {
    client?.close();
    term.restore();
  }
}
