/**
 * `vento --precompress [DIR]` (`deno task precompress`): writes `.br` and `.gz` sidecars for every file
 * of a site that on-the-fly compression would compress (COMPRESS_TYPES, at least COMPRESS_MIN_BYTES), at
 * the highest levels (brotli 11, gzip 9), so the server sends them with no compression work at all.
 *
 * Skips sidecars that are already fresh (modified no earlier than their file; a written sidecar takes
 * its file's modification time). Never follows a symbolic link (a site's link may lead anywhere), never
 * descends into dot-directories (except `.well-known` unless DOTFILES=allow says every dotfile is
 * served), never replaces anything but a regular file. Each sidecar is written beside its file under a
 * temporary name and renamed into place, so a running server never sees half of one. A sidecar that
 * would not be smaller is not written, and a stale one in its place is removed (it would be served in
 * place of the newer file). Memory stays flat: files stream through the compressor.
 */

import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type { Config } from "../config/config.ts";
import type { Encoding } from "./accept_encoding.ts";
import { CompressibleTypes } from "./compress.ts";
import { contentTypeFor } from "./mime.ts";
import { errorMessage } from "../core/errors.ts";

/** The settings precompression reads (each documented in `Config`). */
export type PrecompressOptions = Pick<Config, "compressTypes" | "compressMinBytes" | "dotfiles">;

/** Levels for sidecars: the smallest output, since the work is done once, ahead of time. */
export const PRECOMPRESS_BROTLI_QUALITY = 11;
export const PRECOMPRESS_GZIP_LEVEL = 9;

/** What one run did. */
export interface PrecompressReport {
  /** Files that qualified (compressible type, big enough). */
  files: number;
  written: number;
  fresh: number;
  /** Sidecars not written because they would not be smaller. */
  notSmaller: number;
  /** Stale sidecars removed because the new one would not be smaller. */
  removed: number;
  /** `path: problem` for each file or folder that could not be handled. */
  errors: string[];
}

const SIDECARS: ReadonlyArray<[Encoding, string]> = [["br", ".br"], ["gzip", ".gz"]];

function compressor(encoding: Encoding, sizeHint: number): zlib.BrotliCompress | zlib.Gzip {
  if (encoding === "gzip") return zlib.createGzip({ level: PRECOMPRESS_GZIP_LEVEL });
  return zlib.createBrotliCompress({
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: PRECOMPRESS_BROTLI_QUALITY,
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: Math.min(sizeHint, 2 ** 30),
    },
  });
}

/** Writes every missing or stale sidecar under `root`. Never throws for one bad file: it is reported. */
export async function precompressSite(root: string, opts: PrecompressOptions): Promise<PrecompressReport> {
  const report: PrecompressReport = { files: 0, written: 0, fresh: 0, notSmaller: 0, removed: 0, errors: [] };
  const types = new CompressibleTypes(opts.compressTypes);
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (e) {
      report.errors.push(`${dir}: ${errorMessage(e)}`);
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      const relPath = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isSymlink) continue;
      const hidden = e.name.startsWith(".") && opts.dotfiles === "hide" &&
        !(rel === "" && e.name === ".well-known");
      if (hidden) continue;
      if (e.isDirectory) await walk(path, relPath);
      else if (e.isFile && types.worthCompressing(relPath, contentTypeFor(relPath))) {
        await precompressFile(path, opts.compressMinBytes, report);
      }
    }
  };
  await walk(root.replace(/\/+$/, "") || "/", "");
  return report;
}

async function precompressFile(path: string, minBytes: number, report: PrecompressReport): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    report.errors.push(`${path}: ${errorMessage(e)}`);
    return;
  }
  if (!info.isFile || info.size < minBytes) return;
  report.files++;
  const mtime = info.mtime ?? new Date(0);
  for (const [encoding, ext] of SIDECARS) {
    const sidecar = path + ext;
    let existing: Deno.FileInfo | null = null;
    try {
      existing = await Deno.lstat(sidecar);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        report.errors.push(`${sidecar}: ${errorMessage(e)}`);
        continue;
      }
    }
    if (existing !== null && !existing.isFile) {
      report.errors.push(`${sidecar}: exists and is not a regular file; left alone`);
      continue;
    }
    if (existing !== null && (existing.mtime?.getTime() ?? 0) >= mtime.getTime()) {
      report.fresh++;
      continue;
    }
    const tmp = `${sidecar}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await pipeline(
        createReadStream(path),
        compressor(encoding, info.size),
        createWriteStream(tmp, { mode: 0o644 }),
      );
      const size = (await Deno.stat(tmp)).size;
      if (size >= info.size) {
        await Deno.remove(tmp);
        report.notSmaller++;
        if (existing !== null) {
          await Deno.remove(sidecar);
          report.removed++;
        }
        continue;
      }
      await Deno.utime(tmp, info.atime ?? mtime, mtime);
      await Deno.rename(tmp, sidecar);
      report.written++;
    } catch (e) {
      report.errors.push(`${sidecar}: ${errorMessage(e)}`);
      await Deno.remove(tmp).catch(() => {});
    }
  }
}
