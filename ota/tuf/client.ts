/**
 * The TUF client workflow (specification section 5, "Detailed client
 * workflow"): refresh the top-level metadata in order root → timestamp →
 * snapshot → targets, find a target through the delegation graph, and
 * download it verified against its length and hashes.
 *
 * Trusted metadata lives in `metadataDir` under plain names (`root.json`,
 * `timestamp.json`, `<quoted role>.json`), each written atomically and
 * exactly as received, so hashes of local copies keep matching.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { getLogger, writeFileAtomic } from "../../lib/mod.ts";
import {
  DownloadHttpError,
  EqualVersionError,
  FormatError,
  TargetNotFoundError,
  TrustStoreError,
  TufError,
} from "./errors.ts";
import { type Fetcher, HttpFetcher } from "./fetcher.ts";
import type { Metadata, TargetFile, Targets } from "./metadata.ts";
import { quoteName, roleAppliesTo } from "./paths.ts";
import { TrustedSet } from "./trusted_set.ts";
import { createChecker } from "./verify.ts";

const log = getLogger(["edged", "tuf"]);

/** A target found in trusted metadata: its path plus the TARGETS entry (section 4.5). */
export interface TargetInfo extends TargetFile {
  /** The target path, as listed in targets metadata. */
  path: string;
}

/** Options of {@link TufClient}. */
export interface TufClientOptions {
  /** Directory of trusted metadata; must hold `root.json` (see {@link TufClient.init}). */
  metadataDir: string;
  /** Base URL of the repository's metadata (a trailing "/" is added if missing). */
  metadataBaseUrl: string;
  /** Base URL of the repository's targets; needed to download. */
  targetBaseUrl?: string;
  /** Directory where downloaded targets are stored by default (file name: quoted target path). */
  targetDir?: string;
  /** Network access. @default new HttpFetcher() */
  fetcher?: Fetcher;
  /** Clock for expiry checks. @default () => new Date() */
  now?: () => Date;
  /** Most root versions fetched in one refresh (5.3.3). @default 256 */
  maxRootRotations?: number;
  /** Most targets roles visited in one target search (5.6.7). @default 32 */
  maxDelegations?: number;
  /** Length limit of root metadata. @default 512000 */
  rootMaxLength?: number;
  /** Length limit of timestamp metadata. @default 16384 */
  timestampMaxLength?: number;
  /** Length limit of snapshot metadata when timestamp gives none. @default 2000000 */
  snapshotMaxLength?: number;
  /** Length limit of targets metadata when snapshot gives none. @default 5000000 */
  targetsMaxLength?: number;
}

function withSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}

/**
 * A TUF 1.0 client: keeps a trusted copy of a repository's metadata up to
 * date and downloads targets verified by it.
 *
 * @example
 * ```ts
 * await TufClient.init("/var/lib/edged/tuf", await Deno.readFile("root.json"));
 * const client = new TufClient({
 *   metadataDir: "/var/lib/edged/tuf",
 *   metadataBaseUrl: "https://updates.example.com/metadata/",
 *   targetBaseUrl: "https://updates.example.com/targets/",
 * });
 * await client.refresh();
 * const info = await client.getTargetInfo("edged-x86_64-unknown-linux-gnu-1.2.0");
 * if (info) await client.downloadTarget(info, "/tmp/edged.new");
 * ```
 */
export class TufClient {
  readonly #dir: string;
  readonly #metadataUrl: string;
  readonly #targetUrl?: string;
  readonly #targetDir?: string;
  readonly #fetcher: Fetcher;
  readonly #now: () => Date;
  readonly #limits: Required<
    Pick<
      TufClientOptions,
      | "maxRootRotations"
      | "maxDelegations"
      | "rootMaxLength"
      | "timestampMaxLength"
      | "snapshotMaxLength"
      | "targetsMaxLength"
    >
  >;
  #trusted?: TrustedSet;

  /** Creates a client; nothing is read or fetched until {@link refresh}. */
  constructor(options: TufClientOptions) {
    const {
      metadataDir,
      metadataBaseUrl,
      targetBaseUrl,
      targetDir,
      fetcher = new HttpFetcher(),
      now = () => new Date(),
      maxRootRotations = 256,
      maxDelegations = 32,
      rootMaxLength = 512000,
      timestampMaxLength = 16384,
      snapshotMaxLength = 2000000,
      targetsMaxLength = 5000000,
    } = options;
    if (!metadataDir) throw new TypeError("metadataDir is required");
    if (!metadataBaseUrl) throw new TypeError("metadataBaseUrl is required");
    this.#dir = metadataDir;
    this.#metadataUrl = withSlash(metadataBaseUrl);
    this.#targetUrl = targetBaseUrl === undefined ? undefined : withSlash(targetBaseUrl);
    this.#targetDir = targetDir;
    this.#fetcher = fetcher;
    this.#now = now;
    this.#limits = {
      maxRootRotations,
      maxDelegations,
      rootMaxLength,
      timestampMaxLength,
      snapshotMaxLength,
      targetsMaxLength,
    };
  }

  /**
   * Section 5.2: installs the trusted root the client ships with. It is
   * stored as given; {@link refresh} checks its signatures before use.
   */
  static async init(metadataDir: string, trustedRoot: Uint8Array): Promise<void> {
    await Deno.mkdir(metadataDir, { recursive: true });
    await writeFileAtomic(join(metadataDir, "root.json"), trustedRoot);
  }

  /** The trusted set after a successful {@link refresh} (for status pages and tests). */
  get trusted(): TrustedSet | undefined {
    return this.#trusted;
  }

  /**
   * Section 5: updates root, timestamp, snapshot and top-level targets.
   * Throws a {@link TufError} subclass naming the failed rule; what was
   * verified before the failure stays trusted and stored.
   */
  async refresh(): Promise<void> {
    this.#trusted = undefined;
    // 5.1: record the time once; every expiry check of this update uses it.
    const now = this.#now();
    let rootBytes: Uint8Array;
    try {
      rootBytes = await Deno.readFile(join(this.#dir, "root.json"));
    } catch (cause) {
      throw new TrustStoreError(`no trusted root.json in ${this.#dir}`, { cause });
    }
    // 5.2: the trusted root, verified by itself.
    const trusted = await TrustedSet.create(rootBytes, now);
    await this.#loadRoot(trusted);
    await this.#loadTimestamp(trusted);
    await this.#loadSnapshot(trusted);
    await this.#loadTargets(trusted, "targets", "root");
    this.#trusted = trusted;
  }

  /** Section 5.3: follow the chain of root versions N+1, N+2, ... until none is found. */
  async #loadRoot(trusted: TrustedSet): Promise<void> {
    const first = trusted.root.signed.version + 1;
    // 5.3.3: a fixed bound, so a malicious repository cannot keep us busy forever.
    for (let v = first; v < first + this.#limits.maxRootRotations; v++) {
      let bytes: Uint8Array;
      try {
        bytes = await this.#fetchMetadata("root", this.#limits.rootMaxLength, v);
      } catch (err) {
        // 5.3.3: "if this file is not available, ... go to step 5.3.10".
        if (
          err instanceof DownloadHttpError && (err.httpStatus === 404 || err.httpStatus === 403)
        ) break;
        throw err;
      }
      await trusted.updateRoot(bytes);
      // 5.3.8: persist each accepted root at once, so a later failure keeps the progress.
      await this.#persist("root", bytes);
      log.debug("trusted root version {version}", { version: v });
    }
    // 5.3.10 (root expiry) is checked by updateTimestamp. 5.3.11 (timestamp and
    // snapshot keys rotated: drop the old copies) follows from verifying the local
    // copies against the new root below: signed with old keys, they are ignored.
  }

  /** Section 5.4: always download the newest timestamp. */
  async #loadTimestamp(trusted: TrustedSet): Promise<void> {
    const local = await this.#readLocal("timestamp");
    if (local) {
      // The stored copy is only the reference for the rollback checks of 5.4.3.
      await trusted.updateTimestamp(local).catch((err) => {
        if (!(err instanceof TufError)) throw err;
        log.debug("local timestamp not usable: {error}", { error: err.message });
      });
    }
    const bytes = await this.#fetchMetadata("timestamp", this.#limits.timestampMaxLength);
    try {
      await trusted.updateTimestamp(bytes);
    } catch (err) {
      // 5.4.3.1: the same version again is not news; keep the stored copy.
      if (err instanceof EqualVersionError) return;
      throw err;
    }
    // 5.4.5: persist.
    await this.#persist("timestamp", bytes);
  }

  /** Section 5.5: use the stored snapshot if it is the one timestamp names, else download it. */
  async #loadSnapshot(trusted: TrustedSet): Promise<void> {
    const local = await this.#readLocal("snapshot");
    if (local) {
      try {
        await trusted.updateSnapshot(local, true);
        return;
      } catch (err) {
        if (!(err instanceof TufError)) throw err;
        log.debug("local snapshot not final: {error}", { error: err.message });
      }
    }
    const meta = trusted.timestamp!.signed.meta["snapshot.json"];
    // 5.5.1: the length from timestamp if given; the version in the name with
    // consistent snapshots.
    const version = trusted.root.signed.consistent_snapshot ? meta.version : undefined;
    const bytes = await this.#fetchMetadata(
      "snapshot",
      meta.length ?? this.#limits.snapshotMaxLength,
      version,
    );
    await trusted.updateSnapshot(bytes);
    // 5.5.7: persist.
    await this.#persist("snapshot", bytes);
  }

  /** Section 5.6 (and 5.6.7.2 for delegated roles): stored copy if current, else download. */
  async #loadTargets(
    trusted: TrustedSet,
    role: string,
    delegator: string,
  ): Promise<Metadata<Targets>> {
    const local = await this.#readLocal(role);
    if (local) {
      try {
        return await trusted.updateTargets(local, role, delegator);
      } catch (err) {
        if (!(err instanceof TufError)) throw err;
        log.debug("local {role} not current: {error}", { role, error: err.message });
      }
    }
    const meta = trusted.snapshot!.signed.meta[`${role}.json`];
    if (!meta) throw new FormatError(`snapshot does not list ${role}.json`);
    const version = trusted.root.signed.consistent_snapshot ? meta.version : undefined;
    const bytes = await this.#fetchMetadata(
      role,
      meta.length ?? this.#limits.targetsMaxLength,
      version,
    );
    const md = await trusted.updateTargets(bytes, role, delegator);
    // 5.6.6: persist.
    await this.#persist(role, bytes);
    return md;
  }

  /**
   * Section 5.6.7: finds `targetPath` by a pre-order depth-first search of
   * the delegation graph from top-level targets, in the order roles are
   * listed; a terminating delegation ends the search of other branches.
   * Refreshes first if this client has not. Returns undefined when no
   * trusted role lists the path.
   */
  async getTargetInfo(targetPath: string): Promise<TargetInfo | undefined> {
    if (!this.#trusted) await this.refresh();
    const trusted = this.#trusted!;
    const toVisit: [role: string, delegator: string][] = [["targets", "root"]];
    const visited = new Set<string>();
    while (toVisit.length > 0 && visited.size <= this.#limits.maxDelegations) {
      const [role, delegator] = toVisit.pop()!;
      // A role reached a second time is skipped: this prevents cycles.
      if (visited.has(role)) continue;
      const md = await this.#loadTargets(trusted, role, delegator);
      const entry = md.signed.targets[targetPath];
      if (entry) return { ...entry, path: targetPath };
      visited.add(role);
      const children: [string, string][] = [];
      for (const child of md.signed.delegations?.roles ?? []) {
        if (!roleAppliesTo(child, targetPath)) continue;
        children.push([child.name, role]);
        // 5.6.7.2.1: a terminating delegation: do not backtrack to other roles.
        if (child.terminating) {
          toVisit.length = 0;
          break;
        }
      }
      toVisit.push(...children.reverse());
    }
    return undefined;
  }

  /**
   * Every target the top-level targets role lists (delegated roles are not
   * searched: use {@link getTargetInfo} for a known path). For finding the
   * newest release of a triple; requires a successful {@link refresh}.
   */
  listTargets(): TargetInfo[] {
    if (!this.#trusted) throw new TrustStoreError("no trusted metadata: refresh() first");
    const top = this.#trusted.targets("targets")!;
    return Object.entries(top.signed.targets).map(([path, t]) => ({ ...t, path }));
  }

  /**
   * Like {@link getTargetInfo}, but throws {@link TargetNotFoundError} when
   * no trusted role lists `targetPath`.
   */
  async requireTargetInfo(targetPath: string): Promise<TargetInfo> {
    const info = await this.getTargetInfo(targetPath);
    if (!info) throw new TargetNotFoundError(`no trusted targets role lists ${targetPath}`);
    return info;
  }

  /**
   * The URL of a target (section 5.7.2): with consistent snapshots the file
   * name is prefixed by one of its hashes (`dir/<hash>.name`). For a
   * downloader of its own, such as the update pipeline's resumable one.
   */
  targetUrl(info: TargetInfo): string {
    if (this.#targetUrl === undefined) throw new TypeError("targetBaseUrl is not set");
    // Whether names carry hashes is the trusted root's say, so it must be known.
    if (!this.#trusted) throw new TrustStoreError("no trusted metadata: refresh() first");
    let path = info.path;
    if (this.#trusted.root.signed.consistent_snapshot) {
      const hash = Object.values(info.hashes)[0];
      const slash = path.lastIndexOf("/");
      path = `${path.slice(0, slash + 1)}${hash}.${path.slice(slash + 1)}`;
    }
    return `${this.#targetUrl}${path}`;
  }

  #defaultPath(info: TargetInfo): string {
    if (this.#targetDir === undefined) {
      throw new TypeError("targetDir is not set and no path given");
    }
    return join(this.#targetDir, quoteName(info.path));
  }

  /**
   * Section 5.7.3: throws {@link LengthOrHashMismatchError} unless the file
   * at `path` has exactly the length and every hash of `info`. Reads in
   * chunks, so large targets need no memory.
   */
  async verifyTargetFile(info: TargetInfo, path: string): Promise<void> {
    const check = createChecker(info.path, info);
    const file = await Deno.open(path, { read: true });
    try {
      const buf = new Uint8Array(1 << 16);
      while (true) {
        const n = await file.read(buf);
        if (n === null) break;
        check.update(buf.subarray(0, n));
      }
    } finally {
      file.close();
    }
    check.finish();
  }

  /**
   * Returns the path of a local copy of the target that already matches
   * `info` (default location, or `path`), or undefined when it must be
   * downloaded.
   */
  async findCachedTarget(info: TargetInfo, path?: string): Promise<string | undefined> {
    const file = path ?? this.#defaultPath(info);
    try {
      await this.verifyTargetFile(info, file);
      return file;
    } catch {
      return undefined;
    }
  }

  /**
   * Section 5.7: downloads the target into a temporary file beside
   * `destPath`, at most `info.length` bytes, verifies it and only then
   * renames it into place. Returns the final path.
   */
  async downloadTarget(info: TargetInfo, destPath?: string): Promise<string> {
    const dest = destPath ?? this.#defaultPath(info);
    const tmp = join(dirname(dest), `.${basename(dest)}.part-${crypto.randomUUID()}`);
    try {
      await this.#fetcher.fetchToFile(this.targetUrl(info), tmp, info.length);
      await this.verifyTargetFile(info, tmp);
      await Deno.rename(tmp, dest);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
    log.debug("downloaded target {path}", { path: info.path });
    return dest;
  }

  #fetchMetadata(role: string, maxLength: number, version?: number): Promise<Uint8Array> {
    const name = quoteName(role);
    const file = version === undefined ? `${name}.json` : `${version}.${name}.json`;
    return this.#fetcher.fetchBytes(`${this.#metadataUrl}${file}`, maxLength);
  }

  async #readLocal(role: string): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(join(this.#dir, `${quoteName(role)}.json`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  #persist(role: string, bytes: Uint8Array): Promise<void> {
    return writeFileAtomic(join(this.#dir, `${quoteName(role)}.json`), bytes);
  }
}
