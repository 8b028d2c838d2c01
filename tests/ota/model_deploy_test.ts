/**
 * Models through the update pipeline: `edged repo add --model` validates
 * and publishes a model with a BSDIFF40 delta from its previous version; a
 * device deploys the first version whole and the next through the delta,
 * each checked against its TUF entry and installed into the model store.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { serveRepository, Updater, UpdateTargetMissingError } from "../../ota/mod.ts";
import { NnService } from "../../sandbox/nn/service.ts";
import { sha256Hex } from "../../lib/mod.ts";
import { mlp } from "../../scripts/nn/models.ts";
import { repoCli, TRIPLE } from "./_update_helpers.ts";

Deno.test({
  name:
    "models as TUF targets: repo add --model with a delta; a device deploys whole, then by delta",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "edged-model-deploy-" });
    const repo = join(dir, "repo");
    const v1 = mlp([64, 256, 8], 1).bytes;
    // 1.1.0 changes a few weights: most of the file is the same, so the delta is small.
    const v2 = v1.slice();
    for (let i = 0; i < 8; i++) v2[Math.floor(v2.length / 2) + 4 * i] ^= 0x01;
    await Deno.writeFile(join(dir, "m1.onnx"), v1);
    await Deno.writeFile(join(dir, "m2.onnx"), v2);
    await Deno.writeFile(join(dir, "bad.onnx"), new TextEncoder().encode("not a model"));
    await repoCli("init", repo);
    await repoCli(
      "add",
      repo,
      "--model",
      join(dir, "m1.onnx"),
      "--name",
      "m",
      "--version",
      "1.0.0",
    );
    const out = await repoCli(
      "add",
      repo,
      "--model",
      join(dir, "m2.onnx"),
      "--name",
      "m",
      "--version",
      "1.1.0",
    );
    assert.match(out, /deltas\/models\/m\/1\.0\.0_to_1\.1\.0\.bsdiff/);
    await assert.rejects(
      repoCli("add", repo, "--model", join(dir, "bad.onnx"), "--name", "bad", "--version", "1.0.0"),
      /model does not load/,
    );

    const server = serveRepository(repo, { port: 0, onListen: () => {} });
    const dataDir = join(dir, "data");
    const nn = new NnService({ dataDir, idleStopMs: 0 });
    const updater = new Updater({
      dataDir,
      url: `http://127.0.0.1:${server.addr.port}`,
      rootPath: join(repo, "metadata", "1.root.json"),
      triple: TRIPLE,
      deviceId: "model-device",
      factoryVersion: "0.0.0",
      backoffMs: 1,
      retries: 1,
      installModel: (name, bytes, version) => nn.install(name, bytes, { version }),
      installedModel: (name) => nn.installed(name),
    });
    try {
      let r = await updater.deployModel("m", "1.0.0");
      assert.deepEqual(r, { name: "m", version: "1.0.0", method: "full" });
      assert.equal((await updater.deployModel("m", "1.0.0")).method, "unchanged");
      let m = await nn.get("m");
      assert.equal(m.sha256, await sha256Hex(v1));
      assert.equal(m.version, "1.0.0");

      r = await updater.deployModel("m");
      assert.deepEqual(r, { name: "m", version: "1.1.0", method: "delta" });
      m = await nn.get("m");
      assert.equal(m.sha256, await sha256Hex(v2));
      assert.equal(m.version, "1.1.0");

      await assert.rejects(updater.deployModel("nope"), UpdateTargetMissingError);
    } finally {
      nn.stop();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
