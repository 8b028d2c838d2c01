/**
 * The OPC UA adapter across a crash of node-opcua's server: every reading
 * the sink acknowledged stays in the log, and the subscription resumes on a
 * new session once the server is back; and a generated client certificate.
 */
import assert from "node:assert/strict";
import { createOpcuaAdapter } from "../../protocols/opcua/mod.ts";
import { ReadingLog } from "../../runtime/readings.ts";
import { Store } from "../../runtime/store.ts";
import { type OpcuaServer, startOpcuaServer, trustOnServer } from "../_helpers/opcua.ts";
import { adapterConfig, certificates, openTestLog, teardown, until } from "./_opcua.ts";

Deno.test("opcua SignAndEncrypt: a server crash mid-stream loses no acknowledged reading and the subscription resumes", async () => {
  const certs = await certificates();
  await trustOnServer(certs.dir, certs.client.cert);
  const servers: OpcuaServer[] = [];
  const log = await openTestLog("line-2");
  // Values the sink acknowledged (its ingest resolved), as the adapter saw them.
  const acked: number[] = [];
  const sink = {
    signal: log.sink.signal,
    async ingest(batch: { metric: string; value: number; timestamp: number }[]) {
      await log.sink.ingest(batch);
      for (const r of batch) if (r.metric === "counter") acked.push(r.value);
    },
  };
  try {
    const first = await startOpcuaServer({ dir: certs.dir, modes: ["SignAndEncrypt"], tickMs: 50 });
    servers.push(first);
    const cfg = adapterConfig({
      endpoint: first.endpoint,
      security_mode: "SignAndEncrypt",
      security_policy: "Basic256Sha256",
      server_certificate_sha256: certs.server.sha256,
      certificate_file: certs.client.cert,
      private_key_file: certs.client.key,
      sampling_interval_ms: 0,
      // Room for 5 s of changes should a publish be late on a busy machine.
      queue_size: 100,
      points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
    });
    const a = createOpcuaAdapter(cfg, { dataDir: log.dataDir });
    try {
      await a.start(sink);
      await until(() => acked.length >= 30, 20_000, "30 acknowledged counter values");
      await first.stop("SIGKILL");
      const ackedBeforeCrash = [...acked];
      await until(() => a.status().state !== "connected", 20_000, "the loss noticed");
      await new Promise((r) => setTimeout(r, 1000));
      const second = await startOpcuaServer({
        dir: certs.dir,
        port: first.port,
        modes: ["SignAndEncrypt"],
        tickMs: 50,
        counterStart: 1_000_000,
      });
      servers.push(second);
      await until(
        () => acked.some((v) => v > 1_000_000 + 20),
        40_000,
        "values from the restarted server",
      );
      const st = a.status();
      assert.equal(st.state, "connected");
      assert.ok(st.reconnects >= 1, `reconnects ${st.reconnects}`);
      // Before the crash, every change arrived (consecutive values).
      const before = ackedBeforeCrash.filter((v) => v < 1_000_000);
      for (let i = 1; i < before.length; i++) assert.equal(before[i], before[i - 1] + 1);
    } finally {
      await a.stop();
    }
    // Every acknowledged value is on disk, read back through a fresh store.
    log.close();
    const store = Store.open(log.dataDir);
    try {
      const stored = new ReadingLog(store, { forward: false }).readAfter(0, 1_000_000)
        .filter((r) => r.metric === "counter").map((r) => r.value);
      const onDisk = new Set(stored);
      const missing = acked.filter((v) => !onDisk.has(v));
      assert.deepEqual(missing, [], "acknowledged readings missing from the log");
      assert.ok(stored.some((v) => v > 1_000_000), "readings from after the restart");
    } finally {
      store.close();
    }
  } catch (err) {
    for (const s of servers) console.error(await s.log());
    throw err;
  } finally {
    await teardown(servers, log, [certs.dir]);
  }
});

Deno.test("opcua: without certificate_file edged generates its certificate once, key mode 0600, and shows its thumbprint", async () => {
  const certs = await certificates();
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: ["SignAndEncrypt"],
    tickMs: 50,
    acceptAnyClient: true,
  });
  const log = await openTestLog("line-2");
  const cfg = adapterConfig({
    endpoint: server.endpoint,
    security_mode: "SignAndEncrypt",
    security_policy: "Basic256Sha256",
    server_certificate_file: certs.server.cert,
    points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
  });
  try {
    let shaFirst: string | null = null;
    for (let round = 0; round < 2; round++) {
      const adapter = createOpcuaAdapter(cfg, { dataDir: log.dataDir });
      try {
        await adapter.start(log.sink);
        await until(() => adapter.status().state === "connected", 20_000, "connected");
        const sha = adapter.status().client_certificate_sha256;
        assert.match(sha ?? "", /^[0-9a-f]{64}$/);
        if (round === 0) shaFirst = sha;
        else assert.equal(sha, shaFirst, "the same certificate on the next start");
      } finally {
        await adapter.stop();
      }
    }
    const key = await Deno.stat(`${log.dataDir}/opcua/line2/client.key`);
    assert.equal(key.mode! & 0o777, 0o600);
    const pem = await Deno.readTextFile(`${log.dataDir}/opcua/line2/client.crt`);
    const der = Uint8Array.from(
      atob(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "")),
      (c) => c.charCodeAt(0),
    );
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(hex, shaFirst);
    // The server saw (and accepted) exactly that certificate.
    const seen: string[] = [];
    for (const sub of ["trusted/certs", "rejected"]) {
      try {
        for await (const e of Deno.readDir(`${certs.dir}/pki/${sub}`)) seen.push(e.name);
      } catch { /* absent */ }
    }
    assert.ok(seen.length >= 1, "the server stored the client certificate");
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await teardown([server], log, [certs.dir]);
  }
});
