/**
 * Ed25519 signing keys of a repository, one JSON file per key, mode 0600.
 * The public half is the TUF key (specification section 4.2, keytype and
 * scheme "ed25519", `keyval.public` in hex); the private half is the
 * 32-byte seed in hex.
 *
 * @module
 */
import { fromHex, toHex } from "../../lib/mod.ts";
import { join } from "node:path";
import { type Key, keyId } from "../tuf/mod.ts";
import { RepoError } from "./errors.ts";

/** A key file's contents. */
interface KeyFile {
  role: string;
  keyid: string;
  key: Key;
  private: string;
}

/** A loaded signing key. */
export interface SigningKey {
  /** The role this key was generated for. */
  role: string;
  keyid: string;
  /** The public key as it goes into root metadata. */
  key: Key;
  /** Signs `data`, returning the raw 64-byte Ed25519 signature. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

function unb64url(s: string): Uint8Array {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

async function fromFile(kf: KeyFile): Promise<SigningKey> {
  const jwk: JsonWebKey = {
    kty: "OKP",
    crv: "Ed25519",
    x: b64url(fromHex(kf.key.keyval.public)),
    d: b64url(fromHex(kf.private)),
  };
  const priv = await crypto.subtle.importKey("jwk", jwk, { name: "Ed25519" }, false, ["sign"]);
  return {
    role: kf.role,
    keyid: kf.keyid,
    key: kf.key,
    sign: async (data) =>
      new Uint8Array(
        await crypto.subtle.sign({ name: "Ed25519" }, priv, data as Uint8Array<ArrayBuffer>),
      ),
  };
}

/** Generates a new Ed25519 key for `role` and writes it to `dir` with mode 0600. */
export async function generateKey(dir: string, role: string): Promise<SigningKey> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", (pair as CryptoKeyPair).privateKey);
  const key: Key = {
    keytype: "ed25519",
    scheme: "ed25519",
    keyval: { public: toHex(unb64url(jwk.x!)) },
  };
  const kf: KeyFile = { role, keyid: keyId(key), key, private: toHex(unb64url(jwk.d!)) };
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${role}-${kf.keyid.slice(0, 16)}.json`);
  await Deno.writeTextFile(path, JSON.stringify(kf, null, 2) + "\n", {
    mode: 0o600,
    createNew: true,
  });
  // The mode given to open is masked by the umask; make sure it is exactly 0600.
  await Deno.chmod(path, 0o600);
  return fromFile(kf);
}

/** Loads every key file in `dir` (missing directory: none). */
export async function loadKeys(dir: string): Promise<SigningKey[]> {
  const keys: SigningKey[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const path = join(dir, e.name);
      let kf: KeyFile;
      try {
        kf = JSON.parse(await Deno.readTextFile(path));
      } catch (cause) {
        throw new RepoError(`key file ${path} is not valid JSON`, { cause });
      }
      if (kf.key?.keytype !== "ed25519" || typeof kf.private !== "string") {
        throw new RepoError(`key file ${path} is not an ed25519 key written by edged repo`);
      }
      keys.push(await fromFile(kf));
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return keys;
}

/** Moves the key file of `keyid` from `dir` into `dir/retired/` (kept for audits, never used again). */
export async function retireKey(dir: string, keyid: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(`-${keyid.slice(0, 16)}.json`)) {
      await Deno.mkdir(join(dir, "retired"), { recursive: true, mode: 0o700 });
      await Deno.rename(join(dir, e.name), join(dir, "retired", e.name));
    }
  }
}
