/**
 * TUF role metadata (specification section 4): the types of the four
 * top-level roles and delegated targets, strict parsing of a downloaded
 * file, and threshold signature verification.
 *
 * Fields this client does not know are kept as they are: they are part of
 * the signed bytes ("Implementers who encounter undefined attribute-value
 * pairs ... must include the data when calculating hashes or verifying
 * signatures", section 4).
 *
 * @module
 */
import { canonicalBytes } from "./canonical_json.ts";
import { fromHex } from "./_bytes.ts";
import {
  BadVersionError,
  ExpiredMetadataError,
  FormatError,
  UnsignedMetadataError,
} from "./errors.ts";
import { type Key, verifySignature } from "./keys.ts";

/** The specification version this client implements (major must match, section 4.1). */
export const SPEC_VERSION = "1.0.31";

/** One entry of `signatures` (section 4.1). */
export interface Signature {
  keyid: string;
  sig: string;
}

/** Keys and threshold of one role (section 4.3 `roles`). */
export interface RoleKeys {
  keyids: string[];
  threshold: number;
  [field: string]: unknown;
}

/** Fields common to every role's `signed` (section 4.1). */
export interface Signed {
  _type: string;
  spec_version: string;
  version: number;
  expires: string;
  [field: string]: unknown;
}

/** root.json `signed` (section 4.3). */
export interface Root extends Signed {
  _type: "root";
  consistent_snapshot?: boolean;
  keys: Record<string, Key>;
  roles: Record<"root" | "targets" | "snapshot" | "timestamp", RoleKeys>;
}

/** METAFILES entry in timestamp and snapshot (section 4.4, 4.6). */
export interface MetaFile {
  version: number;
  length?: number;
  hashes?: Record<string, string>;
  [field: string]: unknown;
}

/** timestamp.json `signed` (section 4.6). */
export interface Timestamp extends Signed {
  _type: "timestamp";
  meta: { "snapshot.json": MetaFile };
}

/** snapshot.json `signed` (section 4.4). */
export interface Snapshot extends Signed {
  _type: "snapshot";
  meta: Record<string, MetaFile>;
}

/**
 * TARGETS entry (section 4.5). `custom` is free-form: edged puts
 * `{"kind":"release"|"module"|"delta", ...}` there.
 */
export interface TargetFile {
  length: number;
  hashes: Record<string, string>;
  custom?: Record<string, unknown>;
  [field: string]: unknown;
}

/** A delegation from a targets role to another (section 4.5 `delegations.roles`). */
export interface DelegatedRole extends RoleKeys {
  name: string;
  terminating: boolean;
  paths?: string[];
  path_hash_prefixes?: string[];
}

/** `delegations` of a targets role (section 4.5). */
export interface Delegations {
  keys: Record<string, Key>;
  roles: DelegatedRole[];
  [field: string]: unknown;
}

/** targets.json (top-level or delegated) `signed` (section 4.5). */
export interface Targets extends Signed {
  _type: "targets";
  targets: Record<string, TargetFile>;
  delegations?: Delegations;
}

/** Any of the role types by `_type`. */
export interface RoleTypes {
  root: Root;
  timestamp: Timestamp;
  snapshot: Snapshot;
  targets: Targets;
}

/** A parsed metadata file: the signed part, its signatures and the exact bytes received. */
export interface Metadata<T extends Signed = Signed> {
  signed: T;
  signatures: Signature[];
  /** Canonical JSON of `signed`: what the signatures cover. */
  signedBytes: Uint8Array;
  /** The file as received; stored as is so hashes of local copies keep matching. */
  raw: Uint8Array;
}

const EXPIRES_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function need(cond: boolean, role: string, rule: string): asserts cond {
  if (!cond) throw new FormatError(`${role}: ${rule}`);
}

function checkVersion(v: unknown, role: string, field: string): void {
  need(Number.isSafeInteger(v) && (v as number) >= 1, role, `${field} must be an integer >= 1`);
}

function checkRoleKeys(r: unknown, role: string, where: string): void {
  need(isObject(r), role, `${where} must be an object`);
  need(
    Array.isArray(r.keyids) && r.keyids.every((k) => typeof k === "string"),
    role,
    `${where}.keyids must be a list of strings`,
  );
  need(new Set(r.keyids).size === r.keyids.length, role, `${where}.keyids has duplicates`);
  need(
    Number.isSafeInteger(r.threshold) && (r.threshold as number) >= 1,
    role,
    `${where}.threshold must be an integer >= 1`,
  );
}

function checkKeys(keys: unknown, role: string): void {
  need(isObject(keys), role, "keys must be an object");
  for (const [id, k] of Object.entries(keys)) {
    need(
      isObject(k) && typeof k.keytype === "string" && typeof k.scheme === "string" &&
        isObject(k.keyval) && typeof k.keyval.public === "string",
      role,
      `key ${id} must have keytype, scheme and keyval.public`,
    );
  }
}

function checkMetaFile(m: unknown, role: string, name: string): void {
  need(isObject(m), role, `meta ${name} must be an object`);
  checkVersion(m.version, role, `meta ${name}.version`);
  if (m.length !== undefined) {
    need(
      Number.isSafeInteger(m.length) && (m.length as number) >= 0,
      role,
      `meta ${name}.length must be an integer >= 0`,
    );
  }
  if (m.hashes !== undefined) checkHashes(m.hashes, role, `meta ${name}`);
}

function checkHashes(h: unknown, role: string, where: string): void {
  need(
    isObject(h) && Object.keys(h).length > 0 &&
      Object.values(h).every((v) => typeof v === "string"),
    role,
    `${where}.hashes must be a non-empty object of strings`,
  );
}

function checkDelegations(d: unknown, role: string): void {
  need(isObject(d), role, "delegations must be an object");
  checkKeys(d.keys, role);
  need(d.succinct_roles === undefined, role, "succinct_roles (TAP 15) is not supported");
  need(Array.isArray(d.roles), role, "delegations.roles must be a list");
  const names = new Set<string>();
  for (const r of d.roles as unknown[]) {
    checkRoleKeys(r, role, "delegated role");
    const dr = r as Record<string, unknown>;
    need(typeof dr.name === "string", role, "delegated role name must be a string");
    need(!names.has(dr.name as string), role, `delegated role ${dr.name} listed twice`);
    names.add(dr.name as string);
    need(
      ["root", "timestamp", "snapshot", "targets"].indexOf(dr.name as string) < 0,
      role,
      `delegated role must not be named ${dr.name}`,
    );
    need(typeof dr.terminating === "boolean", role, "delegated role terminating must be boolean");
    const hasPaths = dr.paths !== undefined;
    const hasPrefixes = dr.path_hash_prefixes !== undefined;
    need(hasPaths !== hasPrefixes, role, "exactly one of paths, path_hash_prefixes is required");
    const list = (hasPaths ? dr.paths : dr.path_hash_prefixes) as unknown;
    need(
      Array.isArray(list) && list.every((p) => typeof p === "string"),
      role,
      "paths / path_hash_prefixes must be a list of strings",
    );
  }
}

function checkSigned(s: Record<string, unknown>, type: keyof RoleTypes): void {
  need(s._type === type, type, `_type must be "${type}", got ${JSON.stringify(s._type)}`);
  need(typeof s.spec_version === "string", type, "spec_version must be a string");
  const parts = (s.spec_version as string).split(".");
  need(
    (parts.length === 2 || parts.length === 3) && parts.every((p) => /^\d+$/.test(p)),
    type,
    `spec_version ${s.spec_version} is not "major.minor[.patch]"`,
  );
  need(
    parts[0] === SPEC_VERSION.split(".")[0],
    type,
    `unsupported spec_version ${s.spec_version}`,
  );
  checkVersion(s.version, type, "version");
  need(
    typeof s.expires === "string" && EXPIRES_RE.test(s.expires) &&
      !Number.isNaN(Date.parse(s.expires)),
    type,
    `expires must be "YYYY-MM-DDTHH:MM:SSZ", got ${JSON.stringify(s.expires)}`,
  );
  switch (type) {
    case "root": {
      need(
        s.consistent_snapshot === undefined || typeof s.consistent_snapshot === "boolean",
        type,
        "consistent_snapshot must be boolean",
      );
      checkKeys(s.keys, type);
      need(isObject(s.roles), type, "roles must be an object");
      for (const r of ["root", "timestamp", "snapshot", "targets"]) {
        checkRoleKeys((s.roles as Record<string, unknown>)[r], type, `roles.${r}`);
      }
      break;
    }
    case "timestamp": {
      need(isObject(s.meta), type, "meta must be an object");
      const keys = Object.keys(s.meta);
      need(
        keys.length === 1 && keys[0] === "snapshot.json",
        type,
        "meta must hold exactly snapshot.json",
      );
      checkMetaFile((s.meta as Record<string, unknown>)["snapshot.json"], type, "snapshot.json");
      break;
    }
    case "snapshot": {
      need(isObject(s.meta), type, "meta must be an object");
      for (const [name, m] of Object.entries(s.meta)) checkMetaFile(m, type, name);
      break;
    }
    case "targets": {
      need(isObject(s.targets), type, "targets must be an object");
      for (const [path, t] of Object.entries(s.targets)) {
        need(isObject(t), type, `target ${path} must be an object`);
        need(
          Number.isSafeInteger(t.length) && (t.length as number) >= 0,
          type,
          `target ${path} length must be an integer >= 0`,
        );
        checkHashes(t.hashes, type, `target ${path}`);
        need(
          t.custom === undefined || isObject(t.custom),
          type,
          `target ${path} custom must be an object`,
        );
      }
      if (s.delegations !== undefined) checkDelegations(s.delegations, type);
      break;
    }
  }
}

/**
 * Parses `raw` as metadata of role type `type`, checking the format of
 * section 4 (including `_type`, so a snapshot cannot pose as a timestamp).
 * Signatures are not checked here: see {@link verifyDelegate}.
 */
export function parseMetadata<K extends keyof RoleTypes>(
  raw: Uint8Array,
  type: K,
): Metadata<RoleTypes[K]> {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch (cause) {
    throw new FormatError(`${type}: not valid UTF-8 JSON`, { cause });
  }
  need(isObject(doc), type, "metadata must be a JSON object");
  need(isObject(doc.signed), type, "signed must be an object");
  need(Array.isArray(doc.signatures), type, "signatures must be a list");
  const seen = new Set<string>();
  for (const s of doc.signatures as unknown[]) {
    need(
      isObject(s) && typeof s.keyid === "string" && typeof s.sig === "string",
      type,
      "each signature needs string keyid and sig",
    );
    // Section 4.1: "the keyid MUST be unique in the signatures array".
    need(!seen.has(s.keyid as string), type, `two signatures with keyid ${s.keyid}`);
    seen.add(s.keyid as string);
  }
  checkSigned(doc.signed, type);
  return {
    signed: doc.signed as unknown as RoleTypes[K],
    signatures: doc.signatures as Signature[],
    signedBytes: canonicalBytes(doc.signed),
    raw,
  };
}

/**
 * Checks that `md` carries at least `role.threshold` valid signatures from
 * distinct keys among `role.keyids` (section 5.3.4 / 5.4.2 / 5.5.3 / 5.6.3).
 * Throws {@link UnsignedMetadataError} naming the role and the count.
 */
export async function verifyDelegate(
  roleName: string,
  role: RoleKeys,
  keys: Record<string, Key>,
  md: Metadata,
): Promise<void> {
  const sigs = new Map(md.signatures.map((s) => [s.keyid, s.sig]));
  const valid = new Set<string>();
  for (const keyid of new Set(role.keyids)) {
    const key = keys[keyid];
    const sig = sigs.get(keyid);
    if (!key || sig === undefined) continue;
    let sigBytes: Uint8Array;
    try {
      sigBytes = fromHex(sig);
    } catch {
      continue;
    }
    if (await verifySignature(key, sigBytes, md.signedBytes)) valid.add(keyid);
  }
  if (valid.size < role.threshold) {
    throw new UnsignedMetadataError(
      `${roleName} was signed by ${valid.size}/${role.threshold} required keys`,
    );
  }
}

/** Throws {@link ExpiredMetadataError} when `signed.expires` is not after `now` (freeze attack). */
export function checkNotExpired(roleName: string, signed: Signed, now: Date): void {
  if (Date.parse(signed.expires) <= now.getTime()) {
    throw new ExpiredMetadataError(`${roleName} expired at ${signed.expires}`);
  }
}

/** Throws {@link BadVersionError} unless `actual === expected`. */
export function checkVersionIs(roleName: string, actual: number, expected: number): void {
  if (actual !== expected) {
    throw new BadVersionError(`${roleName} version ${actual} is not the expected ${expected}`);
  }
}
