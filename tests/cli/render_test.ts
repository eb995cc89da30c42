/**
 * The `top` dashboard: the pure renderer (snapshots at several sizes, exact frame geometry), the key
 * handler, and one end-to-end run of `vento-admin top` inside tmux against a fake-backend server.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { AdminServer } from "../../src/admin/server.ts";
import { systemClock } from "../../src/core/clock.ts";
import { Stats } from "../../src/stats/stats.ts";
import { initialState, render, type TopState, visibleConns, visibleWidth } from "../../cli/render.ts";
import { handleKey, type Key, parseKeys } from "../../cli/keys.ts";
import { applySnapshot } from "../../cli/top.ts";
import { FakeBackend, fakeClients, fakeConns, FIXED_WALL_MS, tempSocket } from "../admin/fake_backend.ts";

const SIZES = [
  { cols: 80, rows: 24 },
  { cols: 120, rows: 40 },
  { cols: 40, rows: 12 },
];

/** A dashboard state from fixed data at a fixed time, after `samples` snapshots one second apart. */
function fixedState(samples = 30): TopState {
  const state = initialState("/srv/vento.sock", FIXED_WALL_MS);
  state.connected = true;
  state.problem = "";
  state.hello = {
    version: "0.1.0",
    protocol: 1,
    pid: 4242,
    uptimeMs: 3_723_000,
    listen: ["[::]:8080"],
    configPath: "",
  };
  state.helloAtWallMs = FIXED_WALL_MS;
  const s = new Stats();
  s.open = 3;
  s.idle = 1;
  s.responses = [0, 0, 950, 20, 25, 5];
  s.status429 = 12;
  s.bansActive = 1;
  for (let i = 0; i < samples; i++) {
    // A load that ramps up and down so the sparklines use every block height.
    const load = Math.round(100 * Math.abs(Math.sin(i / 5)));
    s.requests += load;
    s.bytesOut += load * 40_000;
    s.bytesIn += load * 300;
    applySnapshot(state, {
      stats: { snapshot: s.snapshot(i * 1000, FIXED_WALL_MS), rates: { ...state.rates }, maxConns: 4096 },
      conns: fakeConns(),
      bans: [{
        key: "192.0.2.66",
        reason: "flood",
        expiresAtWallMs: FIXED_WALL_MS + 540_000,
        remainingMs: 0,
        offences: 2,
      }],
      clients: fakeClients(),
    }, FIXED_WALL_MS);
  }
  return state;
}

function assertGeometry(lines: string[], size: { cols: number; rows: number }): void {
  assert.equal(lines.length, size.rows);
  for (const l of lines) {
    assert.ok(visibleWidth(l) <= size.cols, `wider than ${size.cols}: ${JSON.stringify(l)}`);
  }
}

for (const size of SIZES) {
  Deno.test(`render draws the dashboard at ${size.cols}x${size.rows}`, async (t) => {
    const lines = render(fixedState(), size, { color: false });
    assertGeometry(lines, size);
    await t.assertSnapshot(lines.join("\n"));
  });
}

Deno.test("render shows the help overlay and the disconnected state", async (t) => {
  const state = fixedState();
  state.help = true;
  const help = render(state, { cols: 80, rows: 24 }, { color: false });
  assert.ok(help.some((l) => l.includes("ban the selected connection's client")));
  state.help = false;
  state.connected = false;
  state.problem = "no server at /srv/vento.sock (connection refused); retrying every 1s";
  const gone = render(state, { cols: 80, rows: 24 }, { color: false });
  assert.match(gone[2], /^! no server at \/srv\/vento\.sock/);
  await t.assertSnapshot(gone.join("\n"));
});

Deno.test("render keeps exact geometry at every size from 1x1 to 200x60, in colour too", () => {
  const state = fixedState();
  state.message = "banned 203.0.113.9 for 10m00s";
  for (let cols = 1; cols <= 200; cols += 7) {
    for (let rows = 1; rows <= 60; rows += 3) {
      assertGeometry(render(state, { cols, rows }), { cols, rows });
      assertGeometry(render(state, { cols, rows }, { color: false }), { cols, rows });
    }
  }
  assert.deepEqual(render(state, { cols: 80, rows: 0 }), []);
});

Deno.test("render highlights the selected row of the focused panel only", () => {
  const state = fixedState();
  state.selectedConnId = 2;
  const lines = render(state, { cols: 100, rows: 30 });
  const selected = lines.filter((l) => l.startsWith("\x1b[7m"));
  assert.equal(selected.length, 2, "the selected connection and the footer");
  assert.match(selected[0], /198\.51\.100\.7:40000/);
  state.focus = "bans";
  const bans = render(state, { cols: 100, rows: 30 }).filter((l) => l.includes("\x1b[7m>192.0.2.66"));
  assert.equal(bans.length, 1);
});

Deno.test("render sparkline scales to the window maximum", () => {
  const state = fixedState(0);
  state.reqHistory = [0, 1, 2, 4, 8];
  state.connected = true;
  const line = render(state, { cols: 60, rows: 24 }, { color: false })[3].trimEnd();
  assert.match(line, /^req\/s {3}.* ▂▃▅█ max 8\.0$/);
});

Deno.test("parseKeys decodes arrows, paging, control keys and text", () => {
  const keys = parseKeys("\x1b[A\x1b[Bjk\x1b[5~\x1b[6~\t\r\x7f\x03\x1b/x\x1b[15~q");
  assert.deepEqual(keys, [
    "up",
    "down",
    { char: "j" },
    { char: "k" },
    "pgup",
    "pgdn",
    "tab",
    "enter",
    "backspace",
    "ctrl-c",
    "esc",
    { char: "/" },
    { char: "x" },
    { char: "q" },
  ] as Key[]);
});

Deno.test("keys move the selection, sort, filter and ask for actions", () => {
  const size = { cols: 100, rows: 30 };
  const state = fixedState();
  // Sorted by age: 1 (65s), 2 (3s), 7 (0.1s); the first is selected after data arrives.
  assert.equal(state.selectedConnId, 1);
  handleKey(state, "down", size);
  assert.equal(state.selectedConnId, 2);
  handleKey(state, { char: "j" }, size);
  handleKey(state, { char: "j" }, size);
  assert.equal(state.selectedConnId, 7, "stays on the last row");
  // A ban and a kick ask first: y confirms, any other key cancels.
  assert.equal(handleKey(state, { char: "b" }, size), null);
  assert.match(state.message, /^ban 2001:db8::\/64 for 10m and close its connections\? y to confirm/);
  assert.deepEqual(handleKey(state, { char: "y" }, size), {
    kind: "ban",
    target: "2001:db8::/64",
    ms: 600_000,
  });
  assert.equal(handleKey(state, { char: "b" }, size), null);
  assert.equal(handleKey(state, { char: "b" }, size), null, "a second b cancels, it does not confirm");
  assert.equal(state.message, "ban cancelled");
  assert.equal(handleKey(state, { char: "x" }, size), null);
  assert.match(state.message, /^close connection 7 /);
  assert.equal(handleKey(state, "enter", size), null);
  assert.equal(state.message, "kick cancelled");
  assert.equal(handleKey(state, { char: "x" }, size), null);
  assert.deepEqual(handleKey(state, { char: "Y" }, size), { kind: "kick", id: 7 });
  assert.equal(handleKey(state, { char: "u" }, size), null, "u needs the bans panel");
  handleKey(state, "tab", size);
  handleKey(state, "down", size);
  assert.deepEqual(handleKey(state, { char: "u" }, size), { kind: "unban", target: "192.0.2.66" });
  handleKey(state, "tab", size);
  handleKey(state, { char: "s" }, size);
  assert.equal(state.sort, "id");
  for (const k of parseKeys("/198\r")) handleKey(state, k, size);
  assert.deepEqual(visibleConns(state).map((c) => c.id), [2]);
  for (const k of parseKeys("/\x1b")) handleKey(state, k, size);
  assert.equal(state.filter, "");
  handleKey(state, { char: "?" }, size);
  assert.equal(handleKey(state, { char: "q" }, size), null, "q closes the help first");
  assert.deepEqual(handleKey(state, { char: "q" }, size), { kind: "quit" });
  assert.deepEqual(handleKey(state, "ctrl-c", size), { kind: "quit" });
});

// --- tmux end to end ---------------------------------------------------------------------------------

async function hasTmux(): Promise<boolean> {
  try {
    return (await new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

const TMUX = await hasTmux();

async function tmux(socket: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("tmux", {
    args: ["-S", socket, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return new TextDecoder().decode(out.stdout);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name: "top in tmux shows connections, bans with b, and q restores the terminal",
  ignore: !TMUX,
  // ignore reason when skipped: tmux is not installed on this machine.
  fn: async () => {
    const { dir, path } = await tempSocket();
    const backend = new FakeBackend(systemClock, () => Date.now());
    const server = await AdminServer.start(path, backend, systemClock);
    const tsock = `${dir}/tmux.sock`;
    const root = fileURLToPath(new URL("../../", import.meta.url));
    try {
      await tmux(tsock, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", "-c", root, "sh");
      await tmux(tsock, "send-keys", `PS1='READY$ ' exec sh`, "Enter");
      const cmd = `${Deno.execPath()} run -A --quiet cli/main.ts --socket ${path} top --interval 200ms`;
      await tmux(tsock, "send-keys", cmd, "Enter");
      const screen = () => tmux(tsock, "capture-pane", "-p");
      await waitFor("the connections table", async () => (await screen()).includes("203.0.113.9:51234"));
      assert.equal((await tmux(tsock, "display", "-p", "#{alternate_on}")).trim(), "1");
      // The oldest connection is selected first; b asks to ban its client, y confirms.
      await tmux(tsock, "send-keys", "b");
      await waitFor("the question", async () => (await screen()).includes("ban 203.0.113.9 for 10m"));
      assert.equal(backend.recorded.bans.length, 0, "nothing is banned before y");
      await tmux(tsock, "send-keys", "y");
      await waitFor(
        "the ban to reach the backend",
        () => Promise.resolve(backend.recorded.bans.length === 1),
      );
      assert.deepEqual(backend.recorded.bans[0], { target: "203.0.113.9", ms: 600_000, reason: "top" });
      await waitFor("the ban message", async () => (await screen()).includes("banned 203.0.113.9"));
      await tmux(tsock, "send-keys", "q");
      await waitFor(
        "the shell prompt",
        async () => (await tmux(tsock, "display", "-p", "#{alternate_on}")).trim() === "0",
      );
      await waitFor("the shell to be back", async () => (await screen()).includes("READY$"));
      assert.ok(!(await screen()).includes("Connections"), "the dashboard is gone from the main screen");
    } finally {
      await tmux(tsock, "kill-server");
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
