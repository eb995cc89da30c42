/**
 * docs/app.md as written: its `app.ts` and `vento.conf` go into a temp site folder, Vento starts on them
 * (on a free port instead of 8080), and every `$ curl …` line of its console block runs and must print
 * exactly the lines shown under it.
 */

import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/config.ts";
import { startVento } from "../../src/app/vento.ts";

const REPO_ROOT = decodeURIComponent(new URL("../..", import.meta.url).pathname).replace(/\/$/, "");

/** The fenced blocks of `lang` in `markdown`, in order. */
function blocks(markdown: string, lang: string): string[] {
  const out: string[] = [];
  const re = new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g");
  for (const m of markdown.matchAll(re)) out.push(m[1]);
  return out;
}

Deno.test("docs/app.md: the example app answers the documented commands with the documented output", async () => {
  const doc = await Deno.readTextFile(`${REPO_ROOT}/docs/app.md`);
  const app = blocks(doc, "ts").find((b) => b.startsWith("// app.ts"));
  const conf = blocks(doc, "ini")[0];
  const session = blocks(doc, "console")[0];
  assert.ok(app !== undefined && conf !== undefined && session !== undefined);
  const dir = await Deno.makeTempDir({ prefix: "vento-app-doc-" });
  await Deno.mkdir(`${dir}/site/www`, { recursive: true });
  await Deno.writeTextFile(`${dir}/site/www/index.html`, "<!doctype html><p>hi</p>\n");
  await Deno.writeTextFile(`${dir}/site/app.ts`, app);
  await Deno.writeTextFile(`${dir}/site/vento.conf`, conf);
  const loaded = await loadConfig(`${dir}/site/vento.conf`, { portOverride: 0 });
  if (!loaded.ok) return assert.fail(loaded.messages.join("\n"));
  const errors: string[] = [];
  const vento = await startVento(loaded.config, { configPath: loaded.path, logError: (m) => errors.push(m) });
  try {
    const port = vento.addr.port;
    const steps: { command: string; expected: string[] }[] = [];
    for (const line of session.trimEnd().split("\n")) {
      if (line.startsWith("$ ")) steps.push({ command: line.slice(2), expected: [] });
      else steps.at(-1)!.expected.push(line);
    }
    assert.ok(steps.length >= 4);
    for (const step of steps) {
      const command = step.command.replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`);
      const out = await new Deno.Command("sh", { args: ["-c", command], stdout: "piped", stderr: "piped" })
        .output();
      assert.equal(out.code, 0, `${step.command}: ${new TextDecoder().decode(out.stderr)}`);
      const printed = new TextDecoder().decode(out.stdout).replace(/\n$/, "").split("\n");
      assert.deepEqual(printed, step.expected, step.command);
    }
  } finally {
    await vento.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(errors, []);
});
