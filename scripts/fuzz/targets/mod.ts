/**
 * The fuzz targets by name.
 *
 * @module
 */
import type { FuzzTarget } from "../_target.ts";
import { bspatchTarget } from "./bspatch.ts";
import { configTarget } from "./config.ts";
import { ingestTarget } from "./ingest.ts";
import { manifestTarget } from "./manifest.ts";
import { moduleTarget } from "./module.ts";
import { mqttTarget } from "./mqtt.ts";
import { tufTarget } from "./tuf.ts";
import { selftestTarget } from "./_selftest.ts";

/** Every target `deno task fuzz` knows (those starting with `_` run only when named). */
export const TARGETS: Record<string, FuzzTarget> = Object.fromEntries(
  [
    bspatchTarget,
    tufTarget,
    moduleTarget,
    manifestTarget,
    ingestTarget,
    mqttTarget,
    configTarget,
    selftestTarget,
  ]
    .map((t) => [t.name, t]),
);
