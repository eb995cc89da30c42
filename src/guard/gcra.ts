/**
 * GCRA (generic cell rate algorithm, ITU-T I.371): a token bucket kept in one number per client, the
 * "theoretical arrival time" (TAT) of the next conforming event.
 *
 * With emission interval T = 1000 / ratePerSec ms and tolerance τ = T × (burst − 1) ms, an event at
 * `now` conforms when TAT − now ≤ τ, and then TAT becomes max(TAT, now) + T. From a fresh key
 * (TAT ≤ now) the k-th simultaneous event sees TAT − now = (k − 1) × T, so exactly `burst` events pass
 * at once, after which one more conforms every T ms: `ratePerSec` sustained. A refused event leaves the
 * TAT alone, so hammering while limited does not push the client's recovery further away.
 *
 * Pure: numbers in, numbers out; no allocation, no `Deno.`.
 */

/** Rounding slack: TAT accumulates T by repeated addition, which may land a hair above (burst−1) × T. */
const EPSILON_MS = 1e-6;

/** One limit, precomputed from a rate and a burst. */
export interface GcraLimit {
  /** T: milliseconds between conforming events at the sustained rate. */
  readonly intervalMs: number;
  /** τ: how far ahead of `now` the TAT may run and still conform. */
  readonly toleranceMs: number;
}

/** The limit allowing `burst` events at once, then `ratePerSec` per second. Both must be ≥ 1. */
export function gcraLimit(ratePerSec: number, burst: number): GcraLimit {
  const intervalMs = 1000 / Math.max(ratePerSec, 1e-9);
  return { intervalMs, toleranceMs: intervalMs * (Math.max(burst, 1) - 1) };
}

/** Milliseconds until an event at `nowMs` would conform: 0 means it conforms now. */
export function gcraWaitMs(tatMs: number, nowMs: number, limit: GcraLimit): number {
  const wait = tatMs - limit.toleranceMs - nowMs;
  return wait > EPSILON_MS ? wait : 0;
}

/** The TAT after a conforming event at `nowMs`. */
export function gcraNextTat(tatMs: number, nowMs: number, limit: GcraLimit): number {
  return (tatMs > nowMs ? tatMs : nowMs) + limit.intervalMs;
}

/** A wait in milliseconds as a `Retry-After` value: whole seconds, rounded up, at least 1. */
export function retryAfterSec(waitMs: number): number {
  const s = Math.ceil(waitMs / 1000);
  return s >= 1 ? s : 1;
}
