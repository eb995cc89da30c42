/**
 * Wiring of GUARD_STORE for the composition root: builds the Redis-backed shared store (sockets from
 * src/net/redis_client.ts) and attaches it to the guard, and the server gate that lets the store decide
 * request rates and connection rates. With GUARD_STORE=memory it builds nothing and the guard stays the gate itself, so the
 * default path is unchanged.
 */

import type { Config } from "../config.ts";
import type { Guard } from "../guard/policy.ts";
import { parseGuardStore, redactGuardStore, RedisStore } from "../guard/redis_store.ts";
import type { Stats } from "../stats/stats.ts";
import { connectRedis } from "./redis_client.ts";
import type { ConnGate } from "./server.ts";

/** The store named by `config.guardStore`, attached to `guard`; null for `memory`. Not yet connected. */
export function createGuardStore(
  config: Pick<Config, "guardStore" | "guardStorePassword" | "guardStoreCaPem">,
  guard: Guard,
  stats: Stats,
  log: (line: string) => void,
): RedisStore | null {
  const parsed = parseGuardStore(config.guardStore, {
    password: config.guardStorePassword,
    caCerts: config.guardStoreCaPem === null ? [] : [config.guardStoreCaPem],
  });
  if (!parsed.ok) throw new Error(`GUARD_STORE: cannot use "${redactGuardStore(config.guardStore)}"`);
  if (parsed.target === null) return null;
  const store = new RedisStore({
    target: parsed.target,
    connect: connectRedis,
    stats,
    log,
    instanceId: crypto.randomUUID(),
  });
  guard.attachStore(store);
  return store;
}

/**
 * The guard as the server's gate, with request rates and connection rates judged on its shared store
 * while it is healthy (the connection caps stay this instance's). WORKERS > 1 does not use this gate:
 * its `SharedGate` must decide synchronously under the shared table's lock.
 */
export function storeGate(guard: Guard): ConnGate {
  return {
    admitConnection: (remoteIp) => guard.admitConnectionShared(remoteIp),
    admitRequest: (ticket, forwardedFor) => guard.admitRequestShared(ticket, forwardedFor),
    release: (ticket) => guard.release(ticket),
    idleTimeoutMs: () => guard.idleTimeoutMs(),
    tick: () => guard.tick(),
  };
}
