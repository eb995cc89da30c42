/**
 * Everything a start checks before it binds, so `--check` can prove a start will work and a reload can
 * refuse what a start would refuse: the access log opens for append, the TLS certificate and key load
 * and belong together, the document root can be listed, the ports do not collide, the admin socket's
 * folder exists. Also the wording of a failed bind (`PORT=80: …`), so every start error names the
 * setting, its value and the fix.
 *
 * Reads files, opens the access log for append (removing it again if it had to create it); never binds a
 * port, never throws.
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Config } from "../config/config.ts";
import { errorMessage } from "../core/errors.ts";
import { transportProblem } from "../net/node_transport.ts";

/** Where a setting's problem is reported: `vento.conf:12` when the key is set there, else the file. */
export type Locate = (key: string) => string;

/** Every problem a start would hit, each naming its setting, its value and what to do; empty when none. */
export async function preflight(config: Config, locate: Locate): Promise<string[]> {
  const problems: string[] = [];
  const at = (key: string, message: string) => problems.push(`${locate(key)}: ${message}`);

  const runtime = transportProblem();
  if (runtime !== null) problems.push(runtime);

  if (config.plainHttp && config.tlsCert !== "off" && config.port !== 0 && config.port === config.tlsPort) {
    at(
      "TLS_PORT",
      `TLS_PORT=${config.tlsPort} is also PORT: HTTP and HTTPS need two ports (e.g. 8080, 8443)`,
    );
  }

  for (const problem of await documentRootProblems(config.documentRoot)) at("DOCUMENT_ROOT", problem);
  const log = await accessLogProblem(config.accessLog);
  if (log !== null) at("ACCESS_LOG", log);
  if (config.tlsCert !== "off" && config.tlsKey !== "off") {
    const tls = await tlsPairProblem(config.tlsCert, config.tlsKey);
    if (tls !== null) at(tls.key, tls.message);
  }
  const admin = await adminSocketProblem(config.adminSocket);
  if (admin !== null) at("ADMIN_SOCKET", admin);
  const host = hostProblem(config.host);
  if (host !== null) at("HOST", host);
  const ports = [
    ...(config.plainHttp ? [["PORT", config.port] as const] : []),
    ...(config.tlsCert !== "off" ? [["TLS_PORT", config.tlsPort] as const] : []),
  ];
  for (const [key, port] of ports) {
    const low = await lowPortProblem(key, port);
    if (low !== null) at(key, low);
  }
  return problems;
}

/** The document root must be a folder this user can list (else every request would get 403). */
async function documentRootProblems(root: string): Promise<string[]> {
  try {
    for await (const _ of Deno.readDir(root)) break;
    return [];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return [`DOCUMENT_ROOT "${root}" does not exist: create it or point DOCUMENT_ROOT at your site`];
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      return [
        `DOCUMENT_ROOT "${root}" cannot be read by this user: give it read and execute permission ` +
        `(chmod a+rX) or run Vento as its owner`,
      ];
    }
    return [`DOCUMENT_ROOT "${root}" cannot be read: ${errorMessage(e)}`];
  }
}

/**
 * Opens the access log for append, as a start would, then closes it. A file this check had to create is
 * removed again: `--check` run as root must not leave a root-owned log the service user cannot open.
 */
export async function accessLogProblem(target: string): Promise<string | null> {
  if (target === "off" || target === "-") return null;
  try {
    let existed = true;
    try {
      await Deno.lstat(target);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      existed = false;
    }
    const f = await Deno.open(target, { append: true, create: true, mode: 0o640 });
    f.close();
    if (!existed) await Deno.remove(target);
    return null;
  } catch (e) {
    const folder = target.slice(0, Math.max(1, target.lastIndexOf("/")));
    if (e instanceof Deno.errors.NotFound) {
      return `ACCESS_LOG "${target}": the folder ${folder} does not exist: create it, or set ACCESS_LOG ` +
        `to a file in an existing folder (- for stdout, off for none)`;
    }
    if (e instanceof Deno.errors.NotCapable) {
      return `ACCESS_LOG "${target}": this process's Deno permissions grant no write access there: add it ` +
        `to --allow-write, or choose an ACCESS_LOG that --allow-write covers`;
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      return `ACCESS_LOG "${target}" cannot be opened for writing by this user: fix the permissions of ` +
        `${folder} or of the file, or choose another ACCESS_LOG`;
    }
    if (e instanceof Deno.errors.IsADirectory) {
      return `ACCESS_LOG "${target}" is a folder: name a file inside it, e.g. ${target}/vento.log`;
    }
    return `ACCESS_LOG "${target}" cannot be opened: ${errorMessage(e)}`;
  }
}

/**
 * Loads the certificate chain and the key and checks that the key is the certificate's (what the TLS
 * listener would refuse with a bare "KeyMismatch"), naming the files. An expired certificate is not a
 * start error (clients decide), but is reported by `tlsPairNotes`.
 */
export async function tlsPairProblem(
  certPath: string,
  keyPath: string,
): Promise<{ key: "TLS_CERT" | "TLS_KEY"; message: string } | null> {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = await Deno.readTextFile(certPath);
  } catch (e) {
    return { key: "TLS_CERT", message: `TLS_CERT "${certPath}" cannot be read: ${errorMessage(e)}` };
  }
  try {
    keyPem = await Deno.readTextFile(keyPath);
  } catch (e) {
    return { key: "TLS_KEY", message: `TLS_KEY "${keyPath}" cannot be read: ${errorMessage(e)}` };
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return {
      key: "TLS_CERT",
      message:
        `TLS_CERT "${certPath}" holds no readable certificate (expected PEM: -----BEGIN CERTIFICATE-----)`,
    };
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return {
      key: "TLS_KEY",
      message: `TLS_KEY "${keyPath}" holds no readable private key (expected an unencrypted PEM key: ` +
        `-----BEGIN PRIVATE KEY-----)`,
    };
  }
  if (!matches) {
    return {
      key: "TLS_KEY",
      message: `TLS_KEY "${keyPath}" is not the private key of TLS_CERT "${certPath}" (subject ` +
        `${cert.subject.replaceAll("\n", ", ")}): set the key that was issued with this certificate`,
    };
  }
  return null;
}

/** Non-fatal notes about the certificate (expired or expiring within 14 days). */
export async function tlsPairNotes(certPath: string, nowWallMs: number): Promise<string[]> {
  try {
    const cert = new X509Certificate(await Deno.readTextFile(certPath));
    const endMs = Date.parse(cert.validTo);
    if (!Number.isFinite(endMs)) return [];
    if (endMs < nowWallMs) {
      return [`TLS_CERT "${certPath}" expired on ${cert.validTo}: clients will refuse it`];
    }
    if (endMs - nowWallMs < 14 * 86_400_000) return [`TLS_CERT "${certPath}" expires on ${cert.validTo}`];
    return [];
  } catch {
    return [];
  }
}

/** The admin socket's folder must exist (the socket itself is created at start). */
async function adminSocketProblem(path: string): Promise<string | null> {
  if (path === "off") return null;
  const folder = path.slice(0, Math.max(1, path.lastIndexOf("/")));
  try {
    const info = await Deno.stat(folder);
    if (!info.isDirectory) return `ADMIN_SOCKET "${path}": ${folder} is not a folder`;
    return null;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return `ADMIN_SOCKET "${path}": the folder ${folder} does not exist: create it, or set ADMIN_SOCKET ` +
        `elsewhere (off for none)`;
    }
    // A check run with narrower Deno permissions than the server (a --check step reading only the config
    // and the site) cannot see the socket's folder: that is not the config's fault.
    if (e instanceof Deno.errors.NotCapable) return null;
    return `ADMIN_SOCKET "${path}": ${folder} cannot be checked: ${errorMessage(e)}`;
  }
}

/**
 * A failed bind as an operator reads it: the setting, its value, the fix. `key` is the port's setting
 * (PORT or TLS_PORT); HOST is named when the address is the problem.
 */
export function bindErrorMessage(e: unknown, key: "PORT" | "TLS_PORT", host: string, port: number): string {
  const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (e instanceof Deno.errors.AddrInUse) {
    return `${key}=${port}: ${where} is already in use (another server, or a Vento still running): stop it ` +
      `or choose another ${key}`;
  }
  if (e instanceof Deno.errors.PermissionDenied && port > 0 && port < 1024) {
    return `${key}=${port}: binding below 1024 needs root or CAP_NET_BIND_SERVICE (systemd: ` +
      `AmbientCapabilities=CAP_NET_BIND_SERVICE), or use a port from 1024 up behind a redirect`;
  }
  if (e instanceof Deno.errors.AddrNotAvailable) {
    return `HOST=${host}: no network interface of this machine has that address: use :: (every interface), ` +
      `127.0.0.1, or an address \`ip -brief addr\` lists`;
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return `${key}=${port} on HOST=${host}: not permitted (${
      errorMessage(e)
    }): grant --allow-net for that address`;
  }
  return `${key}=${port} on HOST=${host}: cannot listen: ${errorMessage(e)}`;
}

/** A start error already phrased for the operator (see `bindErrorMessage`). */
export class StartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartError";
  }
}

/**
 * A port below the unprivileged range for a user without root or CAP_NET_BIND_SERVICE, or null (also
 * when this cannot be told: no permission to read the process's identity). Linux only; elsewhere null.
 */
export async function lowPortProblem(key: "PORT" | "TLS_PORT", port: number): Promise<string | null> {
  if (port === 0 || port >= 1024) return null;
  try {
    if (Deno.uid() === 0) return null;
    const start = Number((await Deno.readTextFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")).trim());
    if (Number.isFinite(start) && port >= start) return null;
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(await Deno.readTextFile("/proc/self/status"))?.[1];
    const CAP_NET_BIND_SERVICE = 10n;
    if (capEff === undefined || ((BigInt(`0x${capEff}`) >> CAP_NET_BIND_SERVICE) & 1n) === 1n) return null;
  } catch {
    return null;
  }
  return bindErrorMessage(new Deno.errors.PermissionDenied(), key, "", port);
}

/** HOST names an address no interface of this machine has (only IP literals are judged), or null. */
export function hostProblem(host: string): string | null {
  if (host === "::" || host === "0.0.0.0" || host.startsWith("127.") || host === "::1") return null;
  if (!/^[0-9.]+$/.test(host) && !host.includes(":")) return null; // a name: resolved at bind
  let addresses: string[];
  try {
    addresses = Deno.networkInterfaces().map((i) => i.address.toLowerCase());
  } catch {
    return null; // no permission to list interfaces: the bind will tell
  }
  if (addresses.includes(host.toLowerCase())) return null;
  try {
    // With non-local binding on, the kernel accepts any address (a floating IP that arrives later).
    const sysctl = host.includes(":") ? "ipv6/ip_nonlocal_bind" : "ipv4/ip_nonlocal_bind";
    if (Deno.readTextFileSync(`/proc/sys/net/${sysctl}`).trim() === "1") return null;
  } catch {
    // not Linux, or not readable: judge by the interfaces
  }
  return bindErrorMessage(new Deno.errors.AddrNotAvailable(), "PORT", host, 0);
}
