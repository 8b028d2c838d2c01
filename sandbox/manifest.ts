/**
 * The module manifest (docs/modules.md, "The ABI (v1)"): its schema, defaults and
 * parsing. Unknown keys are refused so a typo cannot silently drop a limit.
 *
 * @module
 */

import { z } from "zod";
import { filterProblem } from "../lib/mod.ts";
import { ModuleValidationError } from "./errors.ts";
import { MODEL_NAME_MESSAGE, MODEL_NAME_RE } from "./nn/names.ts";
import { CEILINGS, defaultPublishBytesPerCall } from "./manifest_limits.ts";
import { provideManifestParser } from "./_manifest_parser.ts";

export { CEILINGS, defaultPublishBytesPerCall } from "./manifest_limits.ts";

const filter = z.string().superRefine((f, ctx) => {
  const p = filterProblem(f);
  if (p) ctx.addIssue({ code: "custom", message: p });
});

const sensorGlob = z.string().min(1).refine(
  (g) => g.startsWith("/") && !g.split("/").includes(".."),
  {
    message: "sensor grant must be an absolute path glob without '..' segments",
  },
);

const int = (min: number, max: number) => z.number().int().min(min).max(max);

/** The zod schema of a manifest. */
export const manifestSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, {
    message:
      "name must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
  }),
  version: z.string().max(64, { message: "version must be at most 64 characters" }).regex(
    /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?$/,
    {
      message: "version must be semantic (MAJOR.MINOR.PATCH)",
    },
  ),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: "sha256 must be 64 lowercase hex digits" })
    .optional(),
  subscribe: z.array(filter).max(64).default([]),
  /**
   * On the first install: deliver up to this many of the newest entries each
   * durable log still holds (readings; other messages) before new ones.
   * 0 starts at the logs' end. A new version of an installed module continues
   * from its cursor whatever this says.
   */
  backlog: int(0, CEILINGS.backlog).default(0),
  grants: z.strictObject({
    log: z.boolean().default(false),
    publish: z.array(filter).max(64).default([]),
    sensor: z.array(sensorGlob).max(64).default([]),
    kv: z.strictObject({
      max_bytes: int(0, CEILINGS.kvMaxBytes),
      /** One value; larger ones get TOO_BIG. */
      max_value_bytes: int(0, CEILINGS.kvMaxValueBytes).default(65536),
    }).optional(),
    clock: z.boolean().default(false),
    random: z.boolean().default(false),
    wasi: z.boolean().default(false),
    /** Models (installed by the operator) the module may use through WASI-NN. */
    nn: z.array(z.string().regex(MODEL_NAME_RE, { message: MODEL_NAME_MESSAGE })).max(16).default(
      [],
    ),
  }).prefault({}),
  limits: z.strictObject({
    memory_bytes: int(65536, CEILINGS.memoryBytes).default(16 * 1024 * 1024),
    // 10 M: ~45x what the C threshold-alert example needs with printf; a runaway
    // stalls the event loop for a few ms per attempt (see README.md).
    fuel_per_message: int(1, CEILINGS.fuelPerMessage).default(10_000_000),
    max_payload_bytes: int(0, CEILINGS.maxPayloadBytes).default(65536),
    messages_per_second: int(1, CEILINGS.messagesPerSecond).default(1000),
    publish_messages_per_call: int(0, CEILINGS.publishMessagesPerCall).default(1000),
    // Absent: see defaultPublishBytesPerCall, filled in below.
    publish_bytes_per_call: int(0, CEILINGS.publishBytesPerCall).optional(),
    publish_messages_per_second: int(1, CEILINGS.publishMessagesPerSecond).default(1000),
    publish_bytes_per_second: int(1, CEILINGS.publishBytesPerSecond).default(1024 * 1024),
  }).prefault({}).transform((l) => ({
    ...l,
    publish_bytes_per_call: l.publish_bytes_per_call ??
      defaultPublishBytesPerCall(l.max_payload_bytes),
  })),
});

/** A parsed manifest with defaults applied. */
export type Manifest = z.infer<typeof manifestSchema>;

/**
 * Parses a manifest from JSON text or a value.
 * @throws {ModuleValidationError} listing every field that is wrong.
 * @example
 * ```ts
 * import { parseManifest } from "./manifest.ts";
 * const m = parseManifest({ name: "a", version: "1.0.0" });
 * console.log(m.limits.fuel_per_message); // 10000000
 * ```
 */
export function parseManifest(input: unknown): Manifest {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch (cause) {
      throw new ModuleValidationError([`manifest is not valid JSON: ${(cause as Error).message}`], {
        cause,
      });
    }
  }
  const result = manifestSchema.safeParse(value);
  if (!result.success) {
    throw new ModuleValidationError(
      result.error.issues.map((i) =>
        `manifest ${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`
      ),
      { cause: result.error },
    );
  }
  return result.data;
}

provideManifestParser(parseManifest);
