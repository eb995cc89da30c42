/**
 * The only file-system access of the static responder, confined to the real document root: real
 * paths are checked against the root (symlinks leaving it do not exist for us), only regular files
 * are opened, and an opened file must be the very inode that was checked.
 *
 * Never follows a path outside the root; never opens FIFOs, sockets or devices (a FIFO open blocks).
 */

/** A path inside the root: its real path and the stat it was checked with. */
export interface Found {
  path: string;
  info: Deno.FileInfo;
}

/**
 * ENOENT, ENOTDIR (`/file.txt/child`), ELOOP (a symlink cycle) and ENAMETOOLONG: all mean "no such
 * file" to a client. A symlink loop or an over-long path is a name that cannot be resolved, not a
 * server fault: answering 500 (and logging) for them would let any client fill the log.
 */
export function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.FilesystemLoop ||
    (e instanceof Error && (e as { code?: unknown }).code === "ENAMETOOLONG");
}

export class ConfinedFs {
  /** The real path of the document root, without a trailing slash (unless it is `/`). */
  readonly root: string;
  /** `root` followed by exactly one `/`: every real path we use starts with it. */
  readonly rootPrefix: string;

  private constructor(root: string) {
    this.root = root;
    this.rootPrefix = root.endsWith("/") ? root : root + "/";
  }

  /** Resolves the real document root; throws a clear Error if it is missing or not a directory. */
  static async open(documentRoot: string): Promise<ConfinedFs> {
    let root: string;
    try {
      root = await Deno.realPath(documentRoot);
    } catch (e) {
      const why = isNotFound(e) ? "does not exist" : `cannot be read (${(e as Error).name})`;
      throw new Error(`document root "${documentRoot}" ${why}`);
    }
    const info = await Deno.stat(root);
    if (!info.isDirectory) throw new Error(`document root "${documentRoot}" is not a directory`);
    return new ConfinedFs(root);
  }

  /** The absolute (not yet real) path of a resolver-checked relative path. */
  pathOf(relative: string): string {
    return relative === "" ? this.root : this.rootPrefix + relative;
  }

  /** Real path and stat of `requested` if it exists inside the root; null when missing or outside. */
  async find(requested: string): Promise<Found | null> {
    let path: string;
    try {
      path = await Deno.realPath(requested);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
    if (path !== this.root && !path.startsWith(this.rootPrefix)) return null; // symlink leaving the root
    return { path, info: await Deno.stat(path) };
  }

  /** Like `find` but regular files only, and any error means "none" (sidecars, error pages). */
  async findFile(requested: string): Promise<Found | null> {
    try {
      const found = await this.find(requested);
      return found !== null && found.info.isFile ? found : null;
    } catch {
      return null;
    }
  }

  /**
   * Opens `found.path` and checks the opened file is the one that was checked (same inode and
   * device): a swap between check and open (a symlink planted to escape the root) gives null.
   */
  async openVerified(found: Found): Promise<{ file: Deno.FsFile; info: Deno.FileInfo } | null> {
    if (!found.info.isFile) return null;
    const file = await Deno.open(found.path, { read: true });
    try {
      const info = await file.stat();
      if (!info.isFile || info.ino !== found.info.ino || info.dev !== found.info.dev) {
        file.close();
        return null;
      }
      return { file, info };
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * The whole content of `found`, opened as `openVerified` does (null when it was swapped meanwhile), read
   * up to the size the open file has (fewer bytes if it shrank while read), and closed.
   */
  async readVerified(found: Found): Promise<{ bytes: Uint8Array; info: Deno.FileInfo } | null> {
    const opened = await this.openVerified(found);
    if (opened === null) return null;
    try {
      return { bytes: await ConfinedFs.readAll(opened.file, opened.info.size), info: opened.info };
    } finally {
      opened.file.close();
    }
  }

  /** Reads up to `size` bytes from the start of `file` (fewer if it shrank); does not close it. */
  static async readAll(file: Deno.FsFile, size: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(size);
    let n = 0;
    while (n < size) {
      const got = await file.read(bytes.subarray(n));
      if (got === null) break;
      n += got;
    }
    return n < size ? bytes.subarray(0, n) : bytes;
  }
}
