import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatListingDate,
  formatSize,
  type ListingEntry,
  parseListingQuery,
  renderListingHtml,
  renderListingJson,
  sortEntries,
} from "../../src/static/listing.ts";

const T = Date.UTC(2026, 11, 4, 13, 55, 36);
const ENTRIES: ListingEntry[] = [
  { name: "file10.txt", isDirectory: false, size: 10, mtimeMs: T - 3000 },
  { name: "file2.txt", isDirectory: false, size: 2_000_000, mtimeMs: T - 1000 },
  { name: "B.css", isDirectory: false, size: 500, mtimeMs: T },
  { name: "link", isDirectory: false, size: null, mtimeMs: T - 5000 },
  { name: "zeta", isDirectory: true, size: null, mtimeMs: T - 9000 },
  { name: "alpha", isDirectory: true, size: null, mtimeMs: T },
];

const names = (view: string) => sortEntries(ENTRIES, parseListingQuery(view)).map((e) => e.name);

Deno.test("parseListingQuery reads sort and order, with natural orders and safe defaults", () => {
  assert.deepEqual(parseListingQuery(""), { sort: "name", order: "asc" });
  assert.deepEqual(parseListingQuery("?sort=size"), { sort: "size", order: "desc" });
  assert.deepEqual(parseListingQuery("?sort=date"), { sort: "date", order: "desc" });
  assert.deepEqual(parseListingQuery("?sort=size&order=asc"), { sort: "size", order: "asc" });
  assert.deepEqual(parseListingQuery("sort=DATE;order=ASC"), { sort: "date", order: "asc" });
  assert.deepEqual(parseListingQuery("?sort=evil<x>&order=sideways"), { sort: "name", order: "asc" });
  assert.deepEqual(parseListingQuery("?sort=size&sort=date"), { sort: "size", order: "desc" });
  assert.deepEqual(parseListingQuery("?%zz&&=&sort"), { sort: "name", order: "asc" });
});

Deno.test("sortEntries puts folders first, then sorts by name (numeric, case-insensitive), size or date", () => {
  assert.deepEqual(names(""), ["alpha", "zeta", "B.css", "file2.txt", "file10.txt", "link"]);
  assert.deepEqual(names("?order=desc"), ["zeta", "alpha", "link", "file10.txt", "file2.txt", "B.css"]);
  assert.deepEqual(names("?sort=size"), ["alpha", "zeta", "file2.txt", "B.css", "file10.txt", "link"]);
  assert.deepEqual(names("?sort=size&order=asc"), [
    "alpha",
    "zeta",
    "link",
    "file10.txt",
    "B.css",
    "file2.txt",
  ]);
  assert.deepEqual(names("?sort=date"), ["alpha", "zeta", "B.css", "file2.txt", "file10.txt", "link"]);
  assert.deepEqual(names("?sort=date&order=asc"), [
    "zeta",
    "alpha",
    "link",
    "file10.txt",
    "file2.txt",
    "B.css",
  ]);
});

Deno.test("formatSize and formatListingDate read as people expect", () => {
  assert.equal(formatSize(0), "0 B");
  assert.equal(formatSize(1023), "1023 B");
  assert.equal(formatSize(1536), "1.5 KiB");
  assert.equal(formatSize(23 * 1024 + 900), "23 KiB");
  assert.equal(formatSize(2_000_000), "1.9 MiB");
  assert.equal(formatSize(5 * 1024 ** 4), "5.0 TiB");
  assert.equal(formatListingDate(T), "2026-12-04 13:55");
});

Deno.test("the HTML listing shows sizes, dates, sort links for each column and the current order", () => {
  const html = renderListingHtml("/files/", ENTRIES, false, parseListingQuery("?sort=size"));
  assert.match(
    html,
    /<th class="size" aria-sort="descending"><a href="\?sort=size&amp;order=asc">Size ↓<\/a>/,
  );
  assert.match(html, /<th class="name"><a href="\?sort=name&amp;order=asc">Name<\/a>/);
  assert.match(html, /<th class="date"><a href="\?sort=date&amp;order=desc">Modified \(UTC\)<\/a>/);
  assert.match(html, /<span title="2,000,000 bytes">1\.9 MiB<\/span>/);
  assert.match(html, /<time datetime="2026-12-04T13:55:36\.000Z">2026-12-04 13:55<\/time>/);
  assert.match(html, /<a href="\.\.\/">\.\.\/<\/a>/);
  assert.match(html, /2 folders, 4 files/);
  assert.match(html, /<style>/);
  assert.ok(html.indexOf("file2.txt") < html.indexOf("B.css"), "largest first");
  assert.ok(!renderListingHtml("/", ENTRIES, false).includes('href="../"'), "no parent at the root");
  assert.match(renderListingHtml("/", [], true), /cut short/);
});

Deno.test("the JSON listing has sizes and ISO dates, in the requested order", () => {
  const parsed = JSON.parse(
    renderListingJson("/a%20b/", ENTRIES, false, parseListingQuery("?sort=date&order=asc")),
  );
  assert.equal(parsed.path, "/a b/");
  assert.deepEqual(parsed.entries[0], {
    name: "zeta",
    type: "directory",
    size: null,
    modified: "2026-12-04T13:55:27.000Z",
  });
  assert.deepEqual(parsed.entries.at(-1), {
    name: "B.css",
    type: "file",
    size: 500,
    modified: "2026-12-04T13:55:36.000Z",
  });
});

Deno.test("hostile names never become markup in the HTML listing (property)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.string({ minLength: 1, unit: fc.constantFrom("<", ">", "&", '"', "'", "a", "/", " ", "é", "\n") }),
        {
          maxLength: 8,
        },
      ),
      fc.constantFrom("", "?sort=size", "?sort=date&order=asc", '?sort="><script>'),
      (list, query) => {
        const entries = list.map((name, i) => ({ name, isDirectory: i % 2 === 0, size: i, mtimeMs: T }));
        const html = renderListingHtml("/x/", entries, false, parseListingQuery(query));
        const body = html.slice(html.indexOf("<tbody>"), html.indexOf("</tbody>"));
        // Only the renderer's own tags appear: every `<` opens one of them.
        for (const m of body.matchAll(/<([^ >]*)/g)) {
          assert.ok(
            ["tbody", "tr", "/tr", "td", "/td", "a", "/a", "span", "/span", "time", "/time"].includes(m[1]),
            m[1],
          );
        }
        for (const m of body.matchAll(/href="([^"]*)"/g)) {
          assert.match(m[1], /^(?:[A-Za-z0-9%._~!*()\-/]|&#39;)*$/);
        }
        assert.ok(!html.includes("<script>"));
      },
    ),
  );
});

Deno.test("parseListingQuery never throws and always answers a valid view (property)", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (q) => {
      const v = parseListingQuery(q);
      assert.ok(["name", "size", "date"].includes(v.sort));
      assert.ok(["asc", "desc"].includes(v.order));
    }),
  );
});
