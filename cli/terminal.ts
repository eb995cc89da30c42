/**
 * The terminal driver for `top`: the ONLY file touching raw mode, the alternate screen, the cursor,
 * the console size and signals. Everything it does is undone by `restore()`, which is idempotent and
 * runs on every exit path the loop can take (q, ctrl-c, SIGTERM/SIGHUP, server gone, exception).
 *
 * It never decides what to draw: it writes whole frames handed to it, one write per frame.
 */

import type { Size } from "./render.ts";

const ENTER_ALT = "\x1b[?1049h";
const LEAVE_ALT = "\x1b[?1049l";
const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";
const HOME = "\x1b[H";
const CLEAR_SCREEN = "\x1b[2J";
const ERASE_EOL = "\x1b[K";
const RESET_SGR = "\x1b[0m";
/** Size assumed when the console cannot say (not a TTY). */
export const FALLBACK_SIZE: Readonly<Size> = { cols: 120, rows: 40 };

const encoder = new TextEncoder();

export interface TerminalHandlers {
  /** Raw input (already decoded as UTF-8) from stdin. */
  onInput(text: string): void;
  /** The console changed size (SIGWINCH). */
  onResize(): void;
  /** SIGTERM / SIGHUP / SIGINT: the loop should end (and restore) now. */
  onSignal(signal: Deno.Signal): void;
}

function writeAllSync(text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** Whether we can run full screen: stdin and stdout are both terminals. */
export function isInteractive(): boolean {
  return Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
}

/** The console size, or `FALLBACK_SIZE` when stdout is not a terminal. */
export function consoleSize(): Size {
  try {
    const { columns, rows } = Deno.consoleSize();
    if (columns > 0 && rows > 0) return { cols: columns, rows };
  } catch {
    // not a terminal
  }
  return { ...FALLBACK_SIZE };
}

/** Prints text to stdout (the `--once` path; no terminal modes involved). */
export function print(text: string): void {
  writeAllSync(text);
}

/** A full-screen session on the controlling terminal. */
export class Terminal {
  #handlers: TerminalHandlers;
  #restored = false;
  #lastFrame = "";
  #signals: [Deno.Signal, () => void][] = [];
  #onUnload = () => this.restore();

  private constructor(handlers: TerminalHandlers) {
    this.#handlers = handlers;
  }

  /** Enters raw mode and the alternate screen, hides the cursor, listens for keys, resizes and signals. */
  static enter(handlers: TerminalHandlers): Terminal {
    const t = new Terminal(handlers);
    Deno.stdin.setRaw(true);
    writeAllSync(ENTER_ALT + HIDE_CURSOR + CLEAR_SCREEN);
    globalThis.addEventListener("unload", t.#onUnload);
    const listen = (sig: Deno.Signal, fn: () => void) => {
      try {
        Deno.addSignalListener(sig, fn);
        t.#signals.push([sig, fn]);
      } catch {
        // signal not supported on this platform
      }
    };
    listen("SIGWINCH", () => handlers.onResize());
    for (const sig of ["SIGTERM", "SIGHUP", "SIGINT"] as const) listen(sig, () => handlers.onSignal(sig));
    t.#readInput();
    return t;
  }

  async #readInput(): Promise<void> {
    const buf = new Uint8Array(1024);
    const decoder = new TextDecoder();
    try {
      while (!this.#restored) {
        const n = await Deno.stdin.read(buf);
        if (n === null) {
          // The terminal went away: same as a hang-up.
          if (!this.#restored) this.#handlers.onSignal("SIGHUP");
          return;
        }
        if (!this.#restored) this.#handlers.onInput(decoder.decode(buf.subarray(0, n), { stream: true }));
      }
    } catch {
      if (!this.#restored) this.#handlers.onSignal("SIGHUP");
    }
  }

  /** Draws a frame in one write; an identical frame is not written again (idle costs nothing). */
  draw(lines: string[]): void {
    if (this.#restored) return;
    const frame = HOME + lines.map((l) => l + RESET_SGR + ERASE_EOL).join("\r\n");
    if (frame === this.#lastFrame) return;
    this.#lastFrame = frame;
    try {
      writeAllSync(frame);
    } catch {
      // the terminal is gone; the input loop reports it
    }
  }

  /** Forces the next `draw` to repaint everything (after a resize the old frame is meaningless). */
  invalidate(): void {
    this.#lastFrame = "";
    if (!this.#restored) {
      try {
        writeAllSync(CLEAR_SCREEN);
      } catch {
        // gone
      }
    }
  }

  /** Undoes everything `enter` did. Idempotent; safe from any exit path. */
  restore(): void {
    if (this.#restored) return;
    this.#restored = true;
    for (const [sig, fn] of this.#signals) {
      try {
        Deno.removeSignalListener(sig, fn);
      } catch {
        // already removed
      }
    }
    globalThis.removeEventListener("unload", this.#onUnload);
    try {
      writeAllSync(RESET_SGR + SHOW_CURSOR + LEAVE_ALT);
    } catch {
      // the terminal is gone: nothing left to restore on it
    }
    try {
      Deno.stdin.setRaw(false);
    } catch {
      // not a terminal any more
    }
  }
}
