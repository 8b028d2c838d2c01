/**
 * A TUF repository on disk (specification sections 4 and 6): keys,
 * metadata and targets as plain static files that any web server, CDN or
 * object store can serve.
 *
 *     DIR/repo.json                 expiry periods, delta depth
 *     DIR/keys/<role>-<id>.json     Ed25519 keys, mode 0600 (root's may live elsewhere)
 *     DIR/metadata/N.root.json      every root version (clients walk the chain, 5.3)
 *     DIR/metadata/N.targets.json   consistent snapshots (section 7)
 *     DIR/metadata/N.snapshot.json
 *     DIR/metadata/timestamp.json   the only file that changes in place
 *     DIR/targets/<dir>/<sha256>.<name>   hash-prefixed target files
 *
 * Unversioned `root.json`, `targets.json` and `snapshot.json` copies are
 * the tool's own view of the newest versions. Files are written so that a
 * client never sees a timestamp naming files that are not there yet:
 * targets, then targets metadata, then snapshot, then timestamp.
 *
 * @module
 */
import { dirname, join } from "node:path";
import {
  canonicalBytes,
  type Key,
  type MetaFile,
  type Root,
  type Signed,
  type Snapshot,
  SPEC_VERSION,
  type TargetFile,
  type Targets,
  type Timestamp,
} from "../tuf/mod.ts";
import { getLogger, sha256Hex, toHex, writeFileAtomic } from "../../lib/mod.ts";
import { RepoError } from "./errors.ts";
import { generateKey, loadKeys, retireKey, type SigningKey } from "./keystore.ts";
import { expiresIn, parseDuration } from "./_util.ts";
import { compareVersions } from "../semver.ts";
import { parseCustom } from "../contract.ts";

const log = getLogger(["edged", "repo"]);

/** The four top-level roles (section 2.1). */
export type RoleName = "root" | "targets" | "snapshot" | "timestamp";
/** Top-level roles in the order they are signed. */
export const ROLES: readonly RoleName[] = ["root", "targets", "snapshot", "timestamp"];

/** `DIR/repo.json`. */
export interface RepoConfig {
  /** Lifetime of each role's metadata, e.g. "365d". */
  expires: Record<RoleName, string>;
  /** How many previous releases of the same triple get a delta to a new release. */
  deltas: number;
}

/** Defaults of {@link RepoConfig}: short-lived timestamp and snapshot, re-signed by cron. */
export const DEFAULT_CONFIG: RepoConfig = {
  expires: { root: "365d", targets: "90d", snapshot: "7d", timestamp: "1d" },
  deltas: 3,
};

/** Options of {@link Repository.init}. */
export interface InitOptions {
  /** Signature threshold (and number of keys generated) per role. @default 1 each */
  thresholds?: Partial<Record<RoleName, number>>;
  /** Metadata lifetimes per role. @default DEFAULT_CONFIG.expires */
  expires?: Partial<Record<RoleName, string>>;
  /** Keep root keys here instead of DIR/keys (e.g. a removable disk). */
  rootKeysDir?: string;
  /** Deltas per new release. @default 3 */
  deltas?: number;
  /** Clock. @default new Date() */
  now?: Date;
}

/** Options of {@link Repository.open}. */
export interface OpenOptions {
  /** Where root keys are when they are kept offline (needed by {@link Repository.rotate}). */
  rootKeysDir?: string;
  /** Clock. @default new Date() */
  now?: Date;
}

/** One target written by {@link Repository.putTarget}. */
export interface AddedTarget {
  path: string;
  length: number;
  sha256: string;
  custom: Record<string, unknown>;
}

interface Envelope<T extends Signed> {
  signed: T;
  signatures: { keyid: string; sig: string }[];
}

async function readJson<T>(path: string): Promise<T> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (cause) {
    throw new RepoError(`cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
}

function encode(md: Envelope<Signed>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(md, null, 1) + "\n");
}

/** The stored file name of a target: its hash before the last path segment (section 5.7.2). */
export function consistentTargetPath(path: string, sha: string): string {
  const slash = path.lastIndexOf("/");
  return `${path.slice(0, slash + 1)}${sha}.${path.slice(slash + 1)}`;
}

/** A repository directory opened for changes. */
export class Repository {
  readonly dir: string;
  readonly config: RepoConfig;
  #now: Date;
  #rootKeysDir: string;
  #root: Envelope<Root>;
  #targets: Envelope<Targets>;
  #snapshot: Envelope<Snapshot>;
  #timestamp: Envelope<Timestamp>;

  private constructor(
    dir: string,
    config: RepoConfig,
    now: Date,
    rootKeysDir: string,
    mds: [Envelope<Root>, Envelope<Targets>, Envelope<Snapshot>, Envelope<Timestamp>],
  ) {
    this.dir = dir;
    this.config = config;
    this.#now = now;
    this.#rootKeysDir = rootKeysDir;
    [this.#root, this.#targets, this.#snapshot, this.#timestamp] = mds;
  }

  /** Directory of keys of every role but (optionally) root. */
  get keysDir(): string {
    return join(this.dir, "keys");
  }
  /** Directory of metadata files as served. */
  get metadataDir(): string {
    return join(this.dir, "metadata");
  }
  /** Directory of target files as served. */
  get targetsDir(): string {
    return join(this.dir, "targets");
  }
  /** Newest root (signed part). */
  get root(): Root {
    return this.#root.signed;
  }
  /** Newest top-level targets (signed part). */
  get targets(): Targets {
    return this.#targets.signed;
  }
  /** Newest snapshot (signed part). */
  get snapshot(): Snapshot {
    return this.#snapshot.signed;
  }
  /** Newest timestamp (signed part). */
  get timestamp(): Timestamp {
    return this.#timestamp.signed;
  }

  /**
   * Creates a new repository in `dir` (which must not hold one): generates
   * `threshold` Ed25519 keys per role and signs version 1 of all four roles.
   */
  static async init(dir: string, options: InitOptions = {}): Promise<Repository> {
    const {
      thresholds = {},
      expires = {},
      rootKeysDir,
      deltas = DEFAULT_CONFIG.deltas,
      now = new Date(),
    } = options;
    if (!Number.isSafeInteger(deltas) || deltas < 0) {
      throw new RangeError(`deltas must be an integer >= 0, got ${deltas}`);
    }
    const config: RepoConfig = { expires: { ...DEFAULT_CONFIG.expires, ...expires }, deltas };
    for (const r of ROLES) parseDuration(config.expires[r]);
    try {
      await Deno.stat(join(dir, "repo.json"));
      throw new RepoError(`${dir} already holds a repository (repo.json exists)`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await Deno.mkdir(join(dir, "metadata"), { recursive: true });
    await Deno.mkdir(join(dir, "targets"), { recursive: true });
    const rootDir = rootKeysDir ?? join(dir, "keys");
    const keys: Record<string, Key> = {};
    const roles = {} as Root["roles"];
    for (const role of ROLES) {
      const t = thresholds[role] ?? 1;
      if (!Number.isSafeInteger(t) || t < 1 || t > 16) {
        throw new RangeError(`threshold of ${role} must be an integer from 1 to 16, got ${t}`);
      }
      const keyids: string[] = [];
      for (let i = 0; i < t; i++) {
        const k = await generateKey(role === "root" ? rootDir : join(dir, "keys"), role);
        keys[k.keyid] = k.key;
        keyids.push(k.keyid);
      }
      roles[role] = { keyids, threshold: t };
    }
    await writeFileAtomic(
      join(dir, "repo.json"),
      new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
    );
    const base = (type: string, role: RoleName) => ({
      _type: type,
      spec_version: SPEC_VERSION,
      version: 1,
      expires: expiresIn(now, parseDuration(config.expires[role])),
    });
    const root = {
      signed: { ...base("root", "root"), consistent_snapshot: true, keys, roles } as Root,
      signatures: [],
    };
    const targets = {
      signed: { ...base("targets", "targets"), targets: {} } as Targets,
      signatures: [],
    };
    const snapshot = {
      signed: { ...base("snapshot", "snapshot"), meta: {} } as Snapshot,
      signatures: [],
    };
    const timestamp = {
      signed: {
        ...base("timestamp", "timestamp"),
        meta: { "snapshot.json": { version: 1 } },
      } as Timestamp,
      signatures: [],
    };
    const repo = new Repository(dir, config, now, rootDir, [root, targets, snapshot, timestamp]);
    await repo.#signAndWriteRoot([]);
    await repo.#publish({ targets: true, bump: false });
    log.info("initialised repository {dir}", { dir });
    return repo;
  }

  /** Opens the repository in `dir`. */
  static async open(dir: string, options: OpenOptions = {}): Promise<Repository> {
    const config = await readJson<RepoConfig>(join(dir, "repo.json"));
    const md = join(dir, "metadata");
    return new Repository(
      dir,
      config,
      options.now ?? new Date(),
      options.rootKeysDir ?? join(dir, "keys"),
      [
        await readJson(join(md, "root.json")),
        await readJson(join(md, "targets.json")),
        await readJson(join(md, "snapshot.json")),
        await readJson(join(md, "timestamp.json")),
      ],
    );
  }

  async #keysFor(keyids: string[], fromDir: string): Promise<SigningKey[]> {
    const all = [...await loadKeys(fromDir)];
    if (fromDir !== this.keysDir) all.push(...await loadKeys(this.keysDir));
    const wanted = new Set(keyids);
    const seen = new Set<string>();
    return all.filter((k) => wanted.has(k.keyid) && !seen.has(k.keyid) && seen.add(k.keyid));
  }

  async #sign<T extends Signed>(role: RoleName, md: Envelope<T>): Promise<void> {
    const roleKeys = this.#root.signed.roles[role];
    const keys = await this.#keysFor(roleKeys.keyids, this.keysDir);
    if (keys.length < roleKeys.threshold) {
      throw new RepoError(
        `${role} needs ${roleKeys.threshold} signatures but only ${keys.length} of its keys are in ${this.keysDir}`,
      );
    }
    const data = canonicalBytes(md.signed);
    md.signatures = [];
    for (const k of keys) md.signatures.push({ keyid: k.keyid, sig: toHex(await k.sign(data)) });
  }

  /** Signs the current root (and by `previous` root keys as well) and writes N.root.json. */
  async #signAndWriteRoot(previous: Root["roles"]["root"][]): Promise<void> {
    const md = this.#root;
    const roleKeys = md.signed.roles.root;
    const fromDir = this.#rootKeysDir;
    const keyids = [...roleKeys.keyids, ...previous.flatMap((p) => p.keyids)];
    const keys = await this.#keysFor(keyids, fromDir);
    for (const rk of [roleKeys, ...previous]) {
      const have = keys.filter((k) => rk.keyids.includes(k.keyid)).length;
      if (have < rk.threshold) {
        throw new RepoError(
          `root needs ${rk.threshold} signatures but only ${have} of its keys are in ${fromDir} ` +
            "(pass --root-keys-dir if root keys are kept offline)",
        );
      }
    }
    const data = canonicalBytes(md.signed);
    md.signatures = [];
    for (const k of keys) md.signatures.push({ keyid: k.keyid, sig: toHex(await k.sign(data)) });
    const bytes = encode(md);
    await writeFileAtomic(join(this.metadataDir, `${md.signed.version}.root.json`), bytes);
    await writeFileAtomic(join(this.metadataDir, "root.json"), bytes);
  }

  #expires(role: RoleName): string {
    return expiresIn(this.#now, parseDuration(this.config.expires[role]));
  }

  /**
   * Signs and writes targets (if changed), then a new snapshot and timestamp,
   * in the order that keeps the served repository consistent at every moment.
   */
  async #publish(opts: { targets: boolean; bump?: boolean }): Promise<void> {
    const bump = opts.bump ?? true;
    const md = this.metadataDir;
    if (opts.targets) {
      if (bump) this.#targets.signed.version++;
      this.#targets.signed.expires = this.#expires("targets");
      await this.#sign("targets", this.#targets);
      const bytes = encode(this.#targets);
      await writeFileAtomic(join(md, `${this.#targets.signed.version}.targets.json`), bytes);
      await writeFileAtomic(join(md, "targets.json"), bytes);
    }
    const targetsBytes = await Deno.readFile(join(md, "targets.json"));
    const snap = this.#snapshot.signed;
    if (bump) snap.version++;
    snap.expires = this.#expires("snapshot");
    snap.meta = {
      ...snap.meta,
      "targets.json": {
        version: this.#targets.signed.version,
        length: targetsBytes.length,
        hashes: { sha256: await sha256Hex(targetsBytes) },
      },
    };
    await this.#sign("snapshot", this.#snapshot);
    const snapBytes = encode(this.#snapshot);
    await writeFileAtomic(join(md, `${snap.version}.snapshot.json`), snapBytes);
    await writeFileAtomic(join(md, "snapshot.json"), snapBytes);
    const ts = this.#timestamp.signed;
    if (bump) ts.version++;
    ts.expires = this.#expires("timestamp");
    const meta: MetaFile = {
      version: snap.version,
      length: snapBytes.length,
      hashes: { sha256: await sha256Hex(snapBytes) },
    };
    ts.meta = { "snapshot.json": meta };
    await this.#sign("timestamp", this.#timestamp);
    // Last: from this rename on, clients see the new state.
    await writeFileAtomic(join(md, "timestamp.json"), encode(this.#timestamp));
  }

  /**
   * Stores `data` under its hash-prefixed name and lists it as target
   * `path` with `custom`; published with the next {@link publishTargets}.
   */
  async putTarget(
    path: string,
    data: Uint8Array,
    custom: Record<string, unknown>,
  ): Promise<AddedTarget> {
    const sha = await sha256Hex(data);
    const file = join(this.targetsDir, consistentTargetPath(path, sha));
    await Deno.mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, data);
    this.#targets.signed.targets[path] = { length: data.length, hashes: { sha256: sha }, custom };
    return { path, length: data.length, sha256: sha, custom };
  }

  /** Signs and publishes targets, snapshot and timestamp after {@link putTarget} calls. */
  publishTargets(): Promise<void> {
    return this.#publish({ targets: true });
  }

  /** Reads a listed target's stored file, checking it still has the recorded digest. */
  async readTarget(path: string): Promise<Uint8Array> {
    const info = this.#targets.signed.targets[path];
    if (!info) throw new RepoError(`no target ${path}`);
    const sha = info.hashes.sha256;
    const data = await Deno.readFile(join(this.targetsDir, consistentTargetPath(path, sha)));
    if ((await sha256Hex(data)) !== sha) {
      throw new RepoError(`stored file of ${path} does not match its sha256`);
    }
    return data;
  }

  /** The release entries of `triple`, newest first. */
  releases(triple: string): { path: string; version: string; info: TargetFile }[] {
    const found: { path: string; version: string; info: TargetFile }[] = [];
    for (const [path, info] of Object.entries(this.#targets.signed.targets)) {
      const c = parseCustom(info.custom);
      if (c?.kind === "release" && c.triple === triple) {
        found.push({ path, version: c.version, info });
      }
    }
    return found.sort((a, b) => compareVersions(b.version, a.version));
  }

  /**
   * Re-signs snapshot and timestamp with fresh expiry dates (run from cron
   * well within the timestamp lifetime). Targets is re-signed too when less
   * than half its lifetime is left.
   */
  async refresh(): Promise<void> {
    const left = Date.parse(this.#targets.signed.expires) - this.#now.getTime();
    const targets = left < parseDuration(this.config.expires.targets) / 2;
    await this.#publish({ targets });
    const rootLeft = Date.parse(this.#root.signed.expires) - this.#now.getTime();
    if (rootLeft < parseDuration(this.config.expires.root) / 4) {
      log.warn(
        "root expires at {expires}: sign a new root version (edged repo rotate --role root)",
        {
          expires: this.#root.signed.expires,
        },
      );
    }
  }

  /**
   * Replaces the keys of `role` with `count` new ones (threshold unchanged
   * unless given), publishes root version N+1 signed by the old and the new
   * root keys (section 5.3.4 requires both), and re-signs the roles whose
   * keys changed. Old key files move to `keys/retired/`.
   */
  async rotate(role: RoleName, options: { threshold?: number } = {}): Promise<void> {
    const root = this.#root.signed;
    const old = { ...root.roles[role], keyids: [...root.roles[role].keyids] };
    const threshold = options.threshold ?? old.threshold;
    if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > 16) {
      throw new RangeError(`threshold must be an integer from 1 to 16, got ${threshold}`);
    }
    const previousRoot = { ...root.roles.root, keyids: [...root.roles.root.keyids] };
    const dir = role === "root" ? this.#rootKeysDir : this.keysDir;
    const fresh: SigningKey[] = [];
    for (let i = 0; i < threshold; i++) fresh.push(await generateKey(dir, role));
    root.roles[role] = { keyids: fresh.map((k) => k.keyid), threshold };
    for (const k of fresh) root.keys[k.keyid] = k.key;
    const stillUsed = new Set(Object.values(root.roles).flatMap((r) => r.keyids));
    for (const id of old.keyids) if (!stillUsed.has(id)) delete root.keys[id];
    root.version++;
    root.expires = this.#expires("root");
    await this.#signAndWriteRoot([previousRoot]);
    for (const id of old.keyids) if (!stillUsed.has(id)) await retireKey(dir, id);
    // Roles signed by the new keys must be re-signed, and newer versions
    // published, so clients holding the old copies move on (5.3.11).
    if (role !== "root") await this.#publish({ targets: role === "targets" });
  }
}
