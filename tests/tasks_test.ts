/**
 * Every file and folder a `deno task` names in deno.json exists, so a move cannot leave a task pointing
 * nowhere (a `deno check` of a folder that moved fails only when the task runs).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

Deno.test("every repository path a deno task names exists", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<
    string,
    string | { command?: string }
  >;
  let checked = 0;
  for (const [name, task] of Object.entries(tasks)) {
    const command = typeof task === "string" ? task : task.command ?? "";
    // Every argument that names a module or a folder; outputs (dist/…) are made by the task itself.
    for (const word of command.split(/[\s;&|()]+/)) {
      if (!/^[\w.][\w.\/-]*(\.ts|\/)$/.test(word) || word.startsWith("dist/")) continue;
      const exists = await Deno.stat(`${ROOT}${word}`).then(() => true, () => false);
      assert.ok(exists, `task ${name} names ${word}, which does not exist`);
      checked++;
    }
  }
  assert.ok(checked > 10, `the scan found the tasks' paths (${checked})`);
});
