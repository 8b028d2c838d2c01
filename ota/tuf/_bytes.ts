/** Hex, base64 and digest helpers shared by the TUF files. */
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Bytes of hex string `hex`; throws `TypeError` on odd length or a non-hex digit. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not a hex string: ${hex.slice(0, 32)}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Incremental hash: the subset of @noble/hashes we use. */
export interface Hasher {
  update(data: Uint8Array): Hasher;
  digest(): Uint8Array;
}

/** Hash algorithms TUF metadata names in `hashes` that this client can check. */
const HASHES: Record<string, () => Hasher> = {
  sha256: () => sha256.create(),
  sha384: () => sha384.create(),
  sha512: () => sha512.create(),
};

/** Creates an incremental hasher for TUF algorithm name `alg`, or undefined if unsupported. */
export function createHasher(alg: string): Hasher | undefined {
  return HASHES[alg]?.();
}

/** Hex SHA-256 of `data`. */
export function sha256Hex(data: Uint8Array): string {
  return toHex(sha256(data));
}
