/**
 * The API bearer token: configured, or generated on first start and kept in
 * the data directory with mode 0600.
 *
 * @module
 */
import { toHex, writeFileAtomic } from "../lib/mod.ts";
import { ConfigError } from "./config.ts";
import { TOKEN_RE } from "./config_rules.ts";

/** File name of the stored token inside the data directory. */
export const TOKEN_FILE = "api-token";

/**
 * Returns the token to require on /api/v1/: `configured` when given, else the
 * stored one, else a new random one written atomically with mode 0600.
 * `generated` tells the caller to print it once.
 */
export async function ensureApiToken(
  dataDir: string,
  configured?: string,
): Promise<{ token: string; generated: boolean; path: string }> {
  const path = `${dataDir}/${TOKEN_FILE}`;
  if (configured) return { token: configured, generated: false, path };
  try {
    const stored = (await Deno.readTextFile(path)).trim();
    if (stored.length >= 16) {
      if (!TOKEN_RE.test(stored)) {
        // No client could ever send it: refuse rather than answer every request 401.
        throw new ConfigError(
          `${path} holds a token with spaces or control characters; fix it or delete the file`,
        );
      }
      return { token: stored, generated: false, path };
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = toHex(bytes);
  await writeFileAtomic(path, new TextEncoder().encode(token + "\n"), { mode: 0o600 });
  return { token, generated: true, path };
}

/**
 * Compares two secrets in time that depends only on `expected`'s length, so a
 * caller cannot learn the token byte by byte from response times.
 */
export function constantTimeEqual(given: Uint8Array, expected: Uint8Array): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ (given[i] ?? 0);
  return diff === 0;
}
