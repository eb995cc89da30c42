/**
 * Every command that README.md, docs/*.md and the welcome page (www/index.html) show is in the checked
 * list below, and every entry of the list is still shown: a new or changed command fails this test until
 * it is listed with how it is checked. Most are then run here, as written, against a real server started
 * from a copy of the shipped `vento.conf` and `www/` in a temp folder, with two substitutions only: the
 * documented port 8080 becomes a free port, and `vento-admin` runs as `deno run -A cli/main.ts` (what
 * `deno task admin` runs). The rest are run by the test named in their entry, or say why they cannot run
 * here (root, systemd, a remote host, a benchmark of minutes).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { freePort } from "./_helpers/raw_client.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
const MAIN = `${ROOT}/main.ts`;
const ADMIN = `${ROOT}/cli/main.ts`;

/** The documents whose commands are checked. */
function documents(): string[] {
  const docs = [...Deno.readDirSync(`${ROOT}/docs`)].filter((e) => e.name.endsWith(".md")).map((e) =>
    `docs/${e.name}`
  );
  return ["README.md", ...docs.sort(), "www/index.html"];
}

/** What a command starts with, in prose (inline code), in a `sh` block or after a `$ ` prompt. */
const COMMAND =
  /^(deno (task|run|install|bundle|compile|fmt|lint|check)\b|(\.\/)?dist\/|(vento-admin|curl|systemctl|sudo|useradd|install|ln|cp|printf|redis-server|kill|wrk|h2load|cd)(\s|$))/;

/**
 * The commands a document shows: lines of ```sh blocks (continuations joined, trailing `# comments`
 * dropped), `$ ` lines of other blocks, and inline code spans (`<code>` in HTML) that start as a command.
 */
export function commandsOf(source: string): string[] {
  // A ````markdown block quotes a piece of document (with its own ``` blocks): read it as one.
  const text = source.replace(/^````\w*\n/gm, "");
  const found: string[] = [];
  const add = (c: string) => {
    const t = c.trim();
    if (t !== "" && COMMAND.test(t) && !found.includes(t)) found.push(t);
  };
  const fence = /```(\w*)\n([\s\S]*?)```/g;
  for (const m of text.matchAll(fence)) {
    let pending = "";
    for (const raw of m[2].split("\n")) {
      let line = raw.trim();
      if (m[1] !== "sh") {
        if (!line.startsWith("$ ")) continue;
        line = line.slice(2);
      }
      if (line.startsWith("#")) continue;
      const joined = pending === "" ? line : `${pending} ${line}`;
      if (joined.endsWith("\\")) {
        pending = joined.slice(0, -1).trim();
        continue;
      }
      pending = "";
      add(joined.replace(/\s+# .*$/, ""));
    }
  }
  const prose = text.replace(/```[\s\S]*?```/g, "");
  for (const m of prose.matchAll(/`([^`\n]+)`/g)) add(m[1]);
  for (const m of text.matchAll(/<code>([^<]+)<\/code>/g)) add(m[1].replaceAll("&amp;", "&"));
  return found;
}

/** How a documented command is checked. */
type Check =
  /** Run here by `runDocumented` (see `RUN`). */
  | { run: true }
  /** Run by another test file, named. */
  | { by: string }
  /** Not a command to run (a synopsis, a template, a fragment), or one that cannot run here: why. */
  | { not: string };

const RUN: Check = { run: true };
const SHIP: Check = { by: "tests/e2e/ship_test.ts (builds and runs the bundle and the binaries)" };
const OK: Check = { by: "deno task ok itself, run before every merge and by CI" };
const BENCH: Check = {
  not: "a load benchmark of minutes on a quiet machine; bench/README.md shows its runs",
};
const HOST: Check = {
  not: "installs as root on a systemd host; docs/vento.service passes systemd-analyze verify",
};
const APP_DOC: Check = { by: "tests/e2e/app_doc_test.ts (the example app answers the documented commands)" };
const TEMPLATE: Check = { not: "a template with placeholders, not a command" };

/** Every command the documents show, and how it is checked. */
const CHECKED: Record<string, Check> = {
  // README.md
  "deno task start": RUN,
  "deno task test": OK,
  "deno run --no-prompt --allow-net=[::]:8080,unix:$PWD/vento.sock --allow-read=. --allow-write=vento.log,vento.sock main.ts":
    RUN,
  "deno task admin reload": RUN,
  "deno task admin top": RUN,
  "vento-admin": { not: "the program's name in prose" },
  "vento-admin top": RUN,
  "wrk -t1": { not: "a fragment naming the load tool's options" },
  "deno task bench --scenario all --workers 1,2": BENCH,
  "deno task bench:idle": BENCH,
  "deno task admin …": TEMPLATE,
  "deno task bundle": SHIP,
  "dist/vento-admin.js": SHIP,
  "dist/vento.js": SHIP,
  "deno bundle": SHIP,
  "deno task compile": SHIP,
  "dist/vento": SHIP,
  "dist/vento-admin": SHIP,
  "deno compile": SHIP,
  "deno task ok": OK,
  "deno fmt --check": OK,
  "deno lint": OK,
  "deno check": OK,
  "deno task bench": BENCH,
  "deno task admin <command>": TEMPLATE,
  "deno task bench:attack": BENCH,
  "deno task bench:admin": BENCH,
  "deno task bench:spray": BENCH,
  "deno task bench:soak": BENCH,
  "deno task bench:fds": BENCH,
  "deno task gen:mime": { by: "tests/static/mime_test.ts (the generated table matches mime-db)" },
  // docs/admin.md
  "deno install -g -A -n vento-admin --config deno.json cli/main.ts": {
    not: "installs a global command into the user's Deno bin folder",
  },
  "vento-admin stats": RUN,
  "vento-admin conns": RUN,
  "vento-admin clients --limit 3": RUN,
  'vento-admin ban 203.0.113.0/24 --for 1h --reason "scanner range"': RUN,
  "vento-admin bans": RUN,
  "vento-admin --json bans": RUN,
  "vento-admin unban 198.51.100.7": RUN,
  'vento-admin kick 42; echo "exit $?"': RUN,
  'vento-admin ban nope; echo "exit $?"': RUN,
  "vento-admin reload": RUN,
  "vento-admin metrics | head -6": RUN,
  'vento-admin --socket /tmp/nonexist.sock stats; echo "exit $?"': RUN,
  'printf \'{"v":1,"id":1,"op":"stats"}\\n\' | socat - UNIX-CONNECT:vento.sock': {
    by: "tests/e2e/admin_test.ts (the same request line over the socket; socat is not installed here)",
  },
  "deno task bench:admin --top-cpu 30": BENCH,
  // docs/operations.md
  "deno run -A main.ts": { by: "tests/e2e/cli_test.ts (runs deno run -A main.ts in a temp site)" },
  "kill -HUP": { not: "prose: what ExecReload no longer does" },
  "vento-admin --help": RUN,
  "wrk -t1 -c50": { not: "a fragment naming the load tool's options" },
  "vento-admin metrics": RUN,
  "deno run --allow-read=. --allow-write=vento.log main.ts --check": RUN,
  "./dist/vento.js": SHIP,
  "./dist/vento": SHIP,
  "cd /path/to/site && /path/to/vento.js": SHIP,
  "deno run <flags> dist/vento.js": TEMPLATE,
  "deno run": { not: "prose" },
  "sudo -u vento deno run --no-prompt --allow-net=unix:/run/vento/vento.sock --allow-read=/run/vento/vento.sock --allow-write=/run/vento/vento.sock /opt/vento/current/vento-admin.js --socket /run/vento/vento.sock top":
    HOST,
  "useradd --system --no-create-home --shell /usr/sbin/nologin vento": HOST,
  "install -d -m 0755 /opt/vento/releases/$(git describe --always) /etc/vento /srv/www": HOST,
  "deno task bundle && cp dist/vento.js dist/vento-admin.js /opt/vento/releases/$(git describe --always)/":
    HOST,
  "ln -sfn /opt/vento/releases/$(git describe --always) /opt/vento/current": HOST,
  "cp -r www/. /srv/www/": HOST,
  "cp vento.conf /etc/vento/ && $EDITOR /etc/vento/vento.conf": HOST,
  "cp docs/vento.service /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now vento":
    HOST,
  "systemctl restart vento": HOST,
  "systemctl reload": HOST,
  "systemctl reload vento": HOST,
  "kill -USR1": { not: "the habit the document warns against: never send SIGUSR1 to Vento" },
  "deno task ok && deno task bundle": OK,
  "deno run --no-config --allow-read=/etc/vento,/srv/www --allow-write=/var/log/vento/access.log /opt/vento/releases/<version>/vento.js --check --config /etc/vento/vento.conf":
    TEMPLATE,
  "ln -sfn /opt/vento/releases/<version> /opt/vento/current": TEMPLATE,
  "curl -fsS -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:8080/": RUN,
  // docs/redis.md
  'redis-server --port 6379 --bind 10.0.0.5 --save "" --appendonly no': {
    not: "binds the example host 10.0.0.5; tests/e2e/redis_test.ts runs redis-server on loopback",
  },
  "vento-admin ban": { not: "the command's name in prose" },
  "redis-server": { not: "the program's name in prose" },
  // docs/site.md (its examples are run by tests/e2e/site_test.ts and tests/e2e/site_cli_test.ts)
  "deno task hash-password": { by: "tests/e2e/site_test.ts (docs/site.md: deno task hash-password …)" },
  "printf '%s' 'open sesame' | deno task hash-password": {
    by: "tests/e2e/site_test.ts (docs/site.md: deno task hash-password from a pipe …)",
  },
  "deno task bench:rules": BENCH,
  "deno run -A main.ts --check": { by: "tests/e2e/site_cli_test.ts (--check counts the site's rules)" },
  "curl -i http://127.0.0.1:8080/healthz": { by: "tests/e2e/site_test.ts (curl against HEALTH_PATH)" },
  "curl -s http://127.0.0.1:8080/metrics | grep vento_requests_total": {
    by: "tests/e2e/site_test.ts (METRICS_PATH answers vento_requests_total)",
  },
  "deno task bench --servers vento,vento-rules --scenario keepalive,pipeline": BENCH,
  "kill -HUP <pid>": TEMPLATE,
  "vento-admin drain": { by: "tests/cli/cli_test.ts (vento-admin drain against a live admin socket)" },
  "deno task precompress": { by: "tests/e2e/precompress_test.ts (--precompress writes fresh sidecars)" },
  "deno task precompress DIR": TEMPLATE,
  "deno task precompress dist/": { by: "tests/e2e/precompress_test.ts (--precompress on a folder)" },
  "deno run -A main.ts --precompress [DIR]": TEMPLATE,
  "deno task bench --scenario compress,compress-static": BENCH,
  "curl -sI -H 'Accept-Encoding: br, gzip' http://localhost:8080/": {
    by: "tests/e2e/compress_test.ts (compressed on the fly by Accept-Encoding)",
  },
  "curl -s --compressed http://localhost:8080/ | head -3": {
    by: "tests/e2e/compress_test.ts (curl --compressed gets the file back byte for byte)",
  },
  "curl -s -H 'Accept: application/json' 'http://localhost:8080/files/?sort=date'": {
    by: "tests/e2e/static_test.ts (the listing answers JSON by Accept, sorted by the query)",
  },
  "wrk -H 'Accept-Encoding: br, gzip'": { not: "a fragment naming the load tool's options" },
  // docs/app.md
  "curl -s http://127.0.0.1:8080/api/hello": APP_DOC,
  [`curl -s -H 'content-type: application/json' -d '{"text":"buy milk"}' http://127.0.0.1:8080/api/notes`]:
    APP_DOC,
  "curl -s http://127.0.0.1:8080/api/notes": APP_DOC,
  "curl -s http://127.0.0.1:8080/api/countdown": APP_DOC,
  "curl -s http://127.0.0.1:8080/api/nothing": APP_DOC,
  "vento-admin kick": { not: "the command's name in prose" },
  "dist/vento.js --config site/vento.conf": SHIP,
  "deno task bench --scenario app,app500,appclose --servers vento,denoserve": BENCH,
  "deno task bench --scenario keepalive,single,close,fair500,fair5000 --servers nginx,vento,denoserve,bare,denoconst,nodenet,handle":
    BENCH,
  "deno task bench --scenario close --servers nginx,vento,handle --set ALLOWLIST=": BENCH,
  "deno task bench --scenario fair5000,fair500 --servers nginx,nginx-plain,vento,handle --rounds 3": BENCH,
  "deno task bench --scenario fair5000,fair500 --servers nginx,nginx-plain,vento,handle --rounds 5": BENCH,
  "deno task bench --scenario keepalive,single,close,c500,pipeline --servers nginx,vento,handle --rounds 3":
    BENCH,
  "deno task bench --scenario keepalive,single,close,c500,pipeline,fair500,fair5000 --servers nginx,vento,denoserve,handle":
    BENCH,
  "deno task bench --scenario fair500 --workers 1,2,4 --servers nginx,vento --rounds 2 --duration 4 --warmup 1":
    BENCH,
  // docs/scaling.md
  "deno run … vento.js": TEMPLATE,
  // www/index.html
  "curl -i -X POST --data 'hello, Vento' http://localhost:8080/api/echo": RUN,
  "deno task admin --help": RUN,
};

Deno.test("every command the documents show is in the checked list, and every listed one is still shown", async () => {
  const shown = new Map<string, string>();
  for (const doc of documents()) {
    for (const c of commandsOf(await Deno.readTextFile(`${ROOT}/${doc}`))) {
      if (!shown.has(c)) shown.set(c, doc);
    }
  }
  const unlisted = [...shown].filter(([c]) => !(c in CHECKED)).map(([c, doc]) => `${doc}: ${c}`);
  assert.deepEqual(unlisted, [], "commands shown but not in CHECKED (add each with how it is checked)");
  const stale = Object.keys(CHECKED).filter((c) => !shown.has(c));
  assert.deepEqual(stale, [], "CHECKED entries no document shows any more (remove them)");
});

// --- running them ----------------------------------------------------------------------------------------

/** A copy of the shipped site: vento.conf (PORT set to `port`), www/, and main.ts beside them. */
async function shippedSite(port: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vento-docs-" });
  const conf = await Deno.readTextFile(`${ROOT}/vento.conf`);
  await Deno.writeTextFile(`${dir}/vento.conf`, conf.replace(/^PORT=8080$/m, `PORT=${port}`));
  await Deno.mkdir(`${dir}/www`);
  for (const e of Deno.readDirSync(`${ROOT}/www`)) {
    await Deno.copyFile(`${ROOT}/www/${e.name}`, `${dir}/www/${e.name}`);
  }
  // The least-privilege lines run `main.ts` from the site folder, as from a checkout: links to the code.
  for (const f of ["main.ts", "src", "deno.json", "deno.lock"]) {
    await Deno.symlink(`${ROOT}/${f}`, `${dir}/${f}`);
  }
  return dir;
}

/** Runs a documented shell line in `cwd`, with `vento-admin` and the port substituted as the header says. */
async function sh(cwd: string, command: string, port: number): Promise<{ code: number; out: string }> {
  // `vento-admin` on PATH, as `deno install` would put it there.
  const bin = `${cwd}/.bin`;
  await Deno.mkdir(bin, { recursive: true });
  await Deno.writeTextFile(
    `${bin}/vento-admin`,
    `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet --config="${ROOT}/deno.json" "${ADMIN}" "$@"\n`,
    { mode: 0o755 },
  );
  const line = command.replaceAll("8080", String(port)).replace(/^deno task admin\b/, "vento-admin");
  const out = await new Deno.Command("sh", {
    // One stream, in the order a terminal shows it.
    args: ["-c", `{ ${line}\n} 2>&1`],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` },
  }).output();
  const d = new TextDecoder();
  return { code: out.code, out: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** Starts a documented server command in `cwd`; resolves once it listens. */
async function serve(cwd: string, command: string, port: number) {
  const line = command.replaceAll("8080", String(port)).replace(
    /^deno task start$/,
    `"${Deno.execPath()}" run -A --quiet "${MAIN}"`,
  ).replace(/^deno /, `"${Deno.execPath()}" `);
  const child = new Deno.Command("sh", {
    args: ["-c", `exec ${line}`],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(
        `${command}: exited before listening: ${seen}${await new Response(child.stderr).text()}`,
      );
    }
    seen += value;
  }
  const rest = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return {
    stop: async () => {
      child.kill("SIGTERM");
      const status = await child.status;
      await rest;
      await child.stderr.cancel().catch(() => {});
      return status.code;
    },
  };
}

async function get(port: number, path: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  await r.body?.cancel();
  return r.status;
}

Deno.test("the server commands the documents show start the shipped site, serve it, and stop on SIGTERM", async () => {
  const servers = Object.entries(CHECKED).filter(([c, k]) =>
    "run" in k && (c === "deno task start" || (c.startsWith("deno run") && !c.includes("--check")))
  );
  assert.equal(servers.length, 2);
  for (const [command] of servers) {
    const port = freePort();
    const dir = await shippedSite(port);
    try {
      const s = await serve(dir, command, port);
      assert.equal(await get(port, "/"), 200, command);
      assert.equal(await s.stop(), 0, command);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

/** What each remaining runnable command must print and exit with (as the document shows it). */
const EXPECT: Record<string, { code?: number; out: RegExp }> = {
  "deno task admin reload": { out: /^reloaded: no setting changed$/m },
  "deno task admin top": { out: /^Vento \S+ +up /m },
  "deno task admin --help": { out: /Exit codes:/ },
  "vento-admin --help": { out: /Exit codes:/ },
  "vento-admin metrics": { out: /^vento_requests_total \d+$/m },
  "vento-admin top": { out: /^Vento \S+ +up /m },
  "vento-admin stats": { out: /^connections +open \d+\/4096/m },
  "vento-admin conns": { out: /^ID +REMOTE +STATE/m },
  "vento-admin clients --limit 3": { out: /^CLIENT +CONNS|^no clients tracked$/m },
  'vento-admin ban 203.0.113.0/24 --for 1h --reason "scanner range"': {
    out: /^banned 203\.0\.113\.0\/24 for 1h00m$/m,
  },
  "vento-admin bans": { out: /^203\.0\.113\.0\/24 +\d+m\d\ds +0 +scanner range$/m },
  "vento-admin --json bans": { out: /"key": "203\.0\.113\.0\/24"/ },
  "vento-admin unban 198.51.100.7": { out: /^unbanned 198\.51\.100\.7$/m },
  'vento-admin kick 42; echo "exit $?"': { out: /^vento-admin: NOT_FOUND: no connection 42\nexit 1$/m },
  'vento-admin ban nope; echo "exit $?"': { out: /expected an IP address or CIDR[^]*^exit 2$/m },
  "vento-admin reload": { out: /^reloaded: no setting changed$/m },
  "vento-admin metrics | head -6": { out: /^# HELP vento_\w+ [^]*# TYPE /m },
  'vento-admin --socket /tmp/nonexist.sock stats; echo "exit $?"': {
    out: /^vento-admin: no Vento server is listening on \/tmp\/nonexist\.sock .*\nexit 3$/m,
  },
  "curl -fsS -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:8080/": { out: /^200$/m },
  "curl -i -X POST --data 'hello, Vento' http://localhost:8080/api/echo": {
    out: /^HTTP\/1\.1 200 [^]*hello, Vento$/m,
  },
  "deno run --allow-read=. --allow-write=vento.log main.ts --check": {
    out: /vento\.conf: OK; would listen on/,
  },
};

Deno.test("every other runnable command runs as written against the running shipped site", async () => {
  const runnable = Object.entries(CHECKED).filter(([, k]) => "run" in k).map(([c]) => c);
  const others = runnable.filter((c) => c !== "deno task start" && !/^deno run --no-prompt/.test(c));
  assert.deepEqual(others.filter((c) => !(c in EXPECT)), [], "every runnable command has its expectation");
  const port = freePort();
  const dir = await shippedSite(port);
  try {
    const s = await serve(dir, "deno task start", port);
    // The state the examples show: a ban of 198.51.100.7 to lift, an open keep-alive connection.
    const open = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(
        (await sh(dir, "vento-admin ban 198.51.100.7 --for 10m --reason flood-test", port)).code,
        0,
      );
      await open.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: docs\r\n\r\n"));
      await open.read(new Uint8Array(65536));
      for (const command of others) {
        const r = await sh(dir, command, port);
        const want = EXPECT[command];
        assert.match(r.out, want.out, `${command} printed:\n${r.out}`);
        if (!command.includes("echo")) {
          assert.equal(r.code, want.code ?? 0, `${command}: exit ${r.code}\n${r.out}`);
        }
      }
    } finally {
      open.close();
      assert.equal(await s.stop(), 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
