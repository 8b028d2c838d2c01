/**
 * The initial value of every monitored item becomes a reading even when the
 * client reads the server's answers late: the CreateMonitoredItems response
 * and the Publish response carrying the initial values then arrive in one
 * read. Nodes that never change send nothing else, so a lost initial value
 * is a point that stays empty while the adapter reports "connected".
 */
import assert from "node:assert/strict";
import { createOpcuaAdapter } from "../../protocols/opcua/mod.ts";
import { startOpcuaServer } from "../_helpers/opcua.ts";
import { ENCODING, startOpcuaProxy } from "../_helpers/opcua_proxy.ts";
import { adapterConfig, certificates, openTestLog, teardown } from "./_opcua.ts";
import { until } from "../_helpers/until.ts";

Deno.test("opcua: quiet nodes give their initial values when the server's answers arrive together", async () => {
  const certs = await certificates();
  // tickMs 0: nothing changes, the initial data change is the only one.
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: ["None"],
    tickMs: 0,
    counterStart: 41,
  });
  const proxy = startOpcuaProxy(server.port, ENCODING.CreateMonitoredItemsResponse);
  const log = await openTestLog("line-2");
  const adapter = createOpcuaAdapter(
    adapterConfig({
      endpoint: proxy.endpoint,
      security_mode: "None",
      security_policy: "None",
      points: [
        { metric: "counter", node_id: "ns=1;s=Counter" },
        { metric: "tank", node_id: "ns=1;s=TankLevel" },
        { metric: "ghost", node_id: "ns=1;s=NoSuchNode" },
      ],
    }),
    { dataDir: log.dataDir },
  );
  try {
    await adapter.start(log.sink);
    await until("connected", () => adapter.status().state === "connected", 20_000);
    // The situation under test happened: the items' creation was answered
    // in the same write as the Publish response after it.
    await until("the answers merged", () => proxy.merged() >= 1, 20_000);
    const rows = await log.waitFor(
      (r) => r.some((x) => x.metric === "counter") && r.some((x) => x.metric === "tank"),
      20_000,
      "the initial counter and tank values",
    );
    assert.deepEqual(
      rows.map((r) => [r.metric, r.value]).sort(),
      [["counter", 41], ["tank", 50]],
    );
    const st = adapter.status();
    assert.equal(st.state, "connected");
    assert.equal(st.reconnects, 0);
    const ghost = st.points.find((p) => p.metric === "ghost")!;
    assert.match(ghost.last_error!.message, /BadNodeIdUnknown/);
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await adapter.stop();
    await proxy.close();
    await teardown([server], log, [certs.dir]);
  }
});
