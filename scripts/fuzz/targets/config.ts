/**
 * Fuzz target `config`: configuration through `loadConfig`
 * (runtime/config.ts), as a TOML file or, for inputs starting with
 * `#!env`, as `EDGED_*` environment lines. Refusals must be `ConfigError`s
 * naming the setting; an accepted configuration must pass the schema again
 * (oracle: what the loader returns is what the runtime may rely on).
 *
 * @module
 */
import { ConfigError, loadConfig } from "../../../runtime/mod.ts";
import { configSchema, settings } from "../../../runtime/schema.ts";
import { weirdValue } from "../_mutate.ts";
import type { Rng } from "../_prng.ts";
import { type FuzzTarget, type Harness, OracleViolation } from "../_target.ts";

const ENV_MARK = "#!env\n";

const SEEDS = [
  `data_dir = "./data"\nlisten = "127.0.0.1:8080"\nlog_level = "info"\n\n[http]\nmax_batch = 1000\n`,
  `api_token = "0123456789abcdef0123"\ndevice_id = "pump-7"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n` +
  `subscribe = ["a/#", "b/+/c"]\nprotocol = "3.1.1"\n[update]\nurl = "http://127.0.0.1:9/"\n` +
  `rate_limit_bytes_per_s = 1000\n[modules]\npreload = ["/x"]\nqueue_capacity = 10\n`,
  `listen = "[::1]:0"\nshutdown_timeout_s = 0.5\n[store]\nmax_pending_readings = 5\n`,
  `${ENV_MARK}EDGED_LISTEN=127.0.0.1:0\nEDGED_HTTP_MAX_BATCH=10\nEDGED_MQTT_FORWARD_READINGS=off\n` +
  `EDGED_MQTT_SUBSCRIBE=a/#, b\n`,
  "",
];

/** A TOML literal for `v` (JSON strings are TOML basic strings for the characters we make). */
function toml(v: unknown, depth = 0): string {
  if (depth > 50) return "0";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : rng0(v);
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map((x) => toml(x, depth + 1)).join(", ")}]`;
  if (v && typeof v === "object") {
    return `{ ${
      Object.entries(v).map(([k, x]) => `${JSON.stringify(k)} = ${toml(x, depth + 1)}`).join(", ")
    } }`;
  }
  return '""';
}
function rng0(v: number): string {
  return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

function generate(rng: Rng): string {
  const all = settings();
  const picks = Array.from({ length: rng.int(1, 6) }, () => rng.pick(all));
  if (rng.chance(0.3)) {
    return ENV_MARK + picks.map((s) => {
      const v = weirdValue(rng);
      return `${rng.chance(0.95) ? s.env : "EDGED_NOPE"}=${
        typeof v === "string" ? v : JSON.stringify(v)
      }`;
    }).join("\n");
  }
  const top: string[] = [];
  const sections = new Map<string, string[]>();
  for (const s of picks) {
    const value = rng.chance(0.4)
      ? weirdValue(rng)
      : s.kind === "number"
      ? rng.pick([0, 1, -1, 0.5, 65535, 65536, 1e10, 2 ** 53])
      : s.kind === "boolean"
      ? rng.chance(0.5)
      : s.kind === "array"
      ? ["a/#", "+"]
      : rng.pick(["", "x", "127.0.0.1:99999", "mqtt://h:1", "info", "5", "[::1]:80"]);
    const key = rng.chance(0.05) ? s.path[s.path.length - 1] + "x" : s.path[s.path.length - 1];
    const line = `${key} = ${toml(value)}`;
    if (s.path.length === 1) top.push(line);
    else sections.set(s.path[0], [...(sections.get(s.path[0]) ?? []), line]);
  }
  return [...top, ...[...sections].map(([k, lines]) => `[${k}]\n${lines.join("\n")}`)].join("\n");
}

async function setup(): Promise<Harness> {
  const dir = await Deno.makeTempDir({ prefix: "fuzz-config-" });
  const file = `${dir}/edged.toml`;
  const enc = new TextEncoder();
  return {
    seeds: SEEDS.map((s) => enc.encode(s)),
    generate: (rng) => enc.encode(generate(rng)),
    async run(input) {
      const text = new TextDecoder().decode(input);
      let cfg;
      if (text.startsWith(ENV_MARK)) {
        const env: Record<string, string> = {};
        for (const line of text.slice(ENV_MARK.length).split("\n")) {
          const eq = line.indexOf("=");
          if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
        }
        cfg = await loadConfig({}, env);
      } else {
        await Deno.writeFile(file, input);
        cfg = await loadConfig({ config: file }, {});
      }
      const again = configSchema.safeParse(cfg);
      if (!again.success) {
        throw new OracleViolation(
          `loadConfig returned a configuration its schema refuses: ${again.error.message}`,
        );
      }
      return "accepted";
    },
    classify: (err) => err instanceof ConfigError ? "ConfigError" : undefined,
    close: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Configuration files and environments through loadConfig. */
export const configTarget: FuzzTarget = {
  name: "config",
  description: "TOML configuration files and EDGED_* environments (runtime/config.ts loadConfig)",
  setup,
};
