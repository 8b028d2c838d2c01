/** Digest helpers shared by the TUF files (synchronous: key ids and hashed bin names). */
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { toHex } from "../../lib/mod.ts";

export { fromHex, toHex } from "../../lib/mod.ts";

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

/** Hex SHA-256 of `data`, synchronously. */
export function sha256HexSync(data: Uint8Array): string {
  return toHex(sha256(data));
}
