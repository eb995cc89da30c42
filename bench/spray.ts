/**
 * Address-spray benchmark (issue 4): many connection attempts from many distinct loopback source addresses
 * (127.1.0.0 upwards), to show the guard's client table stays at its capacity and the server's memory stays
 * bounded while an attacker churns through keys. Loopback only; bounded in count and time; stops by itself.
 *
 *   deno task bench:spray [--attempts 1000000] [--addresses 100000] [--concurrency 256] [--max-sec 600]
 *
 * Starts Vento (`main.ts --config <temp>`) with the default GUARD_TABLE_CAPACITY (100,000) unless
 * `--capacity` says otherwise, connects from address i mod N, sends one GET, reads the answer (or the
 * refusal), closes; samples the server's RSS every second; reads the table size over the admin socket.
 */

import net from "node:net";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../", import.meta.url));

const { values } = parseArgs({
  args: Deno.args,
  options: {
    attempts: { type: "string", default: "1000000" },
    addresses: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "256" },
    capacity: { type: "string", default: "100000" },
    "max-sec": { type: "string", default: "600" },
  },
});
const attempts = Number(values.attempts);
const addresses = Number(values.addresses);
const concurrency = Number(values.concurrency);
const capacity = Number(values.capacity);
const maxMs = Number(values["max-sec"]) * 1000;
if (![attempts, addresses, concurrency, capacity, maxMs].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("bench:spray: every option takes a positive whole number");
  Deno.exit(2);
}
if (addresses > 16_000_000) {
  console.error("bench:spray: at most 16,000,000 addresses fit in 127.1.0.0 upwards");
  Deno.exit(2);
}

/** The i-th source address: 127.1.0.0 + i (127.0.0.0/16 is left to other tests). */
function sourceAddress(i: number): string {
  const n = 0x010000 + i;
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

const dir = await Deno.makeTempDir({ prefix: "vento-spray-" });
await Deno.mkdir(`${dir}/www`);
await Deno.writeTextFile(`${dir}/www/index.html`, "<h1>spray</h1>\n");
const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = probe.addr.port;
probe.close();
await Deno.writeTextFile(
  `${dir}/vento.conf`,
  [
    `PORT=${port}`,
    "HOST=127.0.0.1",
    "DOCUMENT_ROOT=www",
    "ACCESS_LOG=off",
    "ADMIN_SOCKET=vento.sock",
    `GUARD_TABLE_CAPACITY=${capacity}`,
    // Loopback is allowlisted by default (a same-host proxy): the sprayed addresses are loopback ones.
    "ALLOWLIST=",
    "",
  ].join("\n"),
);
const server = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", `${REPO}main.ts`, "--config", `${dir}/vento.conf`],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
for (let seen = ""; !seen.includes("listening on");) {
  const { value, done } = await reader.read();
  if (done) throw new Error("vento exited before listening");
  seen += value;
}
(async () => {
  while (!(await reader.read()).done) { /* drain */ }
})();

function rssMiB(): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${server.pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

async function tableSize(): Promise<number> {
  const conn = await Deno.connect({ transport: "unix", path: `${dir}/vento.sock` });
  try {
    await conn.write(new TextEncoder().encode('{"v":1,"id":1,"op":"stats"}\n'));
    let text = "";
    const buf = new Uint8Array(65536);
    while (!text.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const reply = JSON.parse(text.split("\n")[0]);
    return reply.data.snapshot.guardTableSize as number;
  } finally {
    conn.close();
  }
}

const REQUEST = "GET / HTTP/1.1\r\nHost: spray\r\n\r\n";
const outcome = { served: 0, refused: 0, errors: 0 };

/** One attempt: connect from `local`, ask once, wait for the answer or the close, go. */
function attempt(local: string): Promise<void> {
  return new Promise((resolve) => {
    let got = "";
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: local });
    const done = (kind: keyof typeof outcome) => {
      outcome[kind]++;
      sock.destroy();
      resolve();
    };
    sock.setTimeout(5000, () => done("errors"));
    sock.on("connect", () => sock.write(REQUEST));
    sock.on("data", (d: Uint8Array) => {
      got += new TextDecoder().decode(d);
      if (got.includes("\r\n\r\n")) done(got.startsWith("HTTP/1.1 200") ? "served" : "refused");
    });
    sock.on("end", () => done(got === "" ? "refused" : "refused"));
    sock.on("error", () => done("errors"));
  });
}

const started = performance.now();
let next = 0;
let peakRss = rssMiB();
const startRss = peakRss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, rssMiB());
  const done = outcome.served + outcome.refused + outcome.errors;
  const sec = (performance.now() - started) / 1000;
  console.error(
    `${sec.toFixed(0)} s: ${done} attempts (${Math.round(done / sec)}/s), RSS ${rssMiB().toFixed(1)} MiB`,
  );
}, 5000);
async function lane(): Promise<void> {
  while (next < attempts && performance.now() - started < maxMs) {
    const i = next++;
    await attempt(sourceAddress(i % addresses));
  }
}
await Promise.all(Array.from({ length: concurrency }, lane));
clearInterval(sampler);
peakRss = Math.max(peakRss, rssMiB());
const seconds = (performance.now() - started) / 1000;
const size = await tableSize();
const endRss = rssMiB();
server.kill("SIGTERM");
await server.status;
await Deno.remove(dir, { recursive: true });

const total = outcome.served + outcome.refused + outcome.errors;
console.log(
  [
    `address spray: ${total} connection attempts from ${
      Math.min(addresses, total)
    } distinct source addresses`,
    `in ${seconds.toFixed(0)} s (${Math.round(total / seconds)}/s), ${concurrency} at a time`,
    `answers: ${outcome.served} × 200, ${outcome.refused} refused/limited, ${outcome.errors} errors`,
    `guard table: ${size} keys held at the end (capacity ${capacity})`,
    `server RSS: ${startRss.toFixed(1)} MiB at start, peak ${peakRss.toFixed(1)} MiB, ${
      endRss.toFixed(1)
    } MiB at the end`,
  ].join("\n"),
);
