/**
 * `Accept-Encoding` negotiation (RFC 9110 §12.5.3) between the sidecars that exist (`.br`, `.gz`) and
 * the identity file.
 *
 * Pure; no Deno APIs; never throws on input. q-values are honoured, `q=0` forbids, `*` covers codings
 * not named, and `br` wins over `gzip` on equal q (smaller). The responder caches `parseAcceptEncoding`
 * per distinct header value, so the hot path only does `chooseEncoding`'s comparisons.
 */

/** The content codings we can serve from sidecars. */
export type Encoding = "br" | "gzip";

/** q-values (0..1) of what a client accepts; -1 where the header is silent about a coding. */
export interface EncodingPrefs {
  br: number;
  gzip: number;
  identity: number;
  star: number;
}

/** q-value: `0`, `1`, `0.xyz`, `1.000` (RFC 9110 §12.4.2); anything else is invalid. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/** Parses a header value (absent: nothing preferred, identity only). Invalid elements are skipped. */
export function parseAcceptEncoding(value: string | undefined): EncodingPrefs {
  const prefs: EncodingPrefs = { br: -1, gzip: -1, identity: -1, star: -1 };
  if (value === undefined) return prefs;
  for (const element of value.split(",")) {
    const parts = element.split(";");
    const coding = parts[0].trim().toLowerCase();
    if (coding === "") continue;
    let q = 1;
    let valid = true;
    for (let i = 1; i < parts.length; i++) {
      const param = parts[i].trim();
      const eq = param.indexOf("=");
      if (eq < 0) {
        valid = false;
        break;
      }
      if (param.slice(0, eq).trim().toLowerCase() !== "q") continue;
      const qs = param.slice(eq + 1).trim();
      if (!QVALUE.test(qs)) {
        valid = false;
        break;
      }
      q = Number(qs);
    }
    if (!valid) continue;
    // A coding named twice keeps its highest q: the lenient reading that never forbids by accident.
    if (coding === "br") prefs.br = Math.max(prefs.br, q);
    else if (coding === "gzip" || coding === "x-gzip") prefs.gzip = Math.max(prefs.gzip, q);
    else if (coding === "identity") prefs.identity = Math.max(prefs.identity, q);
    else if (coding === "*") prefs.star = Math.max(prefs.star, q);
  }
  return prefs;
}

/**
 * Picks the sidecar to serve, or null for the identity file. Only codings with a sidecar on disk
 * count; a client naming identity with a higher q than any coding gets identity.
 */
export function chooseEncoding(prefs: EncodingPrefs, hasBr: boolean, hasGzip: boolean): Encoding | null {
  const br = hasBr ? (prefs.br >= 0 ? prefs.br : prefs.star) : -1;
  const gzip = hasGzip ? (prefs.gzip >= 0 ? prefs.gzip : prefs.star) : -1;
  let best: Encoding | null = null;
  let bestQ = 0;
  if (br > 0) {
    best = "br";
    bestQ = br;
  }
  if (gzip > bestQ) {
    best = "gzip";
    bestQ = gzip;
  }
  if (best !== null && prefs.identity > bestQ) return null;
  return best;
}
