/**
 * Length and hash checks of downloaded files against the METAFILES or
 * TARGETS entry describing them (sections 5.5.2, 5.6.2, 5.7.3). Every hash
 * listed must match; an algorithm this client does not know fails the check
 * rather than being skipped.
 *
 * @module
 */
import { createHasher, toHex } from "./_bytes.ts";
import { LengthOrHashMismatchError } from "./errors.ts";

/** What a file is checked against: optional for METAFILES, required for targets. */
export interface LengthAndHashes {
  length?: number;
  hashes?: Record<string, string>;
}

/** Throws {@link LengthOrHashMismatchError} unless `data` matches `info`. */
export function verifyLengthAndHashes(
  name: string,
  data: Uint8Array,
  info: LengthAndHashes,
): void {
  const check = createChecker(name, info);
  check.update(data);
  check.finish();
}

/** Incremental length and hash check for files read in chunks. */
export interface Checker {
  update(chunk: Uint8Array): void;
  /** Throws {@link LengthOrHashMismatchError} on any mismatch. */
  finish(): void;
}

/** Creates an incremental checker of `info` for the file named `name`. */
export function createChecker(name: string, info: LengthAndHashes): Checker {
  const hashers = Object.entries(info.hashes ?? {}).map(([alg, want]) => {
    const hasher = createHasher(alg);
    if (!hasher) {
      throw new LengthOrHashMismatchError(`${name}: unsupported hash algorithm ${alg}`);
    }
    return { alg, want: want.toLowerCase(), hasher };
  });
  let length = 0;
  return {
    update(chunk) {
      length += chunk.length;
      for (const h of hashers) h.hasher.update(chunk);
    },
    finish() {
      if (info.length !== undefined && length !== info.length) {
        throw new LengthOrHashMismatchError(
          `${name}: length ${length} does not match expected ${info.length}`,
        );
      }
      for (const h of hashers) {
        const got = toHex(h.hasher.digest());
        if (got !== h.want) {
          throw new LengthOrHashMismatchError(`${name}: ${h.alg} ${got} does not match ${h.want}`);
        }
      }
    },
  };
}
