/**
 * What the bare baseline responders (bench/bare_deno.ts, bare_node.ts, bare_handle.ts) share: the one fixed
 * answer they give every read, and the crude test for "close" that picks its variant. Baselines only: no
 * parsing, never used by Vento.
 */

const encoder = new TextEncoder();

/** The fixed answer: status line, headers, a 1 KiB body. */
function response(close: boolean): Uint8Array {
  const head = encoder.encode(
    "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/octet-stream\r\n" +
      `Connection: ${close ? "close" : "keep-alive"}\r\n\r\n`,
  );
  const out = new Uint8Array(head.length + 1024);
  out.set(head);
  out.fill(0x61, head.length);
  return out;
}

export const KEEP_ALIVE: Uint8Array = response(false);
export const CLOSE: Uint8Array = response(true);
const NEEDLE = encoder.encode("close");

/** Whether `buf[0..n)` contains "close" in any letter case (a crude stand-in for the Connection header). */
export function asksClose(buf: Uint8Array, n: number): boolean {
  outer: for (let i = 0; i + NEEDLE.length <= n; i++) {
    for (let j = 0; j < NEEDLE.length; j++) if ((buf[i + j] | 0x20) !== NEEDLE[j]) continue outer;
    return true;
  }
  return false;
}
