/**
 * Tests for `parseConfig` (pure: every kind of error with its line number, comments, whitespace,
 * duplicates, value kinds), `loadConfig` (file system: absent files, path resolution, the document
 * root check) and the shipped `vento.conf` (it names every key with its true default and doc).
 */

import assert from "node:assert/strict";
import { CidrSet } from "../../src/core/cidr.ts";
import {
  type Config,
  DEFAULT_CONFIG,
  formatConfigError,
  loadConfig,
  parseConfig,
  type ParseConfigResult,
  SETTINGS,
} from "../../src/config/config.ts";

const REPO_ROOT = decodeURIComponent(new URL("../..", import.meta.url).pathname).replace(/\/$/, "");

function okConfig(r: ParseConfigResult): Config {
  if (!r.ok) assert.fail(`expected a config, got errors: ${JSON.stringify(r.errors)}`);
  return r.config;
}

function errorsOf(r: ParseConfigResult): string[] {
  if (r.ok) assert.fail("expected errors, got a config");
  return r.errors.map((e) => formatConfigError("vento.conf", e));
}

/** Runs `body` with a fresh temp folder that is removed afterwards whatever happens. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vento_config_test_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// --- parseConfig ---------------------------------------------------------------------------------

Deno.test("parseConfig of empty text gives the defaults and no set keys", () => {
  const r = parseConfig("");
  assert.deepEqual(okConfig(r), DEFAULT_CONFIG);
  assert.ok(r.ok && r.setKeys.length === 0);
});

Deno.test("parseConfig ignores comments, blank lines and whitespace around keys and values", () => {
  const text = "# a comment\n\n   # indented comment\n\t PORT \t=  9090  \r\n\nDOTFILES= allow\n";
  const r = parseConfig(text);
  const c = okConfig(r);
  assert.equal(c.port, 9090);
  assert.equal(c.dotfiles, "allow");
  assert.ok(r.ok);
  assert.deepEqual(r.setKeys, ["PORT", "DOTFILES"]);
});

Deno.test("parseConfig keeps everything after the first = as the value", () => {
  const c = okConfig(parseConfig("CACHE_CONTROL=public, max-age=60"));
  assert.equal(c.cacheControl, "public, max-age=60");
});

Deno.test("parseConfig does not mutate the defaults it starts from", () => {
  okConfig(parseConfig("ALLOWLIST=10.0.0.0/8\nPORT=1"));
  assert.deepEqual(DEFAULT_CONFIG.allowlist, ["127.0.0.0/8", "::1"]);
  assert.equal(DEFAULT_CONFIG.port, 8080);
});

Deno.test("parseConfig reports a line without = with its line number", () => {
  assert.deepEqual(errorsOf(parseConfig("# c\nPORT 8080\n")), [
    'vento.conf:2: expected KEY=VALUE, got "PORT 8080"',
  ]);
});

Deno.test("parseConfig reports an unknown key with its line number", () => {
  assert.deepEqual(errorsOf(parseConfig("PORT=1\n\nDOCUMENT_RUTE=www")), [
    'vento.conf:3: unknown key "DOCUMENT_RUTE" (did you mean DOCUMENT_ROOT?)',
  ]);
});

Deno.test("parseConfig suggests the nearest known key for a typo, and none for an unrelated word", () => {
  assert.deepEqual(errorsOf(parseConfig("DOCUMENT_ROT=www\nTLS_CRT=a.pem\nBANANA=1\n")), [
    'vento.conf:1: unknown key "DOCUMENT_ROT" (did you mean DOCUMENT_ROOT?)',
    'vento.conf:2: unknown key "TLS_CRT" (did you mean TLS_CERT?)',
    'vento.conf:3: unknown key "BANANA"',
  ]);
});

Deno.test("parseConfig strips matching quotes around a value as a shell would", () => {
  const c = okConfig(parseConfig(`CACHE_CONTROL="public, max-age=60"\nINDEX_FILE='home.html'\nPORT="81"\n`));
  assert.equal(c.cacheControl, "public, max-age=60");
  assert.equal(c.indexFile, "home.html");
  assert.equal(c.port, 81);
  // The other quote may appear inside; a quoted value keeps a " #" as text.
  const d = okConfig(parseConfig(`CACHE_CONTROL="it's # not a comment"  # but this is\n`));
  assert.equal(d.cacheControl, "it's # not a comment");
});

Deno.test("parseConfig refuses an unclosed quote or text after the closing quote, naming the key", () => {
  assert.deepEqual(errorsOf(parseConfig(`CACHE_CONTROL="public\nINDEX_FILE="a"b\n`)), [
    'vento.conf:1: CACHE_CONTROL: the value opens a " quote that is never closed',
    'vento.conf:2: INDEX_FILE: unexpected text after the closing " quote: "b"',
  ]);
});

Deno.test("parseConfig takes ' #' after a value as a comment, and a '#' inside a word as text", () => {
  const c = okConfig(
    parseConfig("PORT=8081   # the public port\nINDEX_FILE=a#b.html\nALLOWLIST=10.0.0.0/8 # office\n"),
  );
  assert.equal(c.port, 8081);
  assert.equal(c.indexFile, "a#b.html");
  assert.deepEqual(c.allowlist, ["10.0.0.0/8"]);
});

Deno.test("every KEY=VALUE line of docs/redis.md parses as pasted, trailing comments included", async () => {
  const text = await Deno.readTextFile(`${REPO_ROOT}/docs/redis.md`);
  const lines = text.split("\n").filter((l) => /^GUARD_STORE=/.test(l));
  assert.ok(lines.length > 0);
  for (const line of lines) {
    // The user-only URL is shown with the password file of the next line; give it one.
    const r = parseConfig(`${line}\nGUARD_STORE_PASSWORD_FILE=redis.password`);
    assert.ok(r.ok, `${line}: ${JSON.stringify(!r.ok && r.errors)}`);
    assert.ok(!r.config.guardStore.includes("#") && !r.config.guardStore.includes(" "), line);
  }
});

Deno.test("parseConfig rejects a lower-case key and names the right spelling", () => {
  assert.deepEqual(errorsOf(parseConfig("port=80")), [
    'vento.conf:1: unknown key "port" (keys are upper case: PORT)',
  ]);
});

Deno.test("parseConfig reports a duplicate key naming the earlier line", () => {
  assert.deepEqual(errorsOf(parseConfig("PORT=1\n# x\nPORT=2\n")), [
    "vento.conf:3: PORT is already set on line 1",
  ]);
});

Deno.test("parseConfig rejects a port out of range and a non-numeric port", () => {
  assert.deepEqual(errorsOf(parseConfig("PORT=65536")), [
    "vento.conf:1: PORT must be between 0 and 65535, got 65536",
  ]);
  assert.deepEqual(errorsOf(parseConfig("PORT=80a")), [
    'vento.conf:1: PORT must be a whole number, got "80a"',
  ]);
  assert.deepEqual(errorsOf(parseConfig("PORT=-1")), [
    'vento.conf:1: PORT must be a whole number, got "-1"',
  ]);
  assert.equal(okConfig(parseConfig("PORT=0")).port, 0);
  assert.equal(okConfig(parseConfig("PORT=65535")).port, 65535);
});

Deno.test("parseConfig rejects an empty string value", () => {
  assert.deepEqual(errorsOf(parseConfig("INDEX_FILE=")), ["vento.conf:1: INDEX_FILE must not be empty"]);
});

Deno.test("parseConfig reads CIDR lists, trimming items and allowing an empty list", () => {
  const c = okConfig(parseConfig("ALLOWLIST= 127.0.0.0/8 , ::1,2001:db8::/32,10.1.2.3\nTRUSTED_PROXIES="));
  assert.deepEqual(c.allowlist, ["127.0.0.0/8", "::1", "2001:db8::/32", "10.1.2.3"]);
  assert.deepEqual(c.trustedProxies, []);
});

Deno.test("parseConfig rejects malformed CIDRs with the offending item", () => {
  const cases: [string, string][] = [
    ["ALLOWLIST=10.0.0.256", "10.0.0.256"],
    ["ALLOWLIST=10.0.0.0/33", "10.0.0.0/33"],
    ["ALLOWLIST=::1/129", "::1/129"],
    ["ALLOWLIST=1::2::3", "1::2::3"],
    ["TRUSTED_PROXIES=10.0.0.0/8,localhost", "localhost"],
    // Once accepted by a looser check that the guard then ignored at run time:
    ["TRUSTED_PROXIES=10.0.0.1,1:2", "1:2"],
    ["ALLOWLIST=12345::1", "12345::1"],
    ["ALLOWLIST=1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"],
  ];
  for (const [line, bad] of cases) {
    const key = line.slice(0, line.indexOf("="));
    assert.deepEqual(errorsOf(parseConfig(line)), [
      `vento.conf:1: ${key}: "${bad}" is not an IP address or CIDR`,
    ]);
  }
});

Deno.test("every CIDR list the config accepts, the guard uses whole (one parser for both)", () => {
  const samples = [
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "::",
    "1.2.3.4",
    "fe80::1%",
    "::1/128",
    "1:2::",
    "0.0.0.0/0",
  ];
  for (const item of samples) {
    const r = parseConfig(`ALLOWLIST=${item}`);
    const invalid: string[] = [];
    new CidrSet([item], invalid);
    assert.equal(r.ok, invalid.length === 0, item);
  }
});

Deno.test("parseConfig reads booleans as on/off, true/false, yes/no, 1/0 and rejects others", () => {
  for (const v of ["on", "ON", "true", "yes", "1"]) {
    assert.equal(okConfig(parseConfig(`DIRECTORY_LISTING=${v}`)).directoryListing, true, v);
  }
  for (const v of ["off", "False", "no", "0"]) {
    assert.equal(okConfig(parseConfig(`PRECOMPRESSED=${v}`)).precompressed, false, v);
  }
  assert.deepEqual(errorsOf(parseConfig("PRECOMPRESSED=maybe")), [
    'vento.conf:1: PRECOMPRESSED must be on or off, got "maybe"',
  ]);
});

Deno.test("parseConfig accepts enum values exactly and rejects others", () => {
  assert.equal(okConfig(parseConfig("LIMIT_MODE=dry-run")).limitMode, "dry-run");
  assert.equal(okConfig(parseConfig("DOTFILES=allow")).dotfiles, "allow");
  assert.deepEqual(errorsOf(parseConfig("DOTFILES=Allow")), [
    'vento.conf:1: DOTFILES must be one of hide, allow, got "Allow"',
  ]);
});

Deno.test("parseConfig reports every problem of a file in one pass, in line order", () => {
  const text = "PORT=99999\nNOPE=1\nDOTFILES=show\nPORT=1\n";
  assert.deepEqual(errorsOf(parseConfig(text)), [
    "vento.conf:1: PORT must be between 0 and 65535, got 99999",
    'vento.conf:2: unknown key "NOPE"',
    'vento.conf:3: DOTFILES must be one of hide, allow, got "show"',
    "vento.conf:4: PORT is already set on line 1",
  ]);
});

Deno.test("parseConfig checks settings against each other, naming the line of the first", () => {
  assert.deepEqual(errorsOf(parseConfig("# x\nBAN_MS=100\nBAN_MAX_MS=10")), [
    "vento.conf:2: BAN_MS exceeds BAN_MAX_MS",
  ]);
  assert.deepEqual(errorsOf(parseConfig("MAX_CONNS=10\nMAX_CONNS_PER_CLIENT=11")), [
    "vento.conf:2: MAX_CONNS_PER_CLIENT exceeds MAX_CONNS",
  ]);
});

Deno.test("formatConfigError omits the line number for whole-file problems", () => {
  assert.equal(formatConfigError("a.conf", { line: 0, message: "boom" }), "a.conf: boom");
  assert.equal(formatConfigError("a.conf", { line: 7, message: "boom" }), "a.conf:7: boom");
});

// --- loadConfig ----------------------------------------------------------------------------------

Deno.test("loadConfig resolves relative paths against the conf file's folder and keeps absolute ones", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/etc/site`, { recursive: true });
    const conf = `${dir}/etc/vento.conf`;
    await Deno.writeTextFile(
      conf,
      "DOCUMENT_ROOT=site\nACCESS_LOG=logs/../access.log\nADMIN_SOCKET=../run/v.sock\n",
    );
    const r = await loadConfig(conf);
    if (!r.ok) return assert.fail(r.messages.join("\n"));
    assert.equal(r.path, conf);
    assert.equal(r.found, true);
    assert.equal(r.config.documentRoot, `${dir}/etc/site`);
    assert.equal(r.config.accessLog, `${dir}/etc/access.log`);
    assert.equal(r.config.adminSocket, `${dir}/run/v.sock`);

    await Deno.writeTextFile(
      conf,
      `DOCUMENT_ROOT=${dir}/etc/site\nACCESS_LOG=/var/log/v.log\nADMIN_SOCKET=/tmp/x.sock`,
    );
    const abs = await loadConfig(conf);
    if (!abs.ok) return assert.fail(abs.messages.join("\n"));
    assert.equal(abs.config.documentRoot, `${dir}/etc/site`);
    assert.equal(abs.config.accessLog, "/var/log/v.log");
    assert.equal(abs.config.adminSocket, "/tmp/x.sock");
  });
});

Deno.test("loadConfig leaves ACCESS_LOG - and off and ADMIN_SOCKET off unresolved", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/www`);
    const conf = `${dir}/vento.conf`;
    for (const log of ["-", "off"]) {
      await Deno.writeTextFile(conf, `ACCESS_LOG=${log}\nADMIN_SOCKET=off\n`);
      const r = await loadConfig(conf);
      if (!r.ok) return assert.fail(r.messages.join("\n"));
      assert.equal(r.config.accessLog, log);
      assert.equal(r.config.adminSocket, "off");
      assert.equal(r.config.documentRoot, `${dir}/www`);
    }
  });
});

Deno.test("loadConfig names the line where a missing DOCUMENT_ROOT was set", async () => {
  await withTempDir(async (dir) => {
    const conf = `${dir}/vento.conf`;
    await Deno.writeTextFile(conf, "PORT=8080\nDOCUMENT_ROOT=x\n");
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: DOCUMENT_ROOT "x" does not exist (${dir}/x)`],
    });
  });
});

Deno.test("loadConfig says (default) when the missing document root was never set", async () => {
  await withTempDir(async (dir) => {
    const conf = `${dir}/vento.conf`;
    await Deno.writeTextFile(conf, "PORT=8080\n");
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}: DOCUMENT_ROOT "www" (default) does not exist (${dir}/www)`],
    });
  });
});

Deno.test("loadConfig rejects a document root that is a file", async () => {
  await withTempDir(async (dir) => {
    const conf = `${dir}/vento.conf`;
    await Deno.writeTextFile(`${dir}/file.txt`, "hi");
    await Deno.writeTextFile(conf, `# root\nDOCUMENT_ROOT=${dir}/file.txt\n`);
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: DOCUMENT_ROOT "${dir}/file.txt" is not a directory`],
    });
  });
});

Deno.test("loadConfig reports an explicitly given conf file that is absent", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await loadConfig(`${dir}/nope.conf`), {
      ok: false,
      messages: [`${dir}/nope.conf: config file not found`],
    });
  });
});

Deno.test("loadConfig formats parse errors with the path it was given", async () => {
  await withTempDir(async (dir) => {
    const conf = `${dir}/vento.conf`;
    await Deno.writeTextFile(conf, "PORT=1\nPORT=2\nFOO=3\n");
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: PORT is already set on line 1`, `${conf}:3: unknown key "FOO"`],
    });
  });
});

Deno.test("loadConfig rejects a conf file that is not UTF-8", async () => {
  await withTempDir(async (dir) => {
    const conf = `${dir}/vento.conf`;
    await Deno.writeFile(conf, new Uint8Array([0x50, 0x4f, 0x52, 0x54, 0x3d, 0xff, 0x0a]));
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}: config file is not valid UTF-8`],
    });
  });
});

Deno.test("loadConfig applies a port override over PORT and rejects one out of range", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/www`);
    const conf = `${dir}/vento.conf`;
    await Deno.writeTextFile(conf, "PORT=8081\n");
    const r = await loadConfig(conf, { portOverride: 0 });
    assert.ok(r.ok);
    assert.equal(r.config.port, 0);
    assert.deepEqual(await loadConfig(conf, { portOverride: 70000 }), {
      ok: false,
      messages: ["--port must be between 0 and 65535, got 70000"],
    });
  });
});

Deno.test("loadConfig without a path falls back to defaults when ./vento.conf is absent", async () => {
  // The default path is relative to the working directory, which is process-wide; a child process
  // gets its own, so this test cannot disturb tests running beside it.
  await withTempDir(async (dir) => {
    const script = `import { loadConfig } from ${JSON.stringify(`${REPO_ROOT}/src/config/config.ts`)};
      console.log(JSON.stringify(await loadConfig(null)));`;
    const run = async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--no-config", script],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout));
    };
    assert.deepEqual(await run(), {
      ok: false,
      messages: [`vento.conf: DOCUMENT_ROOT "www" (default) does not exist (${dir}/www)`],
    });
    await Deno.mkdir(`${dir}/www`);
    const r = await run();
    assert.equal(r.ok, true);
    assert.equal(r.found, false);
    assert.equal(r.path, `${dir}/vento.conf`);
    assert.deepEqual(r.config, {
      ...DEFAULT_CONFIG,
      documentRoot: `${dir}/www`,
      accessLog: `${dir}/vento.log`,
      adminSocket: `${dir}/vento.sock`,
    });
  });
});

// --- GUARD_STORE secrets -------------------------------------------------------------------------

Deno.test("parseConfig accepts GUARD_STORE with user, password and rediss://", () => {
  for (
    const url of ["redis://vento:s3cret@10.0.0.5:6379/2", "redis://:s3cret@[::1]:6379", "rediss://h:6380"]
  ) {
    assert.equal(okConfig(parseConfig(`GUARD_STORE=${url}`)).guardStore, url);
  }
});

Deno.test("parseConfig quotes a bad GUARD_STORE with its user and password hidden", () => {
  const errors = errorsOf(parseConfig("GUARD_STORE=redis://vento:s3cret@h"));
  assert.equal(errors.length, 1);
  assert.match(
    errors[0],
    /^vento\.conf:1: GUARD_STORE must be memory or redis\[s\]:\/\/.*, got "redis:\/\/\*\*\*@h"$/,
  );
  assert.ok(!errors.join("").includes("s3cret"), errors[0]);
  const atInPassword = errorsOf(parseConfig("GUARD_STORE=redis://u:p@ss-secret@h:1"));
  assert.ok(!atInPassword.join("").includes("ss-secret"), atInPassword[0]);
  assert.match(atInPassword[0], /percent-encode/);
});

Deno.test("parseConfig checks the GUARD_STORE secret keys against GUARD_STORE", () => {
  assert.deepEqual(errorsOf(parseConfig("GUARD_STORE_PASSWORD_FILE=pw")), [
    "vento.conf:1: GUARD_STORE_PASSWORD_FILE needs a redis:// or rediss:// GUARD_STORE",
  ]);
  assert.deepEqual(errorsOf(parseConfig("GUARD_STORE=redis://h:1\nGUARD_STORE_CA_FILE=ca.pem")), [
    "vento.conf:2: GUARD_STORE_CA_FILE needs a rediss:// (TLS) GUARD_STORE",
  ]);
  // A lone name before @ is often a password written in the wrong place: refused, and not quoted.
  const userOnly = errorsOf(parseConfig("GUARD_STORE=redis://hunter2@h:1"));
  assert.deepEqual(userOnly, [
    "vento.conf:1: GUARD_STORE names a user but no password: add :password or set GUARD_STORE_PASSWORD_FILE",
  ]);
  const c = okConfig(
    parseConfig("GUARD_STORE=rediss://vento@h:1\nGUARD_STORE_PASSWORD_FILE=pw\nGUARD_STORE_CA_FILE=ca"),
  );
  assert.equal(c.guardStorePasswordFile, "pw");
  assert.equal(c.guardStoreCaFile, "ca");
  assert.equal(c.guardStorePassword, null, "parseConfig reads no file");
});

Deno.test("loadConfig reads GUARD_STORE_PASSWORD_FILE and GUARD_STORE_CA_FILE relative to the conf", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/etc/secrets`, { recursive: true });
    await Deno.mkdir(`${dir}/etc/www`);
    await Deno.writeTextFile(`${dir}/etc/secrets/redis.pw`, "s3cret with spaces\r\n\n");
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    await Deno.writeTextFile(`${dir}/etc/ca.pem`, pem);
    const conf = `${dir}/etc/vento.conf`;
    await Deno.writeTextFile(
      conf,
      "GUARD_STORE=rediss://vento:ignored@h:6380\nGUARD_STORE_PASSWORD_FILE=secrets/redis.pw\n" +
        "GUARD_STORE_CA_FILE=ca.pem\n",
    );
    const r = await loadConfig(conf);
    if (!r.ok) return assert.fail(r.messages.join("\n"));
    assert.equal(r.config.guardStorePasswordFile, `${dir}/etc/secrets/redis.pw`);
    assert.equal(r.config.guardStorePassword, "s3cret with spaces", "trailing newlines dropped");
    assert.equal(r.config.guardStoreCaFile, `${dir}/etc/ca.pem`);
    assert.equal(r.config.guardStoreCaPem, pem);
  });
});

Deno.test("loadConfig refuses a missing or empty password file and a CA file with no certificate", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/www`);
    const conf = `${dir}/vento.conf`;
    const store = "GUARD_STORE=rediss://h:6380\n";
    await Deno.writeTextFile(conf, `${store}GUARD_STORE_PASSWORD_FILE=nope.pw\n`);
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: GUARD_STORE_PASSWORD_FILE "${dir}/nope.pw" does not exist`],
    });
    await Deno.writeTextFile(`${dir}/empty.pw`, "\n");
    await Deno.writeTextFile(conf, `${store}GUARD_STORE_PASSWORD_FILE=empty.pw\n`);
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: GUARD_STORE_PASSWORD_FILE "${dir}/empty.pw" is empty`],
    });
    await Deno.writeTextFile(`${dir}/ca.pem`, "not a certificate\n");
    await Deno.writeTextFile(conf, `${store}GUARD_STORE_CA_FILE=ca.pem\n`);
    assert.deepEqual(await loadConfig(conf), {
      ok: false,
      messages: [`${conf}:2: GUARD_STORE_CA_FILE "${dir}/ca.pem" holds no PEM certificate`],
    });
  });
});

Deno.test("HEALTH_PATH and METRICS_PATH take off or a clean path, distinct from each other and the echo", () => {
  const c = okConfig(parseConfig("HEALTH_PATH=/healthz\nMETRICS_PATH=/-/metrics\nECHO=off"));
  assert.equal(c.healthPath, "/healthz");
  assert.equal(c.metricsPath, "/-/metrics");
  assert.equal(c.echo, false);
  assert.deepEqual(c.healthAllowlist, ["127.0.0.0/8", "::1"]);
  for (const bad of ["healthz", "/a?b", "/a/../b", "/a b", "/%2e%2e"]) {
    assert.match(
      errorsOf(parseConfig(`HEALTH_PATH=${bad}`))[0],
      /^vento\.conf:1: HEALTH_PATH must be off or a path/,
    );
  }
  assert.deepEqual(errorsOf(parseConfig("HEALTH_PATH=/x\nMETRICS_PATH=/x")), [
    'vento.conf:2: METRICS_PATH "/x" is already HEALTH_PATH',
  ]);
  assert.deepEqual(errorsOf(parseConfig("METRICS_PATH=/api/echo")), [
    'vento.conf:1: METRICS_PATH "/api/echo" is already the echo route',
  ]);
  assert.deepEqual(errorsOf(parseConfig("METRICS_ALLOWLIST=10.0.0.0/8, nope")), [
    'vento.conf:1: METRICS_ALLOWLIST: "nope" is not an IP address or CIDR',
  ]);
});

// --- the shipped vento.conf ----------------------------------------------------------------------

const COMMENTED_KEY = /^#\s*([A-Z][A-Z0-9_]*=.*)$/;

Deno.test("shipped vento.conf names every setting, each under its one-line doc", async () => {
  const lines = (await Deno.readTextFile(`${REPO_ROOT}/vento.conf`)).split("\n");
  for (const s of SETTINGS) {
    const i = lines.findIndex((l) => l.startsWith(`${s.key}=`) || l.startsWith(`#${s.key}=`));
    assert.ok(i > 0, `${s.key} is missing from vento.conf`);
    assert.equal(lines[i - 1], `# ${s.doc}`, `the line above ${s.key} should be its doc`);
  }
});

Deno.test("shipped vento.conf with every key uncommented parses to exactly the defaults", async () => {
  const text = await Deno.readTextFile(`${REPO_ROOT}/vento.conf`);
  const uncommented = text.split("\n").map((l) => l.match(COMMENTED_KEY)?.[1] ?? l).join("\n");
  const r = parseConfig(uncommented);
  assert.deepEqual(okConfig(r), DEFAULT_CONFIG);
  assert.ok(r.ok);
  assert.deepEqual([...r.setKeys].sort(), SETTINGS.map((s) => s.key).sort());
});

Deno.test("shipped vento.conf sets PORT=8080 and DOCUMENT_ROOT=www and loads against the repo", async () => {
  const r = await loadConfig(`${REPO_ROOT}/vento.conf`);
  if (!r.ok) return assert.fail(r.messages.join("\n"));
  assert.equal(r.config.port, 8080);
  assert.equal(r.config.documentRoot, `${REPO_ROOT}/www`);
  const active = parseConfig(await Deno.readTextFile(`${REPO_ROOT}/vento.conf`));
  assert.ok(active.ok);
  assert.deepEqual(active.setKeys, ["PORT", "DOCUMENT_ROOT"]);
});

// --- APP ----------------------------------------------------------------------------------------

Deno.test("APP_PATHS takes comma-separated path prefixes and refuses what a path cannot start with", () => {
  assert.deepEqual(okConfig(parseConfig("APP_PATHS= /api/ , /auth/,/v1")).appPaths, [
    "/api/",
    "/auth/",
    "/v1",
  ]);
  assert.deepEqual(errorsOf(parseConfig("APP_PATHS=api/")), [
    'vento.conf:1: APP_PATHS: "api/" is not a path prefix (it must start with / and hold no spaces, "?", "#" or "%")',
  ]);
  assert.deepEqual(errorsOf(parseConfig("APP_PATHS=/a?b")).length, 1);
  assert.deepEqual(errorsOf(parseConfig("APP_PATHS=/%41/")).length, 1);
  assert.deepEqual(errorsOf(parseConfig("APP_PATHS= , ")), [
    "vento.conf:1: APP_PATHS needs at least one path prefix, like /api/",
  ]);
});

Deno.test("loadConfig resolves APP against the conf's folder and reports a missing module with its line", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeTextFile(`${dir}/app.ts`, "export default { fetch: () => new Response('') };\n");
    await Deno.writeTextFile(`${dir}/vento.conf`, "APP=app.ts\n");
    const ok = await loadConfig(`${dir}/vento.conf`);
    assert.ok(ok.ok);
    assert.equal(ok.config.app, `${dir}/app.ts`);
    await Deno.writeTextFile(`${dir}/vento.conf`, "# app\nAPP=nope.ts\n");
    const missing = await loadConfig(`${dir}/vento.conf`);
    assert.deepEqual(missing, {
      ok: false,
      messages: [`${dir}/vento.conf:2: APP "nope.ts" does not exist (${dir}/nope.ts)`],
    });
  });
});
