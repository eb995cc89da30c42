/**
 * Time as an injectable dependency, so deadlines, rate limits and bans are testable with a fake clock
 * and never with sleeps.
 */

export interface Clock {
  /** Milliseconds on a monotonic scale (for deadlines and rates); never goes backwards. */
  nowMs(): number;
  /** Wall-clock milliseconds since the epoch (for `Date`, logs and ban expiry display). */
  wallMs(): number;
}

/**
 * The real clock. `nowMs` is `Date.now()` clamped so it never goes backwards: in Deno `performance.now()`
 * is an op crossing that cost more per request than parsing the head, while `Date.now()` stays in V8. A
 * wall-clock step backwards freezes it until time catches up; a step forwards advances deadlines and
 * limiter state by that much (bounded, and the same as a long pause).
 */
export class SystemClock implements Clock {
  #lastMs = 0;
  nowMs(): number {
    const t = Date.now();
    if (t > this.#lastMs) this.#lastMs = t;
    return this.#lastMs;
  }
  wallMs(): number {
    return Date.now();
  }
}

/** The process's real clock. */
export const systemClock: Clock = new SystemClock();

/** A clock that only moves when told to; for unit tests. */
export class FakeClock implements Clock {
  #now: number;
  #wallOffset: number;
  constructor(startMs = 0, wallStartMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs;
    this.#wallOffset = wallStartMs - startMs;
  }
  nowMs(): number {
    return this.#now;
  }
  wallMs(): number {
    return this.#now + this.#wallOffset;
  }
  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.#now += ms;
  }
}
