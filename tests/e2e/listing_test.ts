/**
 * End-to-end tests of the directory listing against the real server (raw TCP and curl): off by default,
 * sizes and dates, `?sort=name|size|date&order=asc|desc` in HTML and JSON, hostile file names escaped,
 * dotfiles and symbolic links' targets kept out of it.
 */

import assert from "node:assert/strict";
import { request } from "../_helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../_helpers/server.ts";

const H = "Host: t\r\n";
const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 20, 12, 0, 0);

/** name → [size, age in days] */
const FILES: Record<string, [number, number]> = {
  "small.txt": [10, 1],
  "medium.bin": [5_000, 3],
  "large.bin": [300_000, 2],
  'evil<img src=x onerror=alert(1)>".txt': [1, 5],
};

async function withListing(fn: (s: TestServer) => Promise<void>, directoryListing = true): Promise<void> {
  const files: Record<string, Uint8Array | string> = { "index.html": "home\n", "pub/.secret": "hidden" };
  for (const [name, [size]] of Object.entries(FILES)) files[`pub/${name}`] = new Uint8Array(size);
  files["pub/sub/inner.txt"] = "inner";
  const s = await startTestServer({ directoryListing }, files);
  try {
    for (const [name, [, days]] of Object.entries(FILES)) {
      const t = new Date(NOW - days * DAY);
      await Deno.utime(`${s.root}/pub/${name}`, t, t);
    }
    const outside = await Deno.makeTempFile();
    await Deno.writeFile(outside, new Uint8Array(777_777));
    await Deno.symlink(outside, `${s.root}/pub/link-out`);
    try {
      await fn(s);
    } finally {
      await Deno.remove(outside);
    }
    assert.deepEqual(s.errors, []);
  } finally {
    await s.stop();
  }
}

function listed(html: string): string[] {
  return [...html.matchAll(/<td class="name"><a href="([^"]*)">/g)].map((m) => m[1]);
}

Deno.test("the listing is off by default", () =>
  withListing(async ({ port }) => {
    const r = await request(port, `GET /pub/ HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.status, 404);
    assert.ok(!r.text.includes("small.txt"));
  }, false));

Deno.test("the listing sorts by name, size and date in both orders, folders first", () =>
  withListing(async ({ port }) => {
    const evil = "evil%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%22.txt";
    const cases: Array<[string, string[]]> = [
      ["", ["../", "sub/", evil, "large.bin", "link-out", "medium.bin", "small.txt"]],
      ["?sort=name&order=desc", ["../", "sub/", "small.txt", "medium.bin", "link-out", "large.bin", evil]],
      ["?sort=size", ["../", "sub/", "large.bin", "medium.bin", "small.txt", evil, "link-out"]],
      ["?sort=size&order=asc", ["../", "sub/", "link-out", evil, "small.txt", "medium.bin", "large.bin"]],
      ["?sort=date&order=asc", ["../", "sub/", evil, "medium.bin", "large.bin", "small.txt", "link-out"]],
    ];
    for (const [query, want] of cases) {
      const r = await request(port, `GET /pub/${query} HTTP/1.1\r\n${H}\r\n`);
      assert.equal(r.status, 200, query);
      assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
      assert.deepEqual(listed(r.text), want, query);
    }
    const r = await request(port, `GET /pub/?sort=size HTTP/1.1\r\n${H}\r\n`);
    assert.match(r.text, /<span title="300,000 bytes">292 KiB<\/span>/);
    assert.match(r.text, /<time datetime="2026-11-18T12:00:00\.000Z">2026-11-18 12:00<\/time>/);
    assert.ok(!r.text.includes("<img"), "a hostile name is text, not markup");
    assert.match(r.text, /evil&lt;img src=x onerror=alert\(1\)&gt;&quot;\.txt/);
    assert.ok(!r.text.includes(".secret"), "dotfiles are not listed");
    assert.ok(!r.text.includes("777,777") && !r.text.includes("759 KiB"), "a link's target is not statted");
  }));

Deno.test("the JSON listing has sizes and dates in the requested order (curl)", () =>
  withListing(async ({ port }) => {
    const out = await new Deno.Command("curl", {
      args: ["-sS", "-H", "Accept: application/json", `http://127.0.0.1:${port}/pub/?sort=size&order=desc`],
      stdout: "piped",
    }).output();
    assert.ok(out.success);
    const parsed = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(parsed.path, "/pub/");
    assert.deepEqual(parsed.entries.slice(0, 3), [
      { name: "sub", type: "directory", size: null, modified: parsed.entries[0].modified },
      { name: "large.bin", type: "file", size: 300_000, modified: "2026-11-18T12:00:00.000Z" },
      { name: "medium.bin", type: "file", size: 5000, modified: "2026-11-17T12:00:00.000Z" },
    ]);
    assert.equal(parsed.entries.find((e: { name: string }) => e.name === "link-out").size, null);
  }));
