/**
 * Starts the real Vento (the same `startVento` that `deno task start` runs) on port 0 with a temp
 * document root and test-friendly settings, and tears everything down afterwards.
 */

import { type Config, DEFAULT_CONFIG } from "../../src/config/config.ts";
import { type StartOptions, startVento, type Vento } from "../../src/app/vento.ts";

export interface TestServer {
  vento: Vento;
  port: number;
  root: string;
  /** Error lines the server logged. */
  errors: string[];
  /** Graceful shutdown and temp-dir removal. */
  stop(): Promise<void>;
}

/** Files to create: relative path → contents. */
export type Files = Record<string, string | Uint8Array>;

export const DEFAULT_FILES: Files = {
  "index.html": "<!doctype html><title>Vento test</title><h1>hello</h1>\n",
  "404.html": "<!doctype html><title>missing</title><h1>not here</h1>\n",
};

/**
 * Starts a server. `overrides` replaces config fields (timeouts in ms, limits…); by default the guard's
 * limits are generous so ordinary tests never trip them, and there is no admin socket or access log.
 * `start` passes other `startVento` options (a clock, a gate wrapping the guard).
 */
export async function startTestServer(
  overrides: Partial<Config> = {},
  files: Files = DEFAULT_FILES,
  start: Omit<StartOptions, "configPath" | "logError"> = {},
): Promise<TestServer> {
  const root = await Deno.makeTempDir({ prefix: "vento-test-" });
  for (const [rel, contents] of Object.entries(files)) {
    const path = `${root}/${rel}`;
    const dir = path.slice(0, path.lastIndexOf("/"));
    await Deno.mkdir(dir, { recursive: true });
    if (typeof contents === "string") await Deno.writeTextFile(path, contents);
    else await Deno.writeFile(path, contents);
  }
  const config: Config = {
    ...DEFAULT_CONFIG,
    host: "127.0.0.1",
    port: 0,
    documentRoot: root,
    accessLog: "off",
    adminSocket: "off",
    requestRatePerSec: 100_000,
    requestBurst: 100_000,
    connRatePerSec: 100_000,
    connBurst: 100_000,
    // Tests speak from loopback, which the defaults exempt; tests of the guard need it limited.
    allowlist: [],
    ...overrides,
  };
  const errors: string[] = [];
  const vento = await startVento(config, { ...start, configPath: null, logError: (m) => errors.push(m) });
  return {
    vento,
    port: vento.addr.port,
    root,
    errors,
    async stop() {
      await vento.shutdown();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** Runs `fn` against a server started with `overrides` and `files`, and stops it afterwards, whatever happens. */
export async function withTestServer(
  fn: (s: TestServer) => Promise<void>,
  overrides: Partial<Config> = {},
  files: Files = DEFAULT_FILES,
): Promise<void> {
  const s = await startTestServer(overrides, files);
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}
