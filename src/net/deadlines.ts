/**
 * A connection's deadlines as a small pure state machine: which deadline runs now and when it falls
 * due, and the minimum-rate window of a body being read or an answer being sent. The connection sets
 * and clears them as it moves between states; the server's sweeper asks, with its clock's time, whether
 * one is due (`deadlineDue`, `rateDue`), and the connection acts on the answer (408, or close).
 *
 * What each deadline bounds (the documented settings in `vento.conf` give the numbers):
 * - `header`: from accept, or from a keep-alive request's first byte, to a complete head. Set once per
 *   head and never extended by more bytes (a trickled head still times out).
 * - `idle`: a keep-alive connection between requests; shorter while the server is busy.
 * - `body`: the longest gap between two body reads.
 * - `send`: the longest time one socket write may stay pending.
 * - `linger`: after an error answer, how long unread input is drained before closing.
 * A minimum rate (`body` or `send`) is judged per window of its grace length: a window averaging below
 * the rate is due; one that kept pace starts the next window, so the megabytes a socket buffer takes at
 * first cannot buy a peer that then stalls.
 *
 * Pure: never mentions `Deno.`; no timers (the caller brings the time); allocates nothing.
 */

import type { Config } from "../config/config.ts";

/** Which deadline runs. */
export type DeadlineKind = "none" | "header" | "idle" | "body" | "send" | "linger";
/** Which minimum rate is judged. */
export type RateKind = "none" | "body" | "send";

/** The minimum-rate settings (documented in `Config`). */
export type MinRateOptions = Pick<
  Config,
  "bodyMinRateGraceMs" | "bodyMinRateBytesPerSec" | "sendMinRateGraceMs" | "sendMinRateBytesPerSec"
>;

export class Deadlines {
  #kind: DeadlineKind = "none";
  #atMs = Infinity;
  #rate: RateKind = "none";
  #rateStartMs = 0;
  #rateBytes = 0;
  /** When a paused window stopped (-1: none is paused). */
  #pausedAtMs = -1;
  #pausedKind: RateKind = "none";

  /** The running deadline ("none": nothing is due, ever). */
  get kind(): DeadlineKind {
    return this.#kind;
  }

  /** When the running deadline falls due (Infinity for "none"). */
  get atMs(): number {
    return this.#atMs;
  }

  /** The minimum rate being judged. */
  get rate(): RateKind {
    return this.#rate;
  }

  /** Runs deadline `kind`, due at `atMs` (replacing the one that ran). */
  set(kind: DeadlineKind, atMs: number): void {
    this.#kind = kind;
    this.#atMs = kind === "none" ? Infinity : atMs;
  }

  /** No deadline (a handler is working; writes set their own). */
  clear(): void {
    this.set("none", 0);
  }

  /** Starts judging minimum rate `kind` with a fresh window opening at `nowMs`. */
  startRate(kind: "body" | "send", nowMs: number): void {
    this.#pausedAtMs = -1;
    this.#rate = kind;
    this.#rateStartMs = nowMs;
    this.#rateBytes = 0;
  }

  /** Stops judging a minimum rate (a paused window is forgotten too). */
  stopRate(): void {
    this.#rate = "none";
    this.#pausedAtMs = -1;
  }

  /**
   * Stops the window's clock at `nowMs`, keeping what it counted: time that is not the peer's (a handler
   * working between two reads of a body it streams) must not count against the peer's rate.
   */
  pauseRate(nowMs: number): void {
    if (this.#rate === "none") return;
    this.#pausedKind = this.#rate;
    this.#pausedAtMs = nowMs;
    this.#rate = "none";
  }

  /** Judges rate `kind` again: a window paused for the same kind continues; otherwise a fresh one opens. */
  resumeRate(kind: "body" | "send", nowMs: number): void {
    if (this.#pausedAtMs >= 0 && this.#pausedKind === kind) {
      this.#rateStartMs += nowMs - this.#pausedAtMs;
      this.#rate = kind;
      this.#pausedAtMs = -1;
      return;
    }
    this.startRate(kind, nowMs);
  }

  /** Counts `n` bytes of progress toward rate `kind` (ignored when that rate is not being judged). */
  progress(kind: "body" | "send", n: number): void {
    if (this.#rate === kind) this.#rateBytes += n;
  }

  /** Whether the running deadline is due at `nowMs`. */
  deadlineDue(nowMs: number): boolean {
    return nowMs >= this.#atMs;
  }

  /**
   * Whether the minimum rate is due at `nowMs`: its window is over and averaged below the rate. A window
   * that is over and kept pace makes `nowMs` the start of the next one. A rate of 0 is never due.
   */
  rateDue(nowMs: number, o: MinRateOptions): boolean {
    if (this.#rate === "none") return false;
    const body = this.#rate === "body";
    const grace = body ? o.bodyMinRateGraceMs : o.sendMinRateGraceMs;
    const minRate = body ? o.bodyMinRateBytesPerSec : o.sendMinRateBytesPerSec;
    const elapsed = nowMs - this.#rateStartMs;
    if (minRate <= 0 || elapsed <= grace) return false;
    if (this.#rateBytes * 1000 < minRate * elapsed) return true;
    this.#rateStartMs = nowMs;
    this.#rateBytes = 0;
    return false;
  }
}
