/**
 * Fuzz target `manifest`: module manifests (docs/modules.md, "The ABI (v1)")
 * through `parseManifest`, and accepted ones on through `validateModule`
 * with a real module. Refusals must be `ModuleValidationError`s with
 * reasons; an accepted manifest must respect the hard ceilings (oracle).
 *
 * @module
 */
import { ModuleValidationError } from "../../../sandbox/mod.ts";
import { validateModule } from "../../../sandbox/validate.ts";
import { parseManifest } from "../../../sandbox/manifest.ts";
import { mutateJson, weirdValue } from "../_mutate.ts";
import type { Rng } from "../_prng.ts";
import { reasonKind } from "./_reasons.ts";
import { type FuzzTarget, type Harness, jsonBytes, OracleViolation } from "../_target.ts";

const ROOT = new URL("../../../", import.meta.url);

const FULL = {
  name: "temp-alert",
  version: "1.2.0",
  subscribe: ["sensors/+/temperature"],
  grants: {
    log: true,
    publish: ["alerts/#", "uplink/telemetry/#"],
    sensor: ["/sys/class/hwmon/*/temp*_input"],
    kv: { max_bytes: 65536 },
    clock: true,
    random: true,
    wasi: true,
  },
  limits: {
    memory_bytes: 16777216,
    fuel_per_message: 50000000,
    max_payload_bytes: 65536,
    messages_per_second: 1000,
  },
};

function generate(rng: Rng): Uint8Array {
  const m = mutateJson(rng, FULL) as Record<string, unknown>;
  if (rng.chance(0.3) && m && typeof m === "object" && !Array.isArray(m)) {
    const g = (typeof m.grants === "object" && m.grants ? m.grants : {}) as Record<string, unknown>;
    g[rng.pick(["publish", "sensor"])] = Array.from(
      { length: rng.pick([1, 64, 65]) },
      () => rng.pick(["#", "a/+/b", "a/#/b", "+", "", "/sys/../etc/passwd", "uplink/\u0000"]),
    );
    m.grants = g;
  }
  if (rng.chance(0.1)) return jsonBytes(weirdValue(rng));
  return jsonBytes(m);
}

async function setup(): Promise<Harness> {
  const wasm = await Deno.readFile(new URL("examples/modules/relay-wat/module.wasm", ROOT));
  const relay = JSON.parse(
    await Deno.readTextFile(new URL("examples/modules/relay-wat/manifest.json", ROOT)),
  );
  return {
    seeds: [FULL, relay, { name: "a", version: "0.0.1" }].map(jsonBytes),
    generate,
    async run(input) {
      const m = parseManifest(new TextDecoder().decode(input));
      const l = m.limits;
      if (
        l.memory_bytes > 2 ** 32 || l.fuel_per_message > 1e10 || l.max_payload_bytes > 2 ** 24 ||
        (m.grants.kv?.max_bytes ?? 0) > 2 ** 26
      ) {
        throw new OracleViolation(`accepted limits past the ceilings: ${JSON.stringify(l)}`);
      }
      if (m.grants.sensor.some((g) => !g.startsWith("/") || g.split("/").includes(".."))) {
        throw new OracleViolation(`accepted sensor grant ${JSON.stringify(m.grants.sensor)}`);
      }
      await validateModule(wasm, m);
      return "accepted";
    },
    classify: (err) =>
      err instanceof ModuleValidationError && err.reasons.length > 0
        ? `ModuleValidationError/${reasonKind(err.reasons[0])}`
        : undefined,
  };
}

/** Manifests through parseManifest and validateModule. */
export const manifestTarget: FuzzTarget = {
  name: "manifest",
  description: "module manifests (sandbox parseManifest, then validateModule with a real module)",
  setup,
};
