/**
 * Configuration: embedded defaults < TOML file (`--config`) < environment
 * (`EDGED_*`) < command-line flags, validated by one zod schema
 * (`config_schema.ts`). Anything unknown or invalid stops the start with a
 * message naming the setting and where it came from. A configuration that
 * passes the schema's plain rules (`config_rules.ts`, generated from it) is
 * taken without loading zod; any other goes to the schema itself.
 *
 * @module
 */
import { parse as parseToml } from "smol-toml";
import { EdgedError } from "../lib/mod.ts";
import type { Config } from "./config_schema.ts";
import { type ConfigRule, type Leaf, NAME_RE, parseByRules } from "./config_rules.ts";
import { CONFIG_RULES } from "./_config_rules_table.ts";

/** Thrown when configuration is unknown or invalid; the message names the setting. */
export class ConfigError extends EdgedError {
  override readonly code = "invalid_config";
  override readonly status = 400;
}

/** Flags that override everything else. */
export interface ConfigFlags {
  config?: string;
  dataDir?: string;
  listen?: string;
}

/** Environment variables that are not settings but are allowed. */
const OTHER_ENV = new Set(["EDGED_CONFIG"]);

function envValue(name: string, raw: string, kind: Leaf): unknown {
  switch (kind) {
    case "number": {
      const n = raw.trim() === "" ? NaN : Number(raw);
      if (!Number.isFinite(n)) throw new ConfigError(`${name}: expected a number, got '${raw}'`);
      return n;
    }
    case "boolean":
      if (/^(true|1|yes|on)$/i.test(raw)) return true;
      if (/^(false|0|no|off)$/i.test(raw)) return false;
      throw new ConfigError(`${name}: expected true or false, got '${raw}'`);
    case "array":
      return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
    default:
      return raw;
  }
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (typeof cur[key] !== "object" || cur[key] === null || Array.isArray(cur[key])) {
      cur[key] = {};
    }
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]] = value;
}

function defaultDeviceId(): string {
  try {
    const host = Deno.hostname().replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
    if (NAME_RE.test(host)) return host;
  } catch { /* no --allow-sys: fall back */ }
  return "edged";
}

/**
 * `raw` judged by the zod schema, which only a configuration that the plain
 * rules could not pass needs (zod and the schema load then, not before).
 */
async function parseBySchema(
  raw: Record<string, unknown>,
  origin: ReadonlyMap<string, string>,
): Promise<Config> {
  const [{ configSchema }, { issueLines }] = await Promise.all([
    import("./config_schema.ts"),
    import("./_config_issues.ts"),
  ]);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      `invalid configuration:\n  ${issueLines(result.error.issues, raw, origin).join("\n  ")}`,
    );
  }
  return result.data as Config;
}

/**
 * Loads the configuration from the file (if any), the environment and the
 * flags. Throws {@linkcode ConfigError} naming the first bad setting.
 *
 * @example
 * ```ts
 * const cfg = await loadConfig({ listen: "127.0.0.1:0" }, {});
 * ```
 */
export async function loadConfig(
  flags: ConfigFlags,
  env: Record<string, string> = Deno.env.toObject(),
): Promise<Config> {
  const raw: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  const file = flags.config ?? env.EDGED_CONFIG;
  if (file) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      Object.assign(raw, parseToml(text));
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid TOML: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const mark = (obj: Record<string, unknown>, prefix: string[]) => {
      for (const [k, v] of Object.entries(obj)) {
        const p = [...prefix, k];
        if (v && typeof v === "object" && !Array.isArray(v)) {
          mark(v as Record<string, unknown>, p);
        } else if (Array.isArray(v)) {
          v.forEach((item, i) => {
            if (item && typeof item === "object" && !Array.isArray(item)) {
              mark(item as Record<string, unknown>, [...p, String(i)]);
            }
            origin.set([...p, String(i)].join("."), `in ${file}`);
          });
        }
        origin.set(p.join("."), `in ${file}`);
      }
    };
    mark(raw, []);
  }
  const byEnv = new Map(
    CONFIG_RULES.filter((r): r is ConfigRule & { env: string } => r.env !== undefined)
      .map((r) => [r.env, { path: r.path, kind: r.type as Leaf }]),
  );
  for (const [name, value] of Object.entries(env)) {
    // An empty variable counts as unset, as shells and unit files make those easily.
    if (!name.startsWith("EDGED_") || OTHER_ENV.has(name) || value === "") continue;
    const s = byEnv.get(name);
    if (!s) {
      throw new ConfigError(
        `unknown environment setting ${name} (known: ${
          [...byEnv.keys(), ...OTHER_ENV].join(", ")
        })`,
      );
    }
    setPath(raw, s.path, envValue(name, value, s.kind));
    origin.set(s.path.join("."), `from ${name}`);
  }
  if (flags.dataDir !== undefined) {
    raw.data_dir = flags.dataDir;
    origin.set("data_dir", "from --data-dir");
  }
  if (flags.listen !== undefined) {
    raw.listen = flags.listen;
    origin.set("listen", "from --listen");
  }
  const cfg = (parseByRules(raw, CONFIG_RULES) ?? await parseBySchema(raw, origin)) as Config;
  if (!origin.has("modules.max_lag")) {
    cfg.modules.max_lag = Math.min(cfg.modules.max_lag, cfg.store.max_pending_readings);
  }
  if (cfg.modules.max_lag > cfg.store.max_pending_readings) {
    // What the reading log keeps for lagging modules stays within the pending cap.
    const where = origin.get("modules.max_lag") ?? origin.get("store.max_pending_readings");
    throw new ConfigError(
      `invalid configuration:\n  setting 'modules.max_lag'${where ? ` (${where})` : ""}: ` +
        `${cfg.modules.max_lag} is above store.max_pending_readings (${cfg.store.max_pending_readings})`,
    );
  }
  cfg.device_id ??= defaultDeviceId();
  return cfg;
}
