import assert from "node:assert/strict";
import { ConfinedFs } from "../../src/static/confined_fs.ts";

async function withDirs(fn: (root: string, outside: string) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "vento_confined_" });
  try {
    await Deno.mkdir(`${base}/root`);
    await Deno.mkdir(`${base}/outside`);
    await fn(`${base}/root`, `${base}/outside`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

Deno.test("a file swapped for a symlink between check and open is refused", async () => {
  await withDirs(async (root, outside) => {
    await Deno.writeTextFile(`${root}/page.txt`, "inside");
    await Deno.writeTextFile(`${outside}/secret.txt`, "outside");
    const fs = await ConfinedFs.open(root);
    const found = await fs.find(`${root}/page.txt`);
    assert.ok(found !== null);
    // the race an attacker with write access inside the root would try
    await Deno.remove(found.path);
    await Deno.symlink(`${outside}/secret.txt`, found.path);
    assert.equal(await fs.openVerified(found), null);
  });
});

Deno.test("a directory swapped for a symlink between check and open is refused", async () => {
  await withDirs(async (root, outside) => {
    await Deno.mkdir(`${root}/d`);
    await Deno.writeTextFile(`${root}/d/f.txt`, "inside");
    await Deno.writeTextFile(`${outside}/f.txt`, "outside");
    const fs = await ConfinedFs.open(root);
    const found = await fs.find(`${root}/d/f.txt`);
    assert.ok(found !== null);
    await Deno.remove(`${root}/d`, { recursive: true });
    await Deno.symlink(outside, `${root}/d`);
    assert.equal(await fs.openVerified(found), null);
    assert.equal(await fs.find(`${root}/d/f.txt`), null, "a fresh check sees it leaves the root");
  });
});

Deno.test("an unchanged file opens and reads whole", async () => {
  await withDirs(async (root) => {
    await Deno.writeTextFile(`${root}/a.txt`, "abc");
    const fs = await ConfinedFs.open(root);
    const found = await fs.find(fs.pathOf("a.txt"));
    assert.ok(found !== null);
    const opened = await fs.openVerified(found);
    assert.ok(opened !== null);
    try {
      assert.equal(new TextDecoder().decode(await ConfinedFs.readAll(opened.file, opened.info.size)), "abc");
    } finally {
      opened.file.close();
    }
    assert.equal(await fs.findFile(fs.pathOf("")), null, "the root is not a regular file");
  });
});

Deno.test("symlink loops and over-long names are 'not found', never a server error", async () => {
  await withDirs(async (root) => {
    await Deno.symlink("loop", `${root}/loop`);
    await Deno.symlink("b", `${root}/a`);
    await Deno.symlink("a", `${root}/b`);
    const fs = await ConfinedFs.open(root);
    assert.equal(await fs.find(`${root}/loop`), null);
    assert.equal(await fs.find(`${root}/a/child`), null);
    assert.equal(await fs.find(`${root}/${"x".repeat(300)}`), null);
  });
});
