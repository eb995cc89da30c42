/**
 * What an accept loop does when `accept()` fails: one peer's failure (a reset before we took the socket)
 * is skipped at once; anything else, above all running out of file descriptors (EMFILE, ENFILE), is an
 * episode. The kernel keeps the waiting connection in the backlog, so an immediate retry fails the same
 * way: without a pause the loop spins a core and starves every open connection. So the loop waits,
 * doubling from `ACCEPT_BACKOFF_MIN_MS` to `ACCEPT_BACKOFF_MAX_MS`, and the episode is logged twice: one
 * line when it starts, one when accepts work again (the first success `ACCEPT_EPISODE_QUIET_MS` after the
 * last failure, so a server at the edge of its limit does not log a pair per descriptor freed), with how
 * many attempts failed meanwhile.
 *
 * The admin socket's accept loop sleeps for the milliseconds `failed` returns. HTTP and HTTPS sockets are
 * accepted by the runtime (src/net/node_transport.ts), which neither spins nor reports running out of
 * descriptors: for them the server only keeps the episode's two log lines (its once-a-second descriptor
 * probe calls `failed` and `succeeded`). Pure: no timers, no `Deno` APIs.
 */

import type { Clock } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";

/** The first pause after a failed accept (ms). */
export const ACCEPT_BACKOFF_MIN_MS = 10;
/**
 * The longest pause between two accept attempts during an episode (ms): as nginx's 500 ms accept delay
 * once out of descriptors, the wait for a descriptor to come back costs at most this much latency.
 */
export const ACCEPT_BACKOFF_MAX_MS = 500;

/** An episode ends at the first successful accept this long after the last failed one (ms). */
export const ACCEPT_EPISODE_QUIET_MS = 1_000;

/** Error codes of accept failures that concern one peer only: skip it and accept the next at once. */
const PEER_ERROR_NAMES = new Set(["ConnectionReset", "ConnectionAborted", "InvalidData", "UnexpectedEof"]);

/** Whether `e` says the process (EMFILE) or the system (ENFILE) has no file descriptor left. */
export function isOutOfDescriptors(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === "EMFILE" || code === "ENFILE") return true;
  return e instanceof Error && /too many open files/i.test(e.message);
}

function describe(e: unknown): string {
  if (isOutOfDescriptors(e)) return "out of file descriptors";
  return errorMessage(e);
}

/** One accept loop's error state. */
export class AcceptBackoff {
  readonly #what: string;
  readonly #clock: Clock;
  readonly #logError: (message: string) => void;
  /** Failed attempts in the current episode (0: none in progress). */
  #failures = 0;
  #startedMs = 0;
  #lastFailureMs = 0;
  #reason = "";
  /** The last pause; 0 after a success (the next failure waits the shortest pause again). */
  #delayMs = 0;

  /** `what` names the listener in log lines (`HTTP`, `HTTPS`, `admin`). */
  constructor(what: string, clock: Clock, logError: (message: string) => void) {
    this.#what = what;
    this.#clock = clock;
    this.#logError = logError;
  }

  /** Whether an episode is in progress (accepts are failing). */
  get failing(): boolean {
    return this.#failures > 0;
  }

  /**
   * After `accept()` rejected with `e` (and the listener is not being closed): how long to wait before
   * the next attempt, 0 for one peer's failure. The first failure of an episode logs one line.
   */
  failed(e: unknown): number {
    if (e instanceof Error && PEER_ERROR_NAMES.has(e.name) && !isOutOfDescriptors(e)) return 0;
    if (this.#failures === 0) {
      this.#startedMs = this.#clock.nowMs();
      this.#reason = describe(e);
      this.#logError(
        `accepting ${this.#what} connections: ${this.#reason}; pausing accepts (up to ` +
          `${ACCEPT_BACKOFF_MAX_MS} ms between attempts) until one succeeds`,
      );
    }
    this.#delayMs = this.#delayMs === 0
      ? ACCEPT_BACKOFF_MIN_MS
      : Math.min(ACCEPT_BACKOFF_MAX_MS, this.#delayMs * 2);
    this.#lastFailureMs = this.#clock.nowMs();
    this.#failures++;
    return this.#delayMs;
  }

  /**
   * After `accept()` succeeded: the next failure pauses the shortest time again, and an episode whose
   * last failure is `ACCEPT_EPISODE_QUIET_MS` old ends with one line. Cheap when no episode is open.
   */
  succeeded(): void {
    if (this.#failures === 0) return;
    this.#delayMs = 0;
    if (this.#clock.nowMs() - this.#lastFailureMs < ACCEPT_EPISODE_QUIET_MS) return;
    const seconds = ((this.#clock.nowMs() - this.#startedMs) / 1000).toFixed(1);
    this.#logError(
      `accepting ${this.#what} connections again after ${seconds} s (${this.#reason}); ` +
        `${this.#failures} accept attempts failed meanwhile`,
    );
    this.#failures = 0;
  }
}
