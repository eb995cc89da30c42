/**
 * `vento-admin`: the command-line entry. Parses argv with commander, finds the admin socket and hands
 * off to `commands.ts` (one-shot commands) or `top.ts` (the live dashboard). The only file of the CLI
 * that reads argv and calls `Deno.exit`.
 *
 * Exit codes: one per outcome, listed in `--help` (`EXIT_CODES` in commands.ts).
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { VERSION } from "../src/core/version.ts";
import { isIpOrCidr, MAX_BAN_MS, MAX_CLIENTS_LIMIT, MIN_BAN_MS } from "../src/admin/protocol.ts";
import {
  CliError,
  commands,
  EXIT_CODES,
  EXIT_OK,
  EXIT_REFUSED,
  EXIT_USAGE,
  formatFailure,
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

const EXIT_HELP = "\nExit codes:\n" +
  EXIT_CODES.map(([code, meaning]) => `  ${code}  ${meaning}`).join("\n") +
  "\n\nUnder --json, a failure is one JSON object on stdout: " +
  '{"ok":false,"error":{"code":"NO_SERVER","message":"…","exitCode":3}}.';

function buildProgram(setExit: (code: number) => void, json: boolean) {
  const program = new Command()
    .name("vento-admin")
    .description("Inspect and steer a running Vento server through its admin socket.")
    .version(`vento-admin ${VERSION}`, "-V, --version", "print the version")
    .option("--socket <path>", "admin socket path (default: ADMIN_SOCKET from vento.conf)")
    .option("--config <path>", "vento.conf to read ADMIN_SOCKET from (only that line is read)", undefined)
    .option("--json", "print raw JSON data, and failures as JSON (for scripts)", false)
    .addHelpText("after", EXIT_HELP)
    .exitOverride()
    .showHelpAfterError("(run vento-admin --help for usage)");
  if (json) {
    // Usage errors as JSON too; commander's own text is dropped (the JSON carries the message).
    program.configureOutput({ writeErr: () => {}, outputError: () => {} });
  }

  const run = async (
    body: (c: import("./client.ts").AdminClient, g: GlobalOpts) => Promise<string>,
  ): Promise<void> => {
    const o = program.opts();
    const path = await resolveSocketPath({ socket: o.socket, config: o.config });
    const r = await withClient(path, (c) => body(c, { json: o.json === true }), o.json === true);
    if (r.stdout) await write(Deno.stdout, r.stdout);
    if (r.stderr) await write(Deno.stderr, r.stderr);
    setExit(r.exitCode);
  };

  program.command("top").description("live full-screen dashboard")
    .addOption(
      new Option("--interval <duration>", "refresh period: seconds (2), or a duration (500ms, 2s)")
        .argParser(intervalArg).default(1000, "1s"),
    )
    .option("--once", "print one plain frame and exit", false)
    .action(async (opts) => {
      const o = program.opts();
      const path = await resolveSocketPath({ socket: o.socket, config: o.config });
      setExit(
        await runTop({
          socketPath: path,
          intervalMs: opts.interval,
          once: opts.once === true,
          json: o.json === true,
        }),
      );
    });
  program.command("stats").description("counters, gauges and rates").action(() => run(commands.stats));
  program.command("conns").description("open connections").action(() => run(commands.conns));
  program.command("clients").description("busiest clients")
    .option("--limit <n>", "rows (1 or more)", nonNegInt(MAX_CLIENTS_LIMIT), 20)
    .action((opts) => run((c, g) => commands.clients(c, g, Math.max(1, opts.limit))));
  program.command("bans").description("active bans").action(() => run(commands.bans));
  program.command("ban").description("ban an IP address or CIDR")
    .argument("<target>", "IP address or CIDR", targetArg)
    .addOption(
      new Option("--for <duration>", "ban length: 30s, 10m, 2h, 1d (1s to 365d)")
        .argParser(banDurationArg).default(parseDuration(DEFAULT_BAN)!, DEFAULT_BAN),
    )
    .option("--reason <text>", "why (shown in bans)", "operator")
    .action((target, opts) => run((c, g) => commands.ban(c, g, target, opts.for, opts.reason)));
  program.command("unban").description("lift a ban")
    .argument("<target>", "IP address or CIDR", targetArg)
    .action((target) => run((c, g) => commands.unban(c, g, target)));
  program.command("kick").description("close a connection by id")
    .argument("<id>", "connection id (see conns)", nonNegInt(Number.MAX_SAFE_INTEGER))
    .action((id) => run((c, g) => commands.kick(c, g, id)));
  program.command("reload").description("re-read vento.conf (as SIGHUP); exit 1 when the server refuses it")
    .action(() => run(commands.reload));
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
  // Known before parsing, so that even a usage error is answered in the format asked for.
  const json = args.includes("--json");
  const program = buildProgram((c) => (exitCode = c), json);
  const fail = async (e: CliError): Promise<number> => {
    const out = formatFailure(e, json);
    if (out.stdout) await write(Deno.stdout, out.stdout);
    if (out.stderr) await write(Deno.stderr, out.stderr);
    return e.exitCode;
  };
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // `--help` and `--version` exit 0; every other commander error (a missing command included) is usage.
      if (e.exitCode === 0) return EXIT_OK;
      if (json) return await fail(new CliError(e.message.replace(/^error: /, ""), EXIT_USAGE));
      return EXIT_USAGE;
    }
    if (e instanceof CliError) return await fail(e);
    await write(Deno.stderr, `vento-admin: ${e instanceof Error ? e.stack ?? e.message : e}\n`);
    return EXIT_REFUSED;
  }
  return exitCode;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
