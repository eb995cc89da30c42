/**
 * `vento-admin`: the command-line entry. Parses argv with commander, finds the admin socket and hands
 * off to `commands.ts` (one-shot commands) or `top.ts` (the live dashboard). The only file of the CLI
 * that reads argv and calls `Deno.exit`.
 *
 * Exit codes: 0 ok, 1 the server said no or is not running, 2 usage (commander's errors included).
 */

import { Command, CommanderError, InvalidArgumentError } from "@commander-js/extra-typings";
import { isIpOrCidr, MAX_BAN_MS, MAX_CLIENTS_LIMIT, MIN_BAN_MS } from "../src/admin/protocol.ts";
import {
  CliError,
  commands,
  EXIT_OK,
  EXIT_REFUSED,
  EXIT_USAGE,
  type GlobalOpts,
  resolveSocketPath,
  withClient,
} from "./commands.ts";
import { parseDuration } from "./format.ts";
import { runTop } from "./top.ts";

/** Default ban length for `ban` without `--for`. */
const DEFAULT_BAN = "10m";

function targetArg(v: string): string {
  if (!isIpOrCidr(v)) {
    throw new InvalidArgumentError("expected an IP address or CIDR (203.0.113.9, 10.0.0.0/8).");
  }
  return v;
}

function banDurationArg(v: string): number {
  const ms = parseDuration(v);
  if (ms === null) throw new InvalidArgumentError("expected a duration like 30s, 10m, 2h or 1d.");
  if (ms < MIN_BAN_MS || ms > MAX_BAN_MS) throw new InvalidArgumentError("must be between 1s and 365d.");
  return ms;
}

function intervalArg(v: string): number {
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : parseDuration(v);
  if (ms === null || ms < 100 || ms > 60_000) {
    throw new InvalidArgumentError("expected seconds or a duration between 100ms and 60s.");
  }
  return ms;
}

function nonNegInt(max: number) {
  return (v: string): number => {
    if (!/^\d{1,15}$/.test(v) || Number(v) > max) {
      throw new InvalidArgumentError(`expected a whole number ≤ ${max}.`);
    }
    return Number(v);
  };
}

function buildProgram(setExit: (code: number) => void) {
  const program = new Command()
    .name("vento-admin")
    .description("Inspect and steer a running Vento server through its admin socket.")
    .option("--socket <path>", "admin socket path (default: ADMIN_SOCKET from vento.conf)")
    .option("--config <path>", "vento.conf to read ADMIN_SOCKET from", undefined)
    .option("--json", "print raw JSON data (for scripts)", false)
    .exitOverride()
    .showHelpAfterError("(run vento-admin --help for usage)");

  const run = async (
    body: (c: import("./client.ts").AdminClient, g: GlobalOpts) => Promise<string>,
  ): Promise<void> => {
    const o = program.opts();
    const path = await resolveSocketPath({ socket: o.socket, config: o.config });
    const r = await withClient(path, (c) => body(c, { json: o.json === true }));
    if (r.stdout) await write(Deno.stdout, r.stdout);
    if (r.stderr) await write(Deno.stderr, r.stderr);
    setExit(r.exitCode);
  };

  program.command("top").description("live full-screen dashboard")
    .option("--interval <duration>", "refresh period (seconds, or 500ms, 2s)", intervalArg, 1000)
    .option("--once", "print one plain frame and exit", false)
    .action(async (opts) => {
      const o = program.opts();
      const path = await resolveSocketPath({ socket: o.socket, config: o.config });
      setExit(await runTop({ socketPath: path, intervalMs: opts.interval, once: opts.once === true }));
    });
  program.command("stats").description("counters, gauges and rates").action(() => run(commands.stats));
  program.command("conns").description("open connections").action(() => run(commands.conns));
  program.command("clients").description("busiest clients")
    .option("--limit <n>", "rows", nonNegInt(MAX_CLIENTS_LIMIT), 20)
    .action((opts) => run((c, g) => commands.clients(c, g, Math.max(1, opts.limit))));
  program.command("bans").description("active bans").action(() => run(commands.bans));
  program.command("ban").description("ban an IP address or CIDR")
    .argument("<target>", "IP address or CIDR", targetArg)
    .option("--for <duration>", "ban length: 30s, 10m, 2h, 1d", banDurationArg, parseDuration(DEFAULT_BAN)!)
    .option("--reason <text>", "why (shown in bans)", "operator")
    .action((target, opts) => run((c, g) => commands.ban(c, g, target, opts.for, opts.reason)));
  program.command("unban").description("lift a ban")
    .argument("<target>", "IP address or CIDR", targetArg)
    .action((target) => run((c, g) => commands.unban(c, g, target)));
  program.command("kick").description("close a connection by id")
    .argument("<id>", "connection id (see conns)", nonNegInt(Number.MAX_SAFE_INTEGER))
    .action((id) => run((c, g) => commands.kick(c, g, id)));
  program.command("reload").description("re-read vento.conf (as SIGHUP)").action(() => run(commands.reload));
  program.command("drain").description("graceful shutdown (as SIGTERM)").action(() => run(commands.drain));
  program.command("metrics").description("Prometheus text exposition").action(() => run(commands.metrics));
  return program;
}

async function write(w: { write(p: Uint8Array): Promise<number> }, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/** Runs the CLI on `args`; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildProgram((c) => (exitCode = c));
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // `--help` and `--version` exit 0; every other commander error (a missing command included) is usage.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof CliError) {
      await write(Deno.stderr, `vento-admin: ${e.message}\n`);
      return e.exitCode;
    }
    await write(Deno.stderr, `vento-admin: ${e instanceof Error ? e.stack ?? e.message : e}\n`);
    return EXIT_REFUSED;
  }
  return exitCode;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
