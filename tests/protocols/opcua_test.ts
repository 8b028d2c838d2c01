/**
 * The OPC UA adapter against node-opcua's server, run as its own process:
 * values as durable readings with source timestamps, bad status codes,
 * writes, security, trust.
 */
import assert from "node:assert/strict";
import { AdapterError } from "../../protocols/adapters/contract.ts";
import { createOpcuaAdapter } from "../../protocols/opcua/mod.ts";
import { makeCertificate, startOpcuaServer, trustOnServer } from "../_helpers/opcua.ts";
import { adapterConfig, certificates, openTestLog, pinnedSecure, teardown } from "./_opcua.ts";
import { until } from "../_helpers/until.ts";

const POINTS = [
  { metric: "counter", node_id: "ns=1;s=Counter" },
  { metric: "speed", node_id: "ns=1;s=Speed" },
  { metric: "setpoint", node_id: "ns=1;s=Setpoint", writable: true },
  { metric: "valve", node_id: "ns=1;s=Valve", writable: true },
  { metric: "level", node_id: "ns=1;s=Level", writable: true },
  { metric: "quality", node_id: "ns=1;s=Quality" },
  { metric: "label", node_id: "ns=1;s=Label" },
  { metric: "readonly", node_id: "ns=1;s=ReadOnly", writable: true },
];

/** Runs `body` with a server, a log and an adapter; ends all of them, pass or fail. */
async function withSetup(
  opts: {
    modes: string[];
    config: (c: Awaited<ReturnType<typeof certificates>>) => Record<string, unknown>;
    users?: Record<string, string>;
    anonymous?: boolean;
    tickMs?: number;
  },
  body: (ctx: {
    adapter: ReturnType<typeof createOpcuaAdapter>;
    log: Awaited<ReturnType<typeof openTestLog>>;
    server: Awaited<ReturnType<typeof startOpcuaServer>>;
    certs: Awaited<ReturnType<typeof certificates>>;
  }) => Promise<void>,
): Promise<void> {
  const certs = await certificates();
  await trustOnServer(certs.dir, certs.client.cert);
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: opts.modes,
    users: opts.users,
    anonymous: opts.anonymous,
    tickMs: opts.tickMs ?? 50,
  });
  const log = await openTestLog("line-2");
  const adapter = createOpcuaAdapter(
    adapterConfig({ endpoint: server.endpoint, points: POINTS, ...opts.config(certs) }),
    { dataDir: log.dataDir },
  );
  try {
    await adapter.start(log.sink);
    await body({ adapter, log, server, certs });
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await adapter.stop();
    await teardown([server], log, [certs.dir]);
  }
}

Deno.test("opcua None: data changes become durable readings with the server's source timestamps", async () => {
  await withSetup({
    modes: ["None"],
    // Sampling interval 0: the server reports every change (the default
    // samples at the publishing interval, 100 ms here, slower than the 50 ms ticks).
    config: () => ({ security_mode: "None", security_policy: "None", sampling_interval_ms: 0 }),
  }, async ({ adapter, log, server }) => {
    await until("connected", () => adapter.status().state === "connected", 20_000);
    const rows = await log.waitFor(
      (r) => r.filter((x) => x.metric === "counter").length >= 10,
      20_000,
      "10 counter readings",
    );
    const counter = rows.filter((r) => r.metric === "counter");
    assert.ok(counter.every((r) => r.device_id === "line-2"));
    // Consecutive values: the subscription delivered every change, none polled over.
    for (let i = 1; i < counter.length; i++) {
      assert.equal(counter[i].value, counter[i - 1].value + 1, `gap after ${counter[i - 1].value}`);
      assert.ok(counter[i].timestamp >= counter[i - 1].timestamp);
    }
    // A value set now carries exactly the source timestamp the server gave it.
    const { ts } = await server.command({ set: "Setpoint", value: 42.25 }) as { ts: number };
    const [sp] = (await log.waitFor(
      (r) => r.some((x) => x.metric === "setpoint" && x.value === 42.25),
      30_000,
      "setpoint 42.25",
    )).filter((x) => x.metric === "setpoint" && x.value === 42.25);
    assert.equal(sp.timestamp, ts);
    const st = adapter.status();
    assert.equal(st.kind, "opcua");
    assert.equal(st.device_id, "line-2");
    assert.ok(st.readings >= counter.length);
    const cp = st.points.find((p) => p.metric === "counter")!;
    assert.ok(cp.reads >= 10 && cp.last_value !== null && cp.last_time !== null);
  });
});

Deno.test("opcua: a bad status code is counted and reported per point, and the next good value clears it", async () => {
  await withSetup({
    modes: ["None"],
    config: () => ({ security_mode: "None", security_policy: "None" }),
  }, async ({ adapter, log, server }) => {
    await until("connected", () => adapter.status().state === "connected", 20_000);
    await log.waitFor((r) => r.some((x) => x.metric === "quality"), 30_000, "first quality");
    await server.command({ status: "Quality", code: "BadSensorFailure" });
    await until(
      "the bad status counted",
      () => adapter.status().points.find((p) => p.metric === "quality")!.errors >= 1,
      30_000,
    );
    let q = adapter.status().points.find((p) => p.metric === "quality")!;
    assert.equal(q.last_error?.kind, "bad_status");
    assert.match(q.last_error!.message, /BadSensorFailure/);
    assert.equal(q.last_value, 1, "a bad value is not a reading");
    assert.equal(log.rows().filter((x) => x.metric === "quality").length, 1);
    // A string node is a decode error of its point, not of the adapter.
    const label = adapter.status().points.find((p) => p.metric === "label")!;
    assert.equal(label.last_error?.kind, "decode");
    assert.match(label.last_error!.message, /String/);
    await server.command({ set: "Quality", value: 0.5 });
    await log.waitFor(
      (r) => r.some((x) => x.metric === "quality" && x.value === 0.5),
      30_000,
      "0.5",
    );
    q = adapter.status().points.find((p) => p.metric === "quality")!;
    assert.equal(q.last_error, null);
    assert.equal(q.last_value, 0.5);
  });
});

Deno.test("opcua Basic256Sha256 SignAndEncrypt + user name: values arrive and writes reach the node", async () => {
  await withSetup({
    modes: ["SignAndEncrypt"],
    users: { operator: "s3cret-pass" },
    anonymous: false,
    config: (c) => ({
      ...pinnedSecure(c),
      username: "operator",
      password: "s3cret-pass",
    }),
  }, async ({ adapter, log, server }) => {
    await until("connected", () => adapter.status().state === "connected", 20_000);
    await log.waitFor(
      (r) => r.filter((x) => x.metric === "counter").length >= 5,
      20_000,
      "counter",
    );
    await adapter.write("setpoint", 17.5);
    assert.deepEqual(await server.command({ get: "Setpoint" }), { value: 17.5 });
    await adapter.write("valve", true);
    assert.deepEqual(await server.command({ get: "Valve" }), { value: true });
    await adapter.write("level", -300);
    assert.deepEqual(await server.command({ get: "Level" }), { value: -300 });
    // The written value comes back through the subscription as a reading.
    await log.waitFor(
      (r) => r.some((x) => x.metric === "setpoint" && x.value === 17.5),
      30_000,
      "17.5",
    );

    const refused = async (metric: string, value: number | boolean, kind: string, msg: RegExp) => {
      await assert.rejects(adapter.write(metric, value), (err: unknown) => {
        assert.ok(err instanceof AdapterError, String(err));
        assert.equal(err.kind, kind);
        assert.match(err.message, msg);
        return true;
      });
    };
    await refused("level", 40_000, "invalid_value", /Int16.*-32768 to 32767/);
    await refused("level", 1.5, "invalid_value", /integer/);
    await refused("valve", 2, "invalid_value", /Boolean/);
    await refused("readonly", 1, "bad_status", /BadNotWritable|BadUserAccessDenied/);
    await refused("speed", 1, "not_writable", /not writable/);
    await refused("nope", 1, "unknown_point", /no point 'nope'/);
    assert.deepEqual(await server.command({ get: "Level" }), { value: -300 });
    const st = adapter.status();
    assert.equal(st.points.find((p) => p.metric === "setpoint")!.writes, 1);
    assert.equal(st.points.find((p) => p.metric === "level")!.errors, 2);
  });
});

Deno.test("opcua: an untrusted server certificate is refused with an error naming its thumbprint", async () => {
  await withSetup({
    modes: ["SignAndEncrypt"],
    config: (c) => ({
      security_mode: "SignAndEncrypt",
      security_policy: "Basic256Sha256",
      // Another certificate's thumbprint: the real server is not the pinned one.
      server_certificate_sha256: c.client.sha256,
      certificate_file: c.client.cert,
      private_key_file: c.client.key,
    }),
  }, async ({ adapter, log, certs }) => {
    await until("an error", () => adapter.status().last_error !== null, 20_000);
    const st = adapter.status();
    assert.notEqual(st.state, "connected");
    assert.equal(st.last_error!.kind, "security");
    assert.match(st.last_error!.message, /not trusted/);
    assert.match(st.last_error!.message, new RegExp(certs.server.sha256));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(log.rows().length, 0, "no value from an untrusted server");
  });
});

Deno.test("opcua Sign: a server certificate in trusted_certificates_dir is trusted; a missing pin file stops the start naming the setting", async () => {
  const trusted = await Deno.makeTempDir();
  try {
    await withSetup({
      modes: ["Sign"],
      config: (c) => {
        Deno.copyFileSync(c.server.cert, `${trusted}/server.pem`);
        return {
          security_mode: "Sign",
          security_policy: "Basic256Sha256",
          trusted_certificates_dir: trusted,
          certificate_file: c.client.cert,
          private_key_file: c.client.key,
        };
      },
    }, async ({ adapter, log }) => {
      await until("connected", () => adapter.status().state === "connected", 20_000);
      await log.waitFor((r) => r.length > 0, 30_000, "a reading");
    });
  } finally {
    await Deno.remove(trusted, { recursive: true });
  }
  const log = await openTestLog("x");
  try {
    const adapter = createOpcuaAdapter(
      adapterConfig({
        endpoint: "opc.tcp://127.0.0.1:1/UA/Test",
        points: POINTS,
        server_certificate_file: "/nonexistent/server.pem",
      }),
      { dataDir: log.dataDir },
    );
    await assert.rejects(adapter.start(log.sink), /setting 'server_certificate_file'.*nonexistent/);
  } finally {
    log.close();
    await Deno.remove(log.dataDir, { recursive: true });
  }
});

Deno.test("opcua: a server that refuses edged's certificate, a wrong password, a missing endpoint and an unknown node each get a clear error", async () => {
  const certs = await certificates();
  // The server trusts edged's certificate but not `stranger`'s.
  await trustOnServer(certs.dir, certs.client.cert);
  const stranger = await makeCertificate(certs.dir, "stranger", { uri: "urn:edged-test:stranger" });
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: ["SignAndEncrypt"],
    users: { operator: "right" },
    anonymous: false,
    tickMs: 0,
  });
  const log = await openTestLog("line-2");
  const secure = {
    endpoint: server.endpoint,
    ...pinnedSecure(certs),
    username: "operator",
    password: "right",
    points: [
      { metric: "counter", node_id: "ns=1;s=Counter" },
      { metric: "ghost", node_id: "ns=1;s=NoSuchNode" },
    ],
  };
  const lastError = async (raw: Record<string, unknown>) => {
    const adapter = createOpcuaAdapter(adapterConfig({ ...secure, ...raw }), {
      dataDir: log.dataDir,
    });
    try {
      await adapter.start(log.sink);
      await until("an error", () => adapter.status().last_error !== null, 20_000);
      assert.notEqual(adapter.status().state, "connected");
      return adapter.status().last_error!;
    } finally {
      await adapter.stop();
    }
  };
  try {
    const refused = await lastError({
      certificate_file: stranger.cert,
      private_key_file: stranger.key,
    });
    assert.equal(refused.kind, "security");
    assert.match(refused.message, /BadSecurityChecksFailed/);
    assert.match(
      refused.message,
      new RegExp(`does the server trust edged's certificate .*${stranger.sha256}`),
    );

    const password = await lastError({ password: "wrong" });
    assert.equal(password.kind, "security");
    assert.match(
      password.message,
      /BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid/,
    );

    const sign = await lastError({ security_mode: "Sign" });
    assert.match(
      sign.message,
      /Cannot find an Endpoint|BadSecurityModeRejected|BadSecurityPolicyRejected/,
    );

    // The right settings connect; the unknown node is its point's error, the other point runs.
    const adapter = createOpcuaAdapter(adapterConfig(secure), { dataDir: log.dataDir });
    try {
      await adapter.start(log.sink);
      await until("connected", () => adapter.status().state === "connected", 20_000);
      await log.waitFor((r) => r.some((x) => x.metric === "counter"), 30_000, "counter");
      const ghost = adapter.status().points.find((p) => p.metric === "ghost")!;
      assert.equal(ghost.last_error?.kind, "bad_status");
      assert.match(ghost.last_error!.message, /BadNodeIdUnknown/);
      // Quiet nodes (no tick) keep the session: keep-alives, not data, prove it alive.
      const reconnects = adapter.status().reconnects;
      await new Promise((r) => setTimeout(r, 7000));
      assert.equal(adapter.status().state, "connected");
      assert.equal(adapter.status().reconnects, reconnects, "no reconnect on a quiet subscription");
    } finally {
      await adapter.stop();
    }
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await teardown([server], log, [certs.dir]);
  }
});

Deno.test("opcua: values the reading log refuses (full) are offered again in order, none lost", async () => {
  const certs = await certificates();
  const server = await startOpcuaServer({ dir: certs.dir, modes: ["None"], tickMs: 50 });
  const log = await openTestLog("line-2");
  let refuse = 3;
  const adapter = createOpcuaAdapter(
    adapterConfig({
      endpoint: server.endpoint,
      security_mode: "None",
      security_policy: "None",
      sampling_interval_ms: 0,
      queue_size: 100,
      points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
    }),
    { dataDir: log.dataDir },
  );
  try {
    await adapter.start({
      signal: log.sink.signal,
      async ingest(batch) {
        // The first offers fail as a full reading log does (OutboxFullError).
        if (refuse > 0) {
          refuse--;
          throw new Error("reading log full: 1000000 readings wait for uplink");
        }
        await log.sink.ingest(batch);
      },
    });
    const rows = await log.waitFor(
      (r) => r.filter((x) => x.metric === "counter").length >= 40,
      30_000,
      "40 counter readings after the refusals",
    );
    assert.equal(refuse, 0);
    const values = rows.map((r) => r.value);
    for (let i = 1; i < values.length; i++) assert.equal(values[i], values[i - 1] + 1);
    const st = adapter.status();
    assert.equal(st.last_error?.kind, "full");
    assert.equal(st.dropped, 0);
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await adapter.stop();
    await teardown([server], log, [certs.dir]);
  }
});

Deno.test("opcua: an X.509 user certificate logs in where anonymous is refused", async () => {
  const certs = await certificates();
  await trustOnServer(certs.dir, certs.client.cert);
  const user = await makeCertificate(certs.dir, "operator", { uri: "urn:edged-test:operator" });
  // The server's user store trusts the operator's certificate.
  await Deno.mkdir(`${certs.dir}/user-pki/trusted/certs`, { recursive: true });
  await Deno.copyFile(user.cert, `${certs.dir}/user-pki/trusted/certs/operator.pem`);
  const server = await startOpcuaServer({
    dir: certs.dir,
    modes: ["SignAndEncrypt"],
    anonymous: false,
    tickMs: 50,
  });
  const log = await openTestLog("line-2");
  const base = {
    endpoint: server.endpoint,
    ...pinnedSecure(certs),
    points: [{ metric: "counter", node_id: "ns=1;s=Counter" }],
  };
  try {
    const anonymous = createOpcuaAdapter(adapterConfig(base), { dataDir: log.dataDir });
    try {
      await anonymous.start(log.sink);
      await until("the refusal", () => anonymous.status().last_error !== null, 20_000);
      assert.equal(anonymous.status().last_error!.kind, "security");
      assert.match(anonymous.status().last_error!.message, /ANONYMOUS user token policy/);
    } finally {
      await anonymous.stop();
    }
    const adapter = createOpcuaAdapter(
      adapterConfig({
        ...base,
        user_certificate_file: user.cert,
        user_private_key_file: user.key,
      }),
      { dataDir: log.dataDir },
    );
    try {
      await adapter.start(log.sink);
      await until("connected", () => adapter.status().state === "connected", 20_000).catch(
        (err) => {
          throw new Error(`${err.message}: ${JSON.stringify(adapter.status().last_error)}`);
        },
      );
      await log.waitFor((r) => r.some((x) => x.metric === "counter"), 30_000, "a reading");
    } finally {
      await adapter.stop();
    }
  } catch (err) {
    console.error(await server.log());
    throw err;
  } finally {
    await teardown([server], log, [certs.dir]);
  }
});
