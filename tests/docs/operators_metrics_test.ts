/**
 * docs/operators.md's metrics table names every metric family an edged with
 * a module and a broker configured exposes at `/metrics`: an operator
 * writing alerts finds each one there.
 */
import assert from "node:assert/strict";
import { startEdged } from "../_helpers/edged.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("docs/operators.md names every metric family /metrics exposes", async () => {
  const edged = await startEdged({
    env: {
      EDGED_MODULES_PRELOAD: `${ROOT}examples/modules/relay-wat`,
      // No broker listens there: the uplink's metrics are registered all the same.
      EDGED_MQTT_URL: "mqtt://127.0.0.1:1",
    },
  });
  try {
    const text = await (await fetch(`${edged.url}/metrics`)).text();
    const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
    assert.ok(families.length > 50, `only ${families.length} families`);
    const doc = await Deno.readTextFile(`${ROOT}docs/operators.md`);
    const missing = families.filter((f) => !new RegExp(`\`${f}(\\{|\`)`).test(doc));
    assert.deepEqual(missing, [], "metric families /metrics exposes that docs/operators.md lacks");
  } finally {
    await edged.stop();
  }
});
