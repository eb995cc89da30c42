/**
 * Keyboard handling for `top`: decoding raw terminal input into key names, and what each key does to
 * the dashboard state (selection, sort, focus, filter, help) or which server action it asks for. A ban
 * (`b`) or kick (`x`) asks first and acts only on `y`.
 *
 * Pure: bytes and state in, state changes and an action out; the `top` loop performs the action.
 */

import { isIpOrCidr } from "../src/admin/protocol.ts";
import { layout, type Size, SORT_KEYS, type TopState, visibleBans, visibleConns } from "./render.ts";

/** Ban length used by the `b` key. */
export const TOP_BAN_MS = 10 * 60_000;
/** Longest filter text (printable ASCII only). */
const MAX_FILTER_CHARS = 60;

export type Key =
  | "up"
  | "down"
  | "left"
  | "right"
  | "pgup"
  | "pgdn"
  | "home"
  | "end"
  | "enter"
  | "esc"
  | "tab"
  | "backspace"
  | "ctrl-c"
  | { char: string };

const SEQUENCES: [string, Key][] = [
  ["\x1b[A", "up"],
  ["\x1b[B", "down"],
  ["\x1b[C", "right"],
  ["\x1b[D", "left"],
  ["\x1bOA", "up"],
  ["\x1bOB", "down"],
  ["\x1bOC", "right"],
  ["\x1bOD", "left"],
  ["\x1b[5~", "pgup"],
  ["\x1b[6~", "pgdn"],
  ["\x1b[H", "home"],
  ["\x1b[F", "end"],
  ["\x1bOH", "home"],
  ["\x1bOF", "end"],
  ["\x1b[1~", "home"],
  ["\x1b[4~", "end"],
];

/** Decodes one read of terminal input into keys. Unknown escape sequences are skipped whole. */
export function parseKeys(input: string): Key[] {
  const keys: Key[] = [];
  let i = 0;
  while (i < input.length) {
    const ch = input[i];
    if (ch === "\x1b") {
      const seq = SEQUENCES.find(([s]) => input.startsWith(s, i));
      if (seq !== undefined) {
        keys.push(seq[1]);
        i += seq[0].length;
        continue;
      }
      // deno-lint-ignore no-control-regex
      const csi = /^\x1b[[O][0-9;]*[A-Za-z~]/.exec(input.slice(i, i + 16));
      if (csi !== null) {
        i += csi[0].length; // some other sequence (F-keys, focus events): ignore it
        continue;
      }
      keys.push("esc");
      i++;
      continue;
    }
    if (ch === "\r" || ch === "\n") keys.push("enter");
    else if (ch === "\t") keys.push("tab");
    else if (ch === "\x7f" || ch === "\x08") keys.push("backspace");
    else if (ch === "\x03") keys.push("ctrl-c");
    else if (ch >= " " && ch <= "~") keys.push({ char: ch });
    i++;
  }
  return keys;
}

/** What the `top` loop must do after a key. */
export type Action =
  | { kind: "quit" }
  | { kind: "ban"; target: string; ms: number }
  | { kind: "unban"; target: string }
  | { kind: "kick"; id: number };

function moveSelection<T>(list: T[], current: number, delta: number): T | undefined {
  if (list.length === 0) return undefined;
  const from = current < 0 ? (delta > 0 ? -1 : list.length) : current;
  return list[Math.max(0, Math.min(list.length - 1, from + delta))];
}

const MOVES: Partial<Record<Key & string, (page: number) => number>> = {
  up: () => -1,
  down: () => 1,
  pgup: (page) => -page,
  pgdn: (page) => page,
  home: () => -Infinity,
  end: () => Infinity,
};

/** The address a ban from the connections table targets: the guard's client key when it is an IP/CIDR. */
export function banTargetOf(c: { key: string; remote: string }): string {
  return isIpOrCidr(c.key) ? c.key : c.remote;
}

/** Applies one key to `state` (mutated in place); returns the server action it asks for, if any. */
export function handleKey(state: TopState, key: Key, size: Size): Action | null {
  if (key === "ctrl-c") return { kind: "quit" };
  if (state.confirm !== null) {
    // A ban or a kick acts on a live client: only `y` confirms, any other key cancels.
    const asked = state.confirm;
    state.confirm = null;
    if (typeof key === "object" && (key.char === "y" || key.char === "Y")) {
      state.message = "";
      return asked;
    }
    state.message = asked.kind === "ban" ? "ban cancelled" : "kick cancelled";
    return null;
  }
  if (state.filterEditing) {
    if (key === "enter") state.filterEditing = false;
    else if (key === "esc") {
      state.filterEditing = false;
      state.filter = "";
    } else if (key === "backspace") state.filter = state.filter.slice(0, -1);
    else if (typeof key === "object" && state.filter.length < MAX_FILTER_CHARS) state.filter += key.char;
    return null;
  }
  if (state.help) {
    // Any key closes the help, and only that: a `q` meant for the help must not quit.
    state.help = false;
    return null;
  }
  const page = Math.max(1, state.focus === "conns" ? layout(size).connRows : layout(size).bottomRows);
  const ch = typeof key === "object" ? key.char : "";
  const step = ch === "k" ? -1 : ch === "j" ? 1 : typeof key === "string" ? (MOVES[key]?.(page) ?? 0) : 0;
  if (step !== 0) {
    const d = Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, step));
    if (state.focus === "conns") {
      const list = visibleConns(state);
      const next = moveSelection(list, list.findIndex((c) => c.id === state.selectedConnId), d);
      state.selectedConnId = next?.id ?? null;
    } else {
      const list = visibleBans(state);
      const next = moveSelection(list, list.findIndex((b) => b.key === state.selectedBanKey), d);
      state.selectedBanKey = next?.key ?? null;
    }
    return null;
  }
  if (key === "tab") {
    state.focus = state.focus === "conns" ? "bans" : "conns";
    return null;
  }
  if (key === "esc") {
    state.message = "";
    return null;
  }
  switch (ch) {
    case "q":
      return { kind: "quit" };
    case "?":
      state.help = true;
      return null;
    case "s":
      state.sort = SORT_KEYS[(SORT_KEYS.indexOf(state.sort) + 1) % SORT_KEYS.length];
      return null;
    case "/":
      state.filterEditing = true;
      return null;
    case "b": {
      const c = state.conns.find((x) => x.id === state.selectedConnId);
      if (state.focus !== "conns" || c === undefined) {
        state.message = "select a connection first (↑ ↓) to ban its client";
        return null;
      }
      const target = banTargetOf(c);
      state.confirm = { kind: "ban", target, ms: TOP_BAN_MS };
      state.message = `ban ${target} for ${TOP_BAN_MS / 60_000}m and close its connections? y to confirm, ` +
        "any other key cancels";
      return null;
    }
    case "x": {
      const c = state.conns.find((x) => x.id === state.selectedConnId);
      if (state.focus !== "conns" || c === undefined) {
        state.message = "select a connection first (↑ ↓) to kick it";
        return null;
      }
      state.confirm = { kind: "kick", id: c.id };
      state.message = `close connection ${c.id} (${c.remote})? y to confirm, any other key cancels`;
      return null;
    }
    case "u": {
      const b = state.bans.find((x) => x.key === state.selectedBanKey);
      if (state.focus !== "bans" || b === undefined) {
        state.message = "Tab to the bans panel and select a ban to lift it";
        return null;
      }
      return { kind: "unban", target: b.key };
    }
  }
  return null;
}

/** Keeps selections pointing at something that still exists after new data arrives. */
export function reconcileSelection(state: TopState): void {
  const conns = visibleConns(state);
  if (!conns.some((c) => c.id === state.selectedConnId)) state.selectedConnId = conns[0]?.id ?? null;
  const bans = visibleBans(state);
  if (!bans.some((b) => b.key === state.selectedBanKey)) state.selectedBanKey = bans[0]?.key ?? null;
}
