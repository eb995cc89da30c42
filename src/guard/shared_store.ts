/**
 * What the guard asks of a store shared by several Vento instances (GUARD_STORE=redis://…): one GCRA
 * check per request and the fan-out of bans. The guard depends on this interface only; the Redis
 * implementation is src/guard/store/redis_store.ts.
 *
 * Pure types; never mentions `Deno.`.
 */

import type { GcraLimit } from "./gcra.ts";

export interface SharedStore {
  /** False while the store is unreachable or slow: the guard then judges locally (fail open to local). */
  readonly healthy: boolean;
  /**
   * One GCRA event for `key` under `limit`, judged on the shared state. Resolves to the wait in ms
   * (0 = conforms and was counted), or -1 when the store could not answer in time (judge locally).
   * Never rejects.
   */
  gcra(key: string, limit: GcraLimit): Promise<number>;
  /** Shares a ban (a client key or a CIDR, normalised) with every instance; fire and forget. */
  publishBan(target: string, ms: number, reason: string, offences: number): void;
  /** Shares the lifting of a ban; fire and forget. */
  publishUnban(target: string): void;
}
