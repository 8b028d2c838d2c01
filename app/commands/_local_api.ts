/**
 * What the commands that drive a device's own edged share (`edged update`,
 * `edged model`): the options naming it (`--config`, `--data-dir`, `--url`,
 * `--token`), its configuration, a call to its API, and the data directory's
 * locks held while a command changes it with edged stopped.
 *
 * @module
 */
import type { Command } from "commander";
import { join, resolve } from "node:path";
import {
  type Config,
  ConfigError,
  DataDirLockedError,
  LAUNCHER_LOCK,
  loadConfig,
  lockDataDir,
  privateUmask,
} from "../../runtime/mod.ts";
import { EXIT } from "../../lib/mod.ts";

/** The options {@linkcode localApiOptions} adds. */
export interface LocalApiOptions {
  config?: string;
  dataDir?: string;
  url?: string;
  token?: string;
}

/** Adds the options that find the device's edged and its data directory. */
export function localApiOptions(cmd: Command): Command {
  return cmd
    .option("--config <file>", "TOML configuration file (also EDGED_CONFIG)")
    .option("--data-dir <dir>", "data directory (also EDGED_DATA_DIR)")
    .option("--url <url>", "API base URL of the running edged (default from listen)")
    .option("--token <token>", "API token (default: api_token, or DATA_DIR/api-token)");
}

/** The configuration edged would run with; a bad one exits 2 naming it. */
export async function commandConfig(command: string, o: LocalApiOptions): Promise<Config> {
  try {
    return await loadConfig({ config: o.config, dataDir: o.dataDir });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`${command}: ${err.message}`);
      Deno.exit(EXIT.USAGE);
    }
    throw err;
  }
}

/** The API's base URL: `--url`, else the configured listen address. */
export function apiBase(o: LocalApiOptions, cfg: Config): string {
  return (o.url ?? `http://${cfg.listen.replace(/^0\.0\.0\.0:/, "127.0.0.1:")}`)
    .replace(/\/$/, "");
}

/** An API answer: its status and its JSON body (`null` for 204). */
export interface ApiAnswer {
  status: number;
  body: unknown;
}

/**
 * Calls `/api/v1{path}` of the device's edged with its token (`--token`,
 * else `api_token`, else `DATA_DIR/api-token`). Rejects with the fetch
 * error (a `TypeError`) when edged does not answer.
 */
export async function callLocalApi(
  o: LocalApiOptions,
  cfg: Config,
  method: string,
  path: string,
  body?: FormData,
): Promise<ApiAnswer> {
  let token = o.token ?? cfg.api_token;
  if (!token) token = (await Deno.readTextFile(join(resolve(cfg.data_dir), "api-token"))).trim();
  const res = await fetch(`${apiBase(o, cfg)}/api/v1${path}`, {
    method,
    body,
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

/** Exits 1 saying edged did not answer at its URL and what works without it. */
export function unreachable(
  command: string,
  o: LocalApiOptions,
  cfg: Config,
  err: unknown,
  hint: string,
): never {
  console.error(
    `${command}: cannot reach edged at ${apiBase(o, cfg)}: ${(err as Error).message} (${hint})`,
  );
  Deno.exit(EXIT.FAILURE);
}

/**
 * Holds the data directory's locks (runtime/lock.ts) while `fn` changes it
 * without a running edged: a running edged or launcher would otherwise race
 * it. Exits 2 naming the holder when one runs (`hint` says what to do then).
 * What `fn` creates is private to edged's user, as under `edged run` (umask
 * 077).
 */
export async function whileStopped<T>(
  command: string,
  dataDir: string,
  fn: () => Promise<T>,
  hint?: string,
): Promise<T> {
  privateUmask();
  const locks = [];
  try {
    locks.push(await lockDataDir(dataDir));
    locks.push(await lockDataDir(dataDir, { name: LAUNCHER_LOCK, holder: "an edged launcher" }));
  } catch (err) {
    locks.forEach((l) => l.release());
    if (!(err instanceof DataDirLockedError)) throw err;
    console.error(`${command}: ${err.message}${hint ? ` (${hint})` : ""}`);
    Deno.exit(EXIT.USAGE);
  }
  try {
    return await fn();
  } finally {
    locks.forEach((l) => l.release());
  }
}
