/**
 * Wiring of GUARD_STORE for the composition root: builds the Redis-backed shared store (sockets from
 * src/guard/store/redis_client.ts) and attaches it to the guard, which then lets the store decide request rates
 * and connection rates while it is healthy. With GUARD_STORE=memory it builds nothing, so the default path
 * is unchanged.
 */

import type { Config } from "../../config/config.ts";
import type { Guard } from "../policy.ts";
import { RedisStore } from "./redis_store.ts";
import { parseGuardStore, redactGuardStore } from "../../config/guard_store_url.ts";
import type { Stats } from "../../stats/stats.ts";
import { connectRedis } from "./redis_client.ts";

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
