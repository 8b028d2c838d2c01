/**
 * The plain rules (runtime/config_rules.ts) against the zod schema they are
 * generated from: the committed table is the schema's, the environment
 * variables are the schema's, and on thousands of generated configurations
 * the rules pass one only where the schema does, to the same result.
 */
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  CONFIG_RULES,
  type ConfigRule,
  configRules,
  configSchema,
  parseByRules,
  settings,
} from "../../runtime/schema.ts";
import { loadConfig } from "../../runtime/mod.ts";

Deno.test("runtime/_config_rules_table.ts is the schema's (run `deno task config-docs`)", () => {
  assert.deepEqual(CONFIG_RULES, configRules());
});

Deno.test("the rules name the schema's environment variables, kinds and order", () => {
  const fromRules = CONFIG_RULES.filter((r) => r.env !== undefined)
    .map((r) => ({ path: r.path, env: r.env, kind: r.type }));
  const fromSchema = settings().map((s) => ({ path: s.path, env: s.env, kind: s.kind }));
  assert.deepEqual(fromRules, fromSchema);
});

/** Mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = [
  "",
  "a",
  "edged-1",
  "Edge_01.x",
  "-bad",
  "abc def",
  "é",
  "127.0.0.1:8080",
  "127.0.0.1:0",
  "[::1]:80",
  "host:65536",
  "host:",
  "mqtt://broker:1883",
  "wss://b/x",
  "http://repo",
  "https://repo/x",
  "ftp://x",
  "ping",
  "module-remove",
  "Bad Command",
  "x86_64-unknown-linux-gnu",
  "/var/lib/edged",
  "0123456789abcdef",
  "0123456789abcdef\u0001",
  "x".repeat(129),
  "x".repeat(600),
  "sensors/#",
  "info",
  "debug",
  "json",
  "5",
  "true",
  "refuse-new",
  "drop-oldest",
];

function sample(rule: ConfigRule, rnd: () => number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const odd = [null, true, 0, -1, 1.5, NaN, Infinity, 2n ** 70n, [], {}, new Date(0), "x"];
  if (rnd() < 0.15) return pick(odd);
  switch (rule.type) {
    case "number": {
      const min = rule.min ?? -10, max = rule.max ?? 1e6;
      return pick([min, max, min - 1, max + 1, min + 0.5, Math.round((min + max) / 2), 0, 1e300]);
    }
    case "boolean":
      return pick([true, false, "true", 1]);
    case "enum":
      return pick([...(rule.options ?? []), "nope", ""]);
    case "array":
      return Array.from({ length: pick([0, 1, 2, 3, 70]) }, () => pick(STRINGS));
    case "file-only":
      return pick([{}, { modbus: [] }, { modbus: "x" }]);
    default:
      return pick(STRINGS);
  }
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (typeof cur[key] !== "object" || cur[key] === null) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]] = value;
}

Deno.test("the rules pass a configuration only where the schema does, with the same result", () => {
  const rnd = random(20261207);
  let passed = 0;
  for (let i = 0; i < 4000; i++) {
    const raw: Record<string, unknown> = {};
    const n = Math.floor(rnd() * 6);
    for (let k = 0; k < n; k++) {
      const rule = CONFIG_RULES[Math.floor(rnd() * CONFIG_RULES.length)];
      setPath(raw, rule.path, sample(rule, rnd));
    }
    const r = rnd();
    if (r < 0.03) raw.unknown_setting = 1;
    else if (r < 0.06) raw.http = 5;
    else if (r < 0.09) setPath(raw, ["mqtt", "nope"], 1);
    const snapshot = structuredClone(raw);
    const fast = parseByRules(raw, CONFIG_RULES);
    const zod = configSchema.safeParse(raw);
    assert.deepEqual(raw, snapshot, "neither changes its input");
    if (fast === undefined) continue;
    passed++;
    assert.ok(zod.success, `rules passed what the schema refuses: ${JSON.stringify(snapshot)}`);
    assert.ok(
      isDeepStrictEqual(fast, zod.data) && JSON.stringify(fast) === JSON.stringify(zod.data),
      `different results for ${JSON.stringify(snapshot)}`,
    );
  }
  // Most valid configurations take the plain path; a generator that never
  // reached it would prove nothing.
  assert.ok(passed > 400, `only ${passed} configurations passed the rules`);
});

Deno.test("the configurations edged starts with pass the rules, as the schema reads them", async () => {
  const raws: Record<string, unknown>[] = [
    {},
    { data_dir: "/tmp/x", listen: "127.0.0.1:0", api_token: "test-token-0123456789abcdef" },
    { log_format: "json", mqtt: { url: "mqtt://b:1883", commands: { allow: ["ping"] } } },
    { modules: { preload: ["examples/modules/threshold-alert-c"] }, nn: { memory_bytes: 1 << 26 } },
  ];
  for (const raw of raws) {
    const fast = parseByRules(raw, CONFIG_RULES);
    assert.notEqual(fast, undefined, JSON.stringify(raw));
    assert.deepEqual(fast, configSchema.parse(raw));
  }
  // And through loadConfig, the file and the environment both.
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  try {
    await Deno.writeTextFile(file, `log_level = "debug"\n[http]\nmax_batch = 10\n`);
    const cfg = await loadConfig({ config: file, listen: "127.0.0.1:0" }, {
      EDGED_MQTT_SUBSCRIBE: "a/#, b",
    });
    const expected = configSchema.parse({
      log_level: "debug",
      http: { max_batch: 10 },
      listen: "127.0.0.1:0",
      mqtt: { subscribe: ["a/#", "b"] },
    });
    assert.deepEqual({ ...cfg, device_id: undefined }, { ...expected, device_id: undefined });
  } finally {
    await Deno.remove(file);
  }
});
