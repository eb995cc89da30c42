/**
 * Small helpers every benchmark in bench/ shares: a free loopback port, medians, and probing or running
 * a command. Loopback only; no state.
 */

/** A port that was free a moment ago on `hostname` (the server binds it next; a race is reported there). */
export function freePort(hostname: string): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** The median of the finite values of `xs` (NaN when there are none). */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Whether `cmd` exists and runs (its exit code does not matter: `wrk -v` exits 1). */
export async function hasCommand(cmd: string, args: string[]): Promise<boolean> {
  return (await commandOutput(cmd, args)) !== null;
}

/** stdout + stderr of `cmd args`, trimmed, or null when the command cannot be run. */
export async function commandOutput(cmd: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return (dec.decode(out.stdout) + dec.decode(out.stderr)).trim();
  } catch {
    return null;
  }
}
