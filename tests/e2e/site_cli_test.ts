/**
 * The site rules from the command line, as an operator meets them: `deno run -A main.ts` as a subprocess.
 * A bad `_headers` line exits 2 naming file and line with nothing bound; `--check` counts the rules;
 * SIGHUP and `vento-admin reload` apply a changed file, and refuse a broken one while the old rules keep
 * serving.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { request } from "../_helpers/raw_client.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const ADMIN_MAIN = fileURLToPath(new URL("../../cli/main.ts", import.meta.url));
/** How long a reload may take to show. */
const EFFECT_TIMEOUT_MS = 10_000;

async function tempSite(headers: string | null): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vento-site-cli-" });
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>cli</h1>\n");
  await Deno.writeTextFile(`${dir}/vento.conf`, "PORT=0\nHOST=127.0.0.1\nADMIN_SOCKET=off\nACCESS_LOG=off\n");
  if (headers !== null) await Deno.writeTextFile(`${dir}/www/_headers`, headers);
  return dir;
}

Deno.test("a bad _headers line at start exits 2 with PATH:LINE and binds nothing", async () => {
  const dir = await tempSite("/*\n  X-Ok: yes\n  Connection: close\n");
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 2);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(
      stderr,
      /^vento: \/\S+\/www\/_headers:3: Connection is hop-by-hop \(Vento manages the connection\)$/m,
    );
    assert.doesNotMatch(new TextDecoder().decode(out.stdout), /listening/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGHUP applies a changed _headers and refuses a broken one, keeping the old rules", async () => {
  const dir = await tempSite(null);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let err = "";
  const readUntil = async (
    reader: ReadableStreamDefaultReader<string>,
    get: () => string,
    add: (s: string) => void,
    re: RegExp,
  ) => {
    const deadline = performance.now() + EFFECT_TIMEOUT_MS;
    while (!re.test(get())) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${re}: ${get()}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) =>
        timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${re}: ${get()}`)),
          deadline - performance.now(),
        )
      );
      const { value, done } = await Promise.race([reader.read(), late]).finally(() => clearTimeout(timer));
      if (done) throw new Error(`output ended before ${re}: ${get()}`);
      add(value);
    }
  };
  try {
    await readUntil(stdout, () => out, (s) => out += s, /listening on http:\/\/\S+:(\d+)\//);
    const port = Number(/listening on http:\/\/\S+:(\d+)\//.exec(out)![1]);
    const get = () => request(port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert.equal((await get()).headers.get("x-release"), undefined);

    await Deno.writeTextFile(`${dir}/www/_headers`, "/*\n  X-Release: 1\n");
    child.kill("SIGHUP");
    await readUntil(stdout, () => out, (s) => out += s, /vento: reloaded: applied _headers\n/);
    assert.equal((await get()).headers.get("x-release"), "1");

    await Deno.writeTextFile(`${dir}/www/_headers`, "/*\n  X-Release: 2\n  Date: now\n");
    child.kill("SIGHUP");
    await readUntil(stderr, () => err, (s) => err += s, /_headers:3: Date is set by Vento on every response/);
    assert.match(err, /vento: reload refused, the running config is unchanged:/);
    assert.equal((await get()).headers.get("x-release"), "1", "the old rules stay in force");

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await stdout.cancel().catch(() => {});
    await stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--check counts the site's rules when it has some", async () => {
  const dir = await tempSite("/*\n  X-A: 1\n/b/*\n  X-B: 2\n");
  try {
    await Deno.writeTextFile(`${dir}/www/_redirects`, "/old /new 301\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "--check"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(
      new TextDecoder().decode(out.stdout),
      /^vento: \/\S+\/vento\.conf: OK \(_headers: 2 rules, _redirects: 1 rule\); would listen on /m,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vento-admin reload applies a changed _redirects; a broken one is REFUSED with PATH:LINE", async () => {
  const dir = await tempSite(null);
  await Deno.writeTextFile(
    `${dir}/vento.conf`,
    "PORT=0\nHOST=127.0.0.1\nACCESS_LOG=off\nADMIN_SOCKET=vento.sock\n",
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN],
    cwd: dir,
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const admin = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", ADMIN_MAIN, "--config", `${dir}/vento.conf`, ...args],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  };
  try {
    let out = "";
    while (!/listening on http:\/\/\S+:(\d+)\//.test(out)) {
      const { value, done } = await stdout.read();
      if (done) throw new Error(`server exited: ${out}`);
      out += value;
    }
    const port = Number(/listening on http:\/\/\S+:(\d+)\//.exec(out)![1]);
    const get = () => request(port, "GET /old HTTP/1.1\r\nHost: t\r\n\r\n");
    assert.equal((await get()).status, 404);

    await Deno.writeTextFile(`${dir}/www/_redirects`, "/old /new 308\n");
    const ok = await admin("--json", "reload");
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), { applied: ["_redirects"], needsRestart: [] });
    const moved = await get();
    assert.equal(moved.status, 308);
    assert.equal(moved.headers.get("location"), "/new");

    await Deno.writeTextFile(`${dir}/www/_redirects`, "/old /new 308\n/x\n");
    const refused = await admin("reload");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr + refused.stdout, /_redirects:2: expected "FROM TO \[STATUS\]", got "\/x"/);
    assert.equal((await get()).status, 308, "the old rules stay in force");

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
