/**
 * A process that applies an update and kills itself with SIGKILL at one
 * step of the apply (tests/ota/update_apply_kill_test.ts): a power loss at
 * exactly that point, not at a moment guessed by timing.
 *
 *     deno run -A _apply_child.ts DATA_DIR REPO_URL ROOT_JSON STEP
 *
 * Exits 0 with the apply's answer on stdout when STEP never came.
 *
 * @module
 */
import { type ApplyStep, Updater } from "../../ota/mod.ts";
import { TRIPLE } from "./_update_helpers.ts";

const [dataDir, url, rootPath, killAt] = Deno.args;
const updater = new Updater({
  dataDir,
  url,
  rootPath,
  triple: TRIPLE,
  deviceId: "kill-device",
  factoryVersion: "0.0.0",
  backoffMs: 1,
  onStep: (step: ApplyStep) => {
    if (step === killAt) Deno.kill(Deno.pid, "SIGKILL");
  },
});
console.log(JSON.stringify(await updater.apply()));
