/**
 * `update_verification_failed` is its own error wherever a failure is
 * reported (issue 19): a running edged whose repository serves a release
 * with one byte changed answers it over HTTP with the target and both
 * digests, `edged update apply` exits 3 on it, and the metrics count it
 * apart from a refused download (`update_download_failed`, exit 1). Neither
 * changes the slots. (The MQTT answer is in update_mqtt_test.ts.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type EdgedProcess, runCli, startEdged } from "../_helpers/edged.ts";
import {
  installTwoSlots,
  publishReleases,
  rollbackTarget,
  sha256Of,
  TOKEN,
  TRIPLE,
} from "./_update_helpers.ts";
import { serveRepo } from "./_repo_server.ts";

Deno.test({
  name:
    "a digest mismatch answers update_verification_failed (HTTP, exit 3, metrics), apart from network failures",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-update-errors-" });
    const repo = join(dir, "repo");
    const files = await publishReleases(repo, dir, ["1.0.0", "2.0.0", "3.0.0"]);
    const dataDir = join(dir, "data");
    // 1.0.0 runs (no delta from it), 2.0.0 is the rollback target.
    await installTwoSlots(dataDir, { file: files["2.0.0"], version: "2.0.0" }, {
      file: files["1.0.0"],
      version: "1.0.0",
    });
    const server = serveRepo(repo, { corruptTargets: true });
    let edged: EdgedProcess | undefined;
    try {
      edged = await startEdged({
        dataDir,
        env: {
          EDGED_API_TOKEN: TOKEN,
          EDGED_UPDATE_URL: server.url,
          EDGED_UPDATE_ROOT: join(repo, "metadata", "1.root.json"),
          EDGED_UPDATE_AUTO_APPLY: "false",
          EDGED_UPDATE_RETRIES: "0",
        },
      });
      const before = await Deno.readTextFile(join(dataDir, "update", "state.json"));
      const release = await sha256Of(files["3.0.0"]);
      const sent = await Deno.readFile(files["3.0.0"]);
      sent[0] ^= 0xff;
      await Deno.writeFile(join(dir, "sent"), sent);
      const arrived = await sha256Of(join(dir, "sent"));

      const res = await edged.api("/api/v1/update/apply?wait=1", { method: "POST" });
      const body = await res.json();
      assert.equal(res.status, 502, JSON.stringify(body));
      assert.equal(body.error.code, "update_verification_failed");
      assert.equal(body.error.target, `releases/${TRIPLE}/3.0.0/edged`);
      assert.deepEqual(body.error.expected, { sha256: release, length: sent.length });
      assert.deepEqual(body.error.actual, { sha256: arrived, length: sent.length });
      const status = await (await edged.api("/api/v1/update")).json();
      assert.equal(status.last_error_code, "update_verification_failed");

      const cli = (...args: string[]) =>
        runCli(["update", ...args, "--url", edged!.url, "--token", TOKEN, "--data-dir", dataDir]);
      const verify = await cli("apply");
      assert.equal(verify.code, 3, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /update_verification_failed/);

      server.mode.corruptTargets = false;
      server.mode.targetStatus = 503;
      const network = await cli("apply");
      assert.equal(network.code, 1, network.stdout + network.stderr);
      assert.match(network.stdout, /update_download_failed/);

      const metrics = await (await edged.api("/metrics")).text();
      const count = (code: string) =>
        Number(
          new RegExp(
            `^edged_update_failures_total\\{operation="apply",code="${code}"\\} (\\d+)`,
            "m",
          )
            .exec(metrics)?.[1] ?? 0,
        );
      assert.equal(count("update_verification_failed"), 2, metrics);
      assert.equal(count("update_download_failed"), 1, metrics);

      assert.equal(await Deno.readTextFile(join(dataDir, "update", "state.json")), before);
      const target = await rollbackTarget(dataDir);
      assert.deepEqual([target?.version, target?.intact], ["2.0.0", true]);
    } finally {
      await edged?.stop();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
