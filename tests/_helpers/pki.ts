/**
 * Throwaway certificates for the TLS tests (HTTPS in tests/e2e/tls_test.ts, `rediss://` in the Redis
 * tests): a CA, and a leaf it signed for localhost / 127.0.0.1, made by `openssl` in a temp folder.
 *
 * rustls (Deno's TLS) refuses a CA certificate used as a server's own certificate, so this makes what a
 * real deployment has: a CA, and a leaf with CA:FALSE, serverAuth and the SANs clients check.
 */

/** Whether `openssl` can be run here; tests that need it are skipped (with the reason) otherwise. */
export const OPENSSL_AVAILABLE: boolean = await (async () => {
  try {
    const r = await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
})();

/** A CA, and a leaf it signed for localhost and 127.0.0.1. */
export interface TestPki {
  dir: string;
  caFile: string;
  caPem: string;
  certFile: string;
  keyFile: string;
  /** Removes the folder. */
  remove(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Makes the CA and the leaf in a new temp folder named with `prefix`. */
export async function makeTestPki(prefix = "vento-tls-"): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=Vento test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ], dir);
    await openssl(["req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"], dir);
    await Deno.writeTextFile(
      `${dir}/leaf.ext`,
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
      "-out",
      "leaf.pem",
    ], dir);
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    dir,
    caFile: `${dir}/ca.pem`,
    caPem: await Deno.readTextFile(`${dir}/ca.pem`),
    certFile: `${dir}/leaf.pem`,
    keyFile: `${dir}/leaf.key`,
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
