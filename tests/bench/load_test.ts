/** The load bench's h2load reader: the fairness figures come out of h2load's own text. */

import assert from "node:assert/strict";
import { parseH2load } from "../../bench/load.ts";

const SAMPLE = `starting benchmark...
finished in 6.01s, 39349.25 req/s, 49.53MB/s
requests: 157397 total, 157397 started, 157397 done, 157390 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 157390 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 198.12MB (207742500) total, 31.25MB (32770000) headers (space savings 0.00%), 153.71MB (161177600) data
                     min         max         mean         sd        +/- sd
time for request:     1.93ms       1.79s     11.60ms     85.35ms    99.06%
time for connect:      152us     28.57ms      9.02ms      8.38ms    60.40%
time to 1st byte:     3.02ms     77.44ms     34.95ms     19.52ms    57.80%
req/s           :       8.75      265.34       78.59       58.39    64.60%
`;

Deno.test("parseH2load reads total rate, each client's min and mean rate, and the slowest request", () => {
  const r = parseH2load(SAMPLE);
  assert.ok(r !== null);
  assert.equal(r.rps, 39349.25);
  assert.equal(r.clientMinRps, 8.75);
  assert.equal(r.clientMeanRps, 78.59);
  assert.equal(r.maxRequestMs, 1790);
  assert.equal(r.meanRequestMs, 11.6);
  assert.equal(r.requests, 157390);
  assert.equal(r.errors, 9, "7 failed plus 2 non-2xx answers");
});

Deno.test("parseH2load gives null for output without results (h2load failed to connect)", () => {
  assert.equal(parseH2load("starting benchmark...\nconnect to 127.0.0.1 port 1 failed\n"), null);
});
