/**
 * Public keys in TUF metadata and signature verification (specification
 * section 4.2 "KEYS" and securesystemslib's key formats):
 *
 * - `ed25519` / `ed25519`: `keyval.public` is the 32-byte key in hex;
 * - `ecdsa` or `ecdsa-sha2-nistp256` / `ecdsa-sha2-nistp256` (and nistp384):
 *   PEM SubjectPublicKeyInfo, DER-encoded signatures;
 * - `rsa` / `rsassa-pss-sha256` (384, 512): PEM SubjectPublicKeyInfo.
 *   securesystemslib signs with salt length = digest length and verifies
 *   with automatic salt detection; we try the former through WebCrypto and
 *   fall back to an EMSA-PSS check that recovers the salt (RFC 8017 9.1.2).
 *
 * @module
 */
import { canonicalBytes } from "./canonical_json.ts";
import { fromHex, sha256HexSync } from "./_bytes.ts";
import { FormatError } from "./errors.ts";
import { rsaPssVerifyAnySalt } from "./_rsa_pss.ts";

/** A public key as it appears in root or delegations `keys` (section 4.2). */
export interface Key {
  keytype: string;
  scheme: string;
  keyval: { public: string; [field: string]: unknown };
  [field: string]: unknown;
}

/** The key ID: hex SHA-256 of the key's canonical JSON (section 4.2). */
export function keyId(key: Key): string {
  return sha256HexSync(canonicalBytes(key));
}

interface Scheme {
  import(key: Key): Promise<CryptoKey>;
  verify(ck: CryptoKey, key: Key, sig: Uint8Array, data: Uint8Array): Promise<boolean>;
}

/** Bytes of the first PEM block in `pem`. */
export function pemToDer(pem: string): Uint8Array {
  const m = /-----BEGIN [A-Z ]+-----([\s\S]*?)-----END [A-Z ]+-----/.exec(pem);
  if (!m) throw new FormatError("public key is not PEM");
  return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

/** Converts a DER ECDSA-Sig-Value (SEQUENCE of r, s) into the fixed-width r||s WebCrypto wants. */
function ecdsaDerToRaw(sig: Uint8Array, size: number): Uint8Array {
  const fail = () => new FormatError("ECDSA signature is not DER");
  let i = 0;
  if (sig[i++] !== 0x30) throw fail();
  let len = sig[i++];
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let k = 0; k < n; k++) len = (len << 8) | sig[i++];
  }
  if (i + len !== sig.length) throw fail();
  const out = new Uint8Array(2 * size);
  for (let part = 0; part < 2; part++) {
    if (sig[i++] !== 0x02) throw fail();
    const l = sig[i++];
    let v = sig.subarray(i, i + l);
    i += l;
    while (v.length > 0 && v[0] === 0) v = v.subarray(1);
    if (v.length > size) throw fail();
    out.set(v, part * size + size - v.length);
  }
  if (i !== sig.length) throw fail();
  return out;
}

function ecdsa(curve: "P-256" | "P-384", hash: string, size: number): Scheme {
  return {
    import: (key) =>
      crypto.subtle.importKey(
        "spki",
        pemToDer(key.keyval.public) as Uint8Array<ArrayBuffer>,
        { name: "ECDSA", namedCurve: curve },
        false,
        ["verify"],
      ),
    verify: (ck, _key, sig, data) =>
      crypto.subtle.verify(
        { name: "ECDSA", hash },
        ck,
        ecdsaDerToRaw(sig, size) as Uint8Array<ArrayBuffer>,
        data as Uint8Array<ArrayBuffer>,
      ),
  };
}

function rsaPss(hash: "SHA-256" | "SHA-384" | "SHA-512", hashLen: number): Scheme {
  return {
    import: (key) =>
      crypto.subtle.importKey(
        "spki",
        pemToDer(key.keyval.public) as Uint8Array<ArrayBuffer>,
        { name: "RSA-PSS", hash },
        false,
        ["verify"],
      ),
    verify: async (ck, key, sig, data) => {
      const ok = await crypto.subtle.verify(
        { name: "RSA-PSS", saltLength: hashLen },
        ck,
        sig as Uint8Array<ArrayBuffer>,
        data as Uint8Array<ArrayBuffer>,
      );
      return ok || await rsaPssVerifyAnySalt(pemToDer(key.keyval.public), hash, sig, data);
    },
  };
}

const ed25519: Scheme = {
  import: (key) => {
    const raw = fromHex(key.keyval.public);
    if (raw.length !== 32) throw new FormatError(`ed25519 public key must be 32 bytes`);
    return crypto.subtle.importKey(
      "raw",
      raw as Uint8Array<ArrayBuffer>,
      { name: "Ed25519" },
      false,
      [
        "verify",
      ],
    );
  },
  verify: (ck, _key, sig, data) =>
    crypto.subtle.verify(
      { name: "Ed25519" },
      ck,
      sig as Uint8Array<ArrayBuffer>,
      data as Uint8Array<ArrayBuffer>,
    ),
};

function schemeFor(key: Key): Scheme | undefined {
  switch (`${key.keytype}/${key.scheme}`) {
    case "ed25519/ed25519":
      return ed25519;
    case "ecdsa/ecdsa-sha2-nistp256":
    case "ecdsa-sha2-nistp256/ecdsa-sha2-nistp256":
      return ecdsa("P-256", "SHA-256", 32);
    case "ecdsa/ecdsa-sha2-nistp384":
    case "ecdsa-sha2-nistp384/ecdsa-sha2-nistp384":
      return ecdsa("P-384", "SHA-384", 48);
    case "rsa/rsassa-pss-sha256":
      return rsaPss("SHA-256", 32);
    case "rsa/rsassa-pss-sha384":
      return rsaPss("SHA-384", 48);
    case "rsa/rsassa-pss-sha512":
      return rsaPss("SHA-512", 64);
  }
  return undefined;
}

const imported = new WeakMap<Key, Promise<CryptoKey>>();

/**
 * Verifies signature `sig` (raw bytes) by `key` over `data`. Returns false
 * for a wrong signature, an unsupported key type or a malformed key: a key
 * that cannot verify simply does not count towards the threshold.
 */
export async function verifySignature(
  key: Key,
  sig: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const scheme = schemeFor(key);
  if (!scheme || typeof key.keyval?.public !== "string") return false;
  try {
    let ck = imported.get(key);
    if (!ck) {
      ck = scheme.import(key);
      imported.set(key, ck);
    }
    return await scheme.verify(await ck, key, sig, data);
  } catch {
    return false;
  }
}
