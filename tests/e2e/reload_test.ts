/**
 * End-to-end tests of what a reload applies without closing connections: the document root and its
 * settings (index, listing, Cache-Control), the access log's path, a new TLS certificate and key (new
 * handshakes get the new pair, an open connection keeps its own), and what it leaves for a restart. The
 * real server from a real conf file, checked with raw requests.
 */

import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/config.ts";
import { startVento, type Vento } from "../../src/app/vento.ts";
import { request } from "../_helpers/raw_client.ts";
import { makeTestPki, OPENSSL_AVAILABLE } from "../_helpers/pki.ts";

const BASE = "PORT=0\nHOST=127.0.0.1\nADMIN_SOCKET=off\nALLOWLIST=\n";

interface Site {
  dir: string;
  vento: Vento;
  errors: string[];
  conf(text: string): Promise<void>;
  get(path: string): Promise<{ status: number; headers: Map<string, string>; text: string }>;
  stop(): Promise<void>;
}

async function startSite(conf: string): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "vento-reload-" });
  for (const d of ["www", "www2", "www2/sub", "logs"]) await Deno.mkdir(`${dir}/${d}`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>one</h1>\n");
  await Deno.writeTextFile(`${dir}/www/a.css`, "a{}\n");
  await Deno.writeTextFile(`${dir}/www2/index.html`, "<h1>two</h1>\n");
  await Deno.writeTextFile(`${dir}/www2/home.html`, "<h1>home</h1>\n");
  await Deno.writeTextFile(`${dir}/www2/a.css`, "b{}\n");
  await Deno.writeTextFile(`${dir}/www2/sub/x.txt`, "x\n");
  const confPath = `${dir}/vento.conf`;
  await Deno.writeTextFile(confPath, conf);
  const loaded = await loadConfig(confPath);
  assert.ok(loaded.ok, loaded.ok ? "" : loaded.messages.join("\n"));
  const errors: string[] = [];
  const vento = await startVento(loaded.config, { configPath: confPath, logError: (m) => errors.push(m) });
  return {
    dir,
    vento,
    errors,
    conf: (text) => Deno.writeTextFile(confPath, text),
    get: async (path) => {
      const r = await request(
        vento.addr.port,
        `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`,
      );
      return { status: r.status, headers: r.headers, text: r.text };
    },
    stop: async () => {
      await vento.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("reload switches DOCUMENT_ROOT, INDEX_FILE, DIRECTORY_LISTING and CACHE_CONTROL live", async () => {
  const site = await startSite(`${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=off\n`);
  try {
    assert.equal((await site.get("/")).text, "<h1>one</h1>\n");
    assert.equal((await site.get("/a.css")).headers.get("cache-control"), "public, max-age=3600");
    assert.equal((await site.get("/sub/")).status, 404);

    await site.conf(
      `${BASE}DOCUMENT_ROOT=www2\nACCESS_LOG=off\nINDEX_FILE=home.html\nDIRECTORY_LISTING=on\n` +
        `CACHE_CONTROL="public, max-age=60"  # shorter while we iterate\n`,
    );
    const r = await site.vento.reload();
    assert.ok(!("errors" in r), JSON.stringify(r));
    assert.deepEqual(
      [...r.applied].sort(),
      ["CACHE_CONTROL", "DIRECTORY_LISTING", "DOCUMENT_ROOT", "INDEX_FILE"],
    );
    assert.deepEqual(r.needsRestart, []);
    assert.equal((await site.get("/")).text, "<h1>home</h1>\n");
    assert.equal((await site.get("/a.css")).text, "b{}\n");
    assert.equal((await site.get("/a.css")).headers.get("cache-control"), "public, max-age=60");
    const listing = await site.get("/sub/");
    assert.equal(listing.status, 200);
    assert.match(listing.text, /x\.txt/);

    // A root that does not exist refuses the reload whole: the site keeps serving what it served.
    await site.conf(`${BASE}DOCUMENT_ROOT=gone\nACCESS_LOG=off\nDIRECTORY_LISTING=off\n`);
    const refused = await site.vento.reload();
    assert.ok("errors" in refused);
    assert.match(refused.errors.join("\n"), /vento\.conf:5: DOCUMENT_ROOT "gone" does not exist/);
    assert.equal((await site.get("/sub/")).status, 200, "nothing of the refused file applied");
  } finally {
    await site.stop();
  }
});

Deno.test("reload moves the access log to a new ACCESS_LOG path; PORT, HOST and WORKERS wait for a restart", async () => {
  const site = await startSite(`${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=logs/one.log\n`);
  try {
    await site.get("/");
    await site.conf(
      `PORT=8089\nHOST=::\nWORKERS=2\nADMIN_SOCKET=off\nALLOWLIST=\nDOCUMENT_ROOT=www\nACCESS_LOG=logs/two.log\n`,
    );
    const r = await site.vento.reload();
    assert.ok(!("errors" in r), JSON.stringify(r));
    assert.deepEqual(r.applied, ["ACCESS_LOG"]);
    assert.deepEqual(r.needsRestart, ["PORT", "HOST", "WORKERS"]);
    await site.get("/a.css");
    await site.vento.shutdown();
    const one = await Deno.readTextFile(`${site.dir}/logs/one.log`);
    const two = await Deno.readTextFile(`${site.dir}/logs/two.log`);
    assert.match(one, /"GET \/ HTTP\/1\.1" 200/);
    assert.doesNotMatch(one, /a\.css/);
    assert.match(two, /"GET \/a\.css HTTP\/1\.1" 200/);
  } finally {
    await site.stop();
  }
});

Deno.test("reload refuses an ACCESS_LOG in a missing folder and keeps logging where it did", async () => {
  const site = await startSite(`${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=logs/one.log\n`);
  try {
    await site.conf(`${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=nowhere/x.log\n`);
    const r = await site.vento.reload();
    assert.ok("errors" in r);
    assert.match(
      r.errors.join("\n"),
      /vento\.conf:6: ACCESS_LOG ".*nowhere\/x\.log": the folder .* does not exist/,
    );
    await site.get("/");
    await site.vento.shutdown();
    assert.match(await Deno.readTextFile(`${site.dir}/logs/one.log`), /"GET \/ HTTP\/1\.1" 200/);
  } finally {
    await site.stop();
  }
});

async function tlsGet(conn: Deno.TlsConn): Promise<string> {
  await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  let text = "";
  const buf = new Uint8Array(16384);
  while (!text.includes("</h1>")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed mid-response: ${text}`);
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text.slice(0, text.indexOf("\r\n"));
}

Deno.test({
  name: `reload swaps in a renewed TLS certificate: new handshakes get it, an open connection keeps its own${
    OPENSSL_AVAILABLE ? "" : " (skipped: openssl is not installed)"
  }`,
  ignore: !OPENSSL_AVAILABLE,
  fn: async () => {
    const first = await makeTestPki("vento-reload-tls1-");
    const second = await makeTestPki("vento-reload-tls2-");
    const tlsConf =
      `${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=off\nTLS_PORT=0\nTLS_CERT=tls.crt\nTLS_KEY=tls.key\n`;
    const dir = await Deno.makeTempDir({ prefix: "vento-reload-tlsdir-" });
    await Deno.copyFile(first.certFile, `${dir}/tls.crt`);
    await Deno.copyFile(first.keyFile, `${dir}/tls.key`);
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>tls</h1>\n");
    await Deno.writeTextFile(`${dir}/vento.conf`, tlsConf);
    const loaded = await loadConfig(`${dir}/vento.conf`);
    assert.ok(loaded.ok, loaded.ok ? "" : loaded.messages.join("\n"));
    const vento = await startVento(loaded.config, { configPath: `${dir}/vento.conf`, logError: () => {} });
    try {
      const port = vento.tlsAddr!.port;
      const old = await Deno.connectTls({ hostname: "localhost", port, caCerts: [first.caPem] });
      assert.match(await tlsGet(old), /^HTTP\/1\.1 200 /);

      // Renewed in place, as certbot does: same paths, new files.
      await Deno.copyFile(second.certFile, `${dir}/tls.crt`);
      await Deno.copyFile(second.keyFile, `${dir}/tls.key`);
      const r = await vento.reload();
      assert.ok(!("errors" in r), JSON.stringify(r));
      assert.deepEqual([...r.applied].sort(), ["TLS_CERT", "TLS_KEY"]);
      assert.equal(vento.tlsAddr!.port, port);

      const fresh = await Deno.connectTls({ hostname: "localhost", port, caCerts: [second.caPem] });
      assert.match(await tlsGet(fresh), /^HTTP\/1\.1 200 /);
      fresh.close();
      await assert.rejects(async () => {
        const stale = await Deno.connectTls({ hostname: "localhost", port, caCerts: [first.caPem] });
        try {
          await tlsGet(stale);
        } finally {
          stale.close();
        }
      }, "a new handshake no longer gets the old certificate");
      assert.match(await tlsGet(old), /^HTTP\/1\.1 200 /, "the open connection keeps its session");
      old.close();

      // A key that does not match is refused, and HTTPS goes on with the pair it has.
      await Deno.copyFile(first.keyFile, `${dir}/tls.key`);
      const refused = await vento.reload();
      assert.ok("errors" in refused);
      assert.match(refused.errors.join("\n"), /vento\.conf:\d+: TLS_KEY ".*tls\.key" is not the private key/);
      const still = await Deno.connectTls({ hostname: "localhost", port, caCerts: [second.caPem] });
      assert.match(await tlsGet(still), /^HTTP\/1\.1 200 /);
      still.close();
    } finally {
      await vento.shutdown();
      await Deno.remove(dir, { recursive: true });
      await first.remove();
      await second.remove();
    }
  },
});

Deno.test({
  name: `without --unstable-net, HTTPS starts and a SIGHUP swaps a renewed pair by rebinding${
    OPENSSL_AVAILABLE ? "" : " (skipped: openssl is not installed)"
  }`,
  ignore: !OPENSSL_AVAILABLE,
  fn: async () => {
    const first = await makeTestPki("vento-reload-nu1-");
    const second = await makeTestPki("vento-reload-nu2-");
    const dir = await Deno.makeTempDir({ prefix: "vento-reload-nu-" });
    await Deno.copyFile(first.certFile, `${dir}/tls.crt`);
    await Deno.copyFile(first.keyFile, `${dir}/tls.key`);
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>tls</h1>\n");
    await Deno.writeTextFile(
      `${dir}/vento.conf`,
      `${BASE}DOCUMENT_ROOT=www\nACCESS_LOG=off\nTLS_PORT=0\nTLS_CERT=tls.crt\nTLS_KEY=tls.key\n`,
    );
    const main = new URL("../../main.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "-A", main],
      cwd: dir,
      stdout: "piped",
      stderr: "null",
      env: { NO_COLOR: "1" },
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    const until = async (re: RegExp) => {
      while (!re.test(seen)) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`server output ended: ${seen}`);
        seen += value;
      }
    };
    try {
      await until(/https:\/\/127\.0\.0\.1:(\d+)\//);
      const port = Number(/https:\/\/127\.0\.0\.1:(\d+)\//.exec(seen)![1]);
      const a = await Deno.connectTls({ hostname: "localhost", port, caCerts: [first.caPem] });
      assert.match(await tlsGet(a), /^HTTP\/1\.1 200 /);
      a.close();
      await Deno.copyFile(second.certFile, `${dir}/tls.crt`);
      await Deno.copyFile(second.keyFile, `${dir}/tls.key`);
      child.kill("SIGHUP");
      await until(/reloaded: applied TLS_CERT, TLS_KEY/);
      const b = await Deno.connectTls({ hostname: "localhost", port, caCerts: [second.caPem] });
      assert.match(await tlsGet(b), /^HTTP\/1\.1 200 /);
      b.close();
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await lines.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
      await first.remove();
      await second.remove();
    }
  },
});
