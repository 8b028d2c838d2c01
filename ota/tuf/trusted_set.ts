/**
 * The set of metadata the client currently trusts, and the rules for
 * replacing each role (specification section 5.3 to 5.6). No I/O here: the
 * client downloads bytes and hands them to these methods in workflow order,
 * so every check of the specification sits in one place and can be read
 * against it line by line.
 *
 * @module
 */
import { BadVersionError, EqualVersionError, FormatError, TufError } from "./errors.ts";
import {
  checkNotExpired,
  checkVersionIs,
  type Metadata,
  parseMetadata,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
  verifyDelegate,
} from "./metadata.ts";
import { verifyLengthAndHashes } from "./verify.ts";

/** Trusted root, timestamp, snapshot and targets roles, updated per the client workflow. */
export class TrustedSet {
  #root: Metadata<Root>;
  #timestamp?: Metadata<Timestamp>;
  #snapshot?: Metadata<Snapshot>;
  #targets = new Map<string, Metadata<Targets>>();
  readonly #now: Date;

  private constructor(root: Metadata<Root>, now: Date) {
    this.#root = root;
    this.#now = now;
  }

  /**
   * Section 5.2: load the trusted root (shipped with the client or stored by
   * an earlier run). It must be signed by a threshold of its own root keys.
   * Its expiry is not checked here: an expired root can still be rotated
   * away from (5.3.10 checks the final one).
   */
  static async create(rootBytes: Uint8Array, now: Date): Promise<TrustedSet> {
    const root = parseMetadata(rootBytes, "root");
    await verifyDelegate("root", root.signed.roles.root, root.signed.keys, root);
    return new TrustedSet(root, now);
  }

  /** The trusted root. */
  get root(): Metadata<Root> {
    return this.#root;
  }
  /** The trusted timestamp, if loaded. */
  get timestamp(): Metadata<Timestamp> | undefined {
    return this.#timestamp;
  }
  /** The trusted snapshot, if loaded. */
  get snapshot(): Metadata<Snapshot> | undefined {
    return this.#snapshot;
  }
  /** A trusted targets role (top-level "targets" or delegated) by name. */
  targets(role: string): Metadata<Targets> | undefined {
    return this.#targets.get(role);
  }

  /**
   * Sections 5.3.4 to 5.3.8: accept root version N+1 if it is signed by a
   * threshold of the trusted root's root keys and of its own, and its
   * version is exactly one more.
   */
  async updateRoot(bytes: Uint8Array): Promise<Metadata<Root>> {
    if (this.#timestamp) throw new TufError("cannot update root after timestamp");
    const next = parseMetadata(bytes, "root");
    // 5.3.4: signed by a threshold of keys of the trusted root ...
    await verifyDelegate("root", this.#root.signed.roles.root, this.#root.signed.keys, next);
    // ... and by a threshold of keys of the new root itself.
    await verifyDelegate("root", next.signed.roles.root, next.signed.keys, next);
    // 5.3.5: version must be exactly trusted + 1 (no rollback, no skipping).
    checkVersionIs("root", next.signed.version, this.#root.signed.version + 1);
    // 5.3.8: the new root is trusted from here on.
    this.#root = next;
    return next;
  }

  /**
   * Section 5.4: accept a timestamp signed by the timestamp keys of the
   * final root, not older than the trusted one and not pointing to an older
   * snapshot. An equal version is reported with {@link EqualVersionError}
   * so the caller keeps the copy it has.
   */
  async updateTimestamp(bytes: Uint8Array): Promise<Metadata<Timestamp>> {
    if (this.#snapshot) throw new TufError("cannot update timestamp after snapshot");
    // 5.3.10: the final root must not be expired (freeze attack).
    checkNotExpired("root", this.#root.signed, this.#now);
    const next = parseMetadata(bytes, "timestamp");
    // 5.4.2: signed by a threshold of timestamp keys from root.
    await verifyDelegate(
      "timestamp",
      this.#root.signed.roles.timestamp,
      this.#root.signed.keys,
      next,
    );
    const trusted = this.#timestamp;
    if (trusted) {
      // 5.4.3.1: no rollback of the timestamp version.
      if (next.signed.version < trusted.signed.version) {
        throw new BadVersionError(
          `timestamp version ${next.signed.version} is older than trusted ${trusted.signed.version}`,
        );
      }
      if (next.signed.version === trusted.signed.version) {
        throw new EqualVersionError(`timestamp version ${next.signed.version} is already trusted`);
      }
      // 5.4.3.2: no rollback of the snapshot version it names.
      const had = trusted.signed.meta["snapshot.json"].version;
      const got = next.signed.meta["snapshot.json"].version;
      if (got < had) {
        throw new BadVersionError(
          `timestamp names snapshot version ${got}, older than trusted ${had}`,
        );
      }
    }
    // Kept even if expired, so it still serves as the rollback reference for
    // the next timestamp; the expiry is the final check (5.4.4).
    this.#timestamp = next;
    checkNotExpired("timestamp", next.signed, this.#now);
    return next;
  }

  /**
   * Section 5.5: accept a snapshot matching the timestamp's length and
   * hashes (skipped for the local copy we wrote ourselves: `trusted`),
   * signed by the snapshot keys, that drops no targets role and rolls none
   * back. Its own version and expiry are checked last (5.5.4, 5.5.6) so an
   * outdated local copy can still serve as the rollback reference.
   */
  async updateSnapshot(bytes: Uint8Array, trusted = false): Promise<Metadata<Snapshot>> {
    if (!this.#timestamp) throw new TufError("cannot update snapshot before timestamp");
    if (this.#targets.size > 0) throw new TufError("cannot update snapshot after targets");
    checkNotExpired("timestamp", this.#timestamp.signed, this.#now);
    const meta = this.#timestamp.signed.meta["snapshot.json"];
    // 5.5.2: length and hashes from timestamp (when the repository lists them).
    if (!trusted) verifyLengthAndHashes("snapshot.json", bytes, meta);
    const next = parseMetadata(bytes, "snapshot");
    // 5.5.3: signed by a threshold of snapshot keys from root.
    await verifyDelegate(
      "snapshot",
      this.#root.signed.roles.snapshot,
      this.#root.signed.keys,
      next,
    );
    const old = this.#snapshot;
    if (old) {
      // 5.5.5: every targets role listed before is still listed, no version goes back.
      for (const [name, info] of Object.entries(old.signed.meta)) {
        const now = next.signed.meta[name];
        if (!now) throw new BadVersionError(`snapshot no longer lists ${name}`);
        if (now.version < info.version) {
          throw new BadVersionError(
            `snapshot lists ${name} version ${now.version}, older than trusted ${info.version}`,
          );
        }
      }
    }
    this.#snapshot = next;
    this.#checkFinalSnapshot();
    return next;
  }

  #checkFinalSnapshot(): void {
    const snapshot = this.#snapshot!;
    // 5.5.6: not expired.
    checkNotExpired("snapshot", snapshot.signed, this.#now);
    // 5.5.4: version equals the one timestamp names.
    checkVersionIs(
      "snapshot",
      snapshot.signed.version,
      this.#timestamp!.signed.meta["snapshot.json"].version,
    );
  }

  /**
   * Section 5.6 (top-level targets) and 5.6.7.2 (delegated roles): accept
   * targets metadata for `role` matching the snapshot's length, hashes and
   * version, signed by the keys `delegator` assigns to it, and not expired.
   * The delegator is given on every call: a role reached through two
   * delegators must satisfy each of them.
   */
  async updateTargets(
    bytes: Uint8Array,
    role: string,
    delegator: string,
  ): Promise<Metadata<Targets>> {
    if (!this.#snapshot) throw new TufError("cannot update targets before snapshot");
    this.#checkFinalSnapshot();
    const meta = this.#snapshot.signed.meta[`${role}.json`];
    if (!meta) throw new FormatError(`snapshot does not list ${role}.json`);
    // 5.6.2: length and hashes from snapshot.
    verifyLengthAndHashes(`${role}.json`, bytes, meta);
    const next = parseMetadata(bytes, "targets");
    // 5.6.3: signed by a threshold of the keys the delegator assigns.
    if (delegator === "root") {
      await verifyDelegate(role, this.#root.signed.roles.targets, this.#root.signed.keys, next);
    } else {
      const parent = this.#targets.get(delegator);
      const delegation = parent?.signed.delegations?.roles.find((r) => r.name === role);
      if (!parent || !delegation) {
        throw new TufError(`${delegator} does not delegate to ${role}`);
      }
      await verifyDelegate(role, delegation, parent.signed.delegations!.keys, next);
    }
    // 5.6.4: the version the snapshot names (no rollback); 5.6.5: not expired.
    checkVersionIs(role, next.signed.version, meta.version);
    checkNotExpired(role, next.signed, this.#now);
    this.#targets.set(role, next);
    return next;
  }
}
