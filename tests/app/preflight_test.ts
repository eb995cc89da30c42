/**
 * Tests for the wording of start errors (`bindErrorMessage`): each names the setting, its value and the
 * fix; and for `accessLogProblem` on a file system it builds in a temp folder.
 */

import assert from "node:assert/strict";
import { accessLogProblem, bindErrorMessage } from "../../src/app/preflight.ts";

Deno.test("a bind error names the setting, the value and the fix", () => {
  assert.equal(
    bindErrorMessage(new Deno.errors.PermissionDenied("Permission denied (os error 13)"), "PORT", "::", 80),
    "PORT=80: binding below 1024 needs root or CAP_NET_BIND_SERVICE (systemd: " +
      "AmbientCapabilities=CAP_NET_BIND_SERVICE), or use a port from 1024 up behind a redirect",
  );
  assert.match(
    bindErrorMessage(new Deno.errors.AddrNotAvailable("os error 99"), "PORT", "192.0.2.1", 8080),
    /^HOST=192\.0\.2\.1: no network interface of this machine has that address: use ::/,
  );
  assert.match(
    bindErrorMessage(new Deno.errors.AddrInUse("os error 98"), "TLS_PORT", "::", 8443),
    /^TLS_PORT=8443: \[::\]:8443 is already in use .*choose another TLS_PORT$/,
  );
  assert.match(
    bindErrorMessage(new Error("odd"), "PORT", "::", 8080),
    /^PORT=8080 on HOST=::: cannot listen: odd$/,
  );
});

Deno.test("accessLogProblem opens the log for append, leaves no new file, names a missing folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vento-preflight-" });
  try {
    assert.equal(await accessLogProblem(`${dir}/a.log`), null);
    await assert.rejects(
      Deno.stat(`${dir}/a.log`),
      Deno.errors.NotFound,
      "a log the check created is removed",
    );
    await Deno.writeTextFile(`${dir}/a.log`, "kept\n");
    assert.equal(await accessLogProblem(`${dir}/a.log`), null);
    assert.equal(await Deno.readTextFile(`${dir}/a.log`), "kept\n", "append: nothing truncated");
    assert.match((await accessLogProblem(`${dir}/no/a.log`))!, /the folder .*\/no does not exist/);
    assert.match((await accessLogProblem(dir))!, /is a folder: name a file inside it/);
    assert.equal(await accessLogProblem("-"), null);
    assert.equal(await accessLogProblem("off"), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
