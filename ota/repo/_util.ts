/** Small helpers of the repository tool: durations, expiry stamps, version order. */
import { RepoError } from "./errors.ts";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parses a duration such as "30d", "12h", "1w" into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  if (!m || Number(m[1]) === 0) {
    throw new RangeError(
      `duration must look like 7d, 12h, 2w (a positive number and s|m|h|d|w), got "${text}"`,
    );
  }
  return Number(m[1]) * UNITS[m[2]] * 1000;
}

/** The TUF `expires` stamp (section 4.1: "YYYY-MM-DDTHH:MM:SSZ") `ms` after `now`. */
export function expiresIn(now: Date, ms: number): string {
  return new Date(now.getTime() + ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Throws {@link RepoError} unless `value` is a safe single path segment (letters, digits, `._+-`). */
export function checkSegment(what: string, value: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(value) || value.includes("..")) {
    throw new RepoError(
      `${what} must start with a letter or digit and contain only letters, digits and ._+-, got "${value}"`,
    );
  }
}

/**
 * Runs `fn` holding an exclusive lock on `DIR/.lock` (flock), so a cron
 * `refresh` and a release `add` never build on the same versions. The
 * kernel drops the lock if the process dies.
 */
export async function withRepoLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(`${dir}/.lock`, { read: true, write: true, create: true });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close();
  }
}
