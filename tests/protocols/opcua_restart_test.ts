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
import { adapterConfig, certificates, openTestLog, pinnedSecure, teardown } from "./_opcua.ts";
import { until } from "../_helpers/until.ts";

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
      ...pinnedSecure(certs),
      sampling_interval_ms: 0,
      // Room for 5 s of changes should a publish be late on a busy machine.
      queue_size: 100,
      points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
    });
    const a = createOpcuaAdapter(cfg, { dataDir: log.dataDir });
    try {
      await a.start(sink);
      await until("30 acknowledged counter values", () => acked.length >= 30, 20_000);
      await first.stop("SIGKILL");
      const ackedBeforeCrash = [...acked];
      await until("the loss noticed", () => a.status().state !== "connected", 20_000);
      await until("a connection error", () => a.status().last_error?.kind === "connection", 20_000);
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
        "values from the restarted server",
        () => acked.some((v) => v > 1_000_000 + 20),
        40_000,
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

Deno.test("opcua: without certificate_file edged generates its certificate (key 0600); once the server's administrator trusts it, the adapter connects by itself", async () => {
  const certs = await certificates();
  const servers: OpcuaServer[] = [];
  servers.push(await startOpcuaServer({ dir: certs.dir, modes: ["SignAndEncrypt"], tickMs: 50 }));
  const log = await openTestLog("line-2");
  const cfg = adapterConfig({
    endpoint: servers[0].endpoint,
    security_mode: "SignAndEncrypt",
    security_policy: "Basic256Sha256",
    server_certificate_file: certs.server.cert,
    points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
  });
  const crt = `${log.dataDir}/opcua/line2/client.crt`;
  try {
    const adapter = createOpcuaAdapter(cfg, { dataDir: log.dataDir });
    let sha: string;
    try {
      await adapter.start(log.sink);
      sha = adapter.status().client_certificate_sha256!;
      assert.match(sha, /^[0-9a-f]{64}$/);
      assert.equal((await Deno.stat(`${log.dataDir}/opcua/line2/client.key`)).mode! & 0o777, 0o600);
      // The server does not know edged's certificate yet: the error says which one to trust.
      await until("the refusal", () => adapter.status().last_error !== null, 20_000);
      const refused = adapter.status().last_error!;
      assert.equal(refused.kind, "security");
      assert.match(refused.message, /BadSecurityChecksFailed/);
      assert.ok(refused.message.includes(`${crt} (sha256 ${sha})`), refused.message);
      // The administrator trusts exactly that file; the server picks it up on its restart.
      await servers[0].stop();
      await trustOnServer(certs.dir, crt);
      servers.push(
        await startOpcuaServer({
          dir: certs.dir,
          port: servers[0].port,
          modes: ["SignAndEncrypt"],
          tickMs: 50,
        }),
      );
      await until(
        `connected (last error: ${JSON.stringify(adapter.status().last_error)})`,
        () => adapter.status().state === "connected",
        40_000,
      );
      await log.waitFor((r) => r.some((x) => x.metric === "counter"), 10_000, "a reading");
    } finally {
      await adapter.stop();
    }
    // The next start keeps the same certificate (the server trusts it already).
    const again = createOpcuaAdapter(cfg, { dataDir: log.dataDir });
    try {
      await again.start(log.sink);
      assert.equal(again.status().client_certificate_sha256, sha);
      await until("connected again", () => again.status().state === "connected", 20_000);
    } finally {
      await again.stop();
    }
    const pem = await Deno.readTextFile(crt);
    const der = Uint8Array.from(
      atob(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "")),
      (c) => c.charCodeAt(0),
    );
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
    assert.equal(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""), sha);
  } catch (err) {
    for (const s of servers) console.error(await s.log());
    throw err;
  } finally {
    await teardown(servers, log, [certs.dir]);
  }
});
