/**
 * Fuzz target `ingest`: `POST /api/v1/data` bodies through the same steps as
 * the route (runtime/api/ingest.ts): lenient UTF-8 decoding, `JSON.parse`,
 * then `parseReadings`. Refusals must be `ApiError`s (400 with a field);
 * every accepted reading must hold the documented rules (oracle).
 *
 * @module
 */
import { ApiError } from "../../../runtime/mod.ts";
import { parseReadings, type ReadingRules } from "../../../runtime/api/readings_schema.ts";
import { mutateJson, weirdValue } from "../_mutate.ts";
import type { Rng } from "../_prng.ts";
import {
  errorLabel,
  type FuzzTarget,
  type Harness,
  jsonBytes,
  OracleViolation,
} from "../_target.ts";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** A fixed clock, so outcomes do not depend on when the fuzzer runs. */
const NOW = Date.UTC(2026, 0, 1);
/** The rules edged runs with by default ([http] max_batch, max_future_skew_s). */
export const INGEST_RULES: ReadingRules = { maxBatch: 1000, maxFutureMs: 86_400_000, now: NOW };

/** Valid bodies: one reading, arrays, every timestamp form. */
export const INGEST_SEEDS: unknown[] = [
  { device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: 1700000000 },
  { device_id: "pump-7", value: 1 },
  [{ device_id: "a", value: 0, timestamp: 1700000000123 }, { device_id: "b.c:d_e-f", value: -1e9 }],
  { device_id: "x", metric: "m", value: 3, timestamp: "2024-02-29T12:00:00.5+02:00" },
  Array.from({ length: 20 }, (_, i) => ({ device_id: `d${i}`, metric: "seq", value: i })),
];

/** A structure-aware body: readings with weird fields, batches at the limits. */
export function generateIngest(rng: Rng): unknown {
  const one = (): unknown => {
    const r: Record<string, unknown> = {
      device_id: rng.chance(0.7) ? "dev-1" : weirdValue(rng),
      value: rng.chance(0.6) ? rng.int(-1000, 1000) / 7 : weirdValue(rng),
    };
    if (rng.chance(0.6)) r.metric = rng.chance(0.5) ? "temp" : weirdValue(rng);
    if (rng.chance(0.6)) r.timestamp = rng.chance(0.3) ? NOW / 1000 : weirdValue(rng);
    if (rng.chance(0.05)) r[rng.pick(["extra", "Value", "__proto__"])] = weirdValue(rng);
    return r;
  };
  switch (rng.below(4)) {
    case 0:
      return one();
    case 1:
      return Array.from({ length: rng.int(1, 5) }, one);
    case 2:
      return Array.from(
        { length: rng.pick([999, 1000, 1001]) },
        () => ({ device_id: "d", value: 1 }),
      );
    default:
      return mutateJson(rng, rng.pick(INGEST_SEEDS));
  }
}

/** Checks every documented rule on readings that `parseReadings` accepted. */
export function checkAccepted(body: unknown, readings: ReturnType<typeof parseReadings>): void {
  const n = Array.isArray(body) ? body.length : 1;
  if (readings.length !== n) {
    throw new OracleViolation(`${n} readings sent, ${readings.length} returned`);
  }
  for (const r of readings) {
    if (!NAME_RE.test(r.device_id) || !NAME_RE.test(r.metric)) {
      throw new OracleViolation(`accepted bad name ${JSON.stringify([r.device_id, r.metric])}`);
    }
    if (typeof r.value !== "number" || !Number.isFinite(r.value)) {
      throw new OracleViolation(`accepted non-finite value ${r.value}`);
    }
    if (!Number.isSafeInteger(r.timestamp) || r.timestamp < 0 || r.timestamp > NOW + 86_400_000) {
      throw new OracleViolation(`accepted timestamp ${r.timestamp} outside 1970..now+skew`);
    }
  }
}

function setup(): Promise<Harness> {
  return Promise.resolve({
    seeds: INGEST_SEEDS.map(jsonBytes),
    generate: (rng) => jsonBytes(generateIngest(rng)),
    run(input) {
      let body: unknown;
      try {
        body = JSON.parse(new TextDecoder().decode(input));
      } catch (err) {
        if (err instanceof SyntaxError) return Promise.resolve("refused:invalid_json");
        throw err;
      }
      const readings = parseReadings(body, INGEST_RULES);
      checkAccepted(body, readings);
      return Promise.resolve("accepted");
    },
    classify: (err) =>
      err instanceof ApiError && err.status === 400 && typeof err.field === "string"
        ? errorLabel(err)
        : undefined,
  });
}

/** Ingest bodies through JSON.parse and parseReadings. */
export const ingestTarget: FuzzTarget = {
  name: "ingest",
  description: "POST /api/v1/data bodies (runtime/api/readings_schema.ts parseReadings)",
  setup,
};
