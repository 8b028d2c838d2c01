/**
 * OPC UA adapter benchmark (issue 15), against one node-opcua server (its
 * own process) whose `Bench*` variables all change every tick:
 *
 * 1. Values per second through one subscription, and latency from the
 *    server-side change (the value's source timestamp) to the reading being
 *    durable (the reading log's commit resolved), for edged's adapter; beside
 *    node-opcua's own client subscribing to the same variables with the
 *    same parameters in the same run (latency to its data-change callback,
 *    nothing made durable): the anchor. Under `None` and
 *    `Basic256Sha256 SignAndEncrypt`.
 * 2. What the library weighs: npm packages in the graph and the bytes
 *    `deno compile` would embed for them, beside all of edged's graph; and
 *    edged's start-up time and idle RSS with and without an
 *    `[[adapters.opcua]]` block (see `_opcua_weight.ts`).
 *
 * @module
 */
import {
  AttributeIds,
  ClientMonitoredItemGroup,
  ClientSubscription,
  type DataValue,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
} from "node-opcua-client";
import type { BenchOptions, BenchRow } from "./_report.ts";
import { createOpcuaAdapter } from "../../protocols/opcua/mod.ts";
import { opcuaAdapterSchema } from "../../runtime/config_opcua.ts";
import { ReadingLog } from "../../runtime/readings.ts";
import { Store } from "../../runtime/store.ts";
import {
  makeCertificate,
  type OpcuaServer,
  startOpcuaServer,
  trustOnServer,
} from "../../tests/_helpers/opcua.ts";
import { weightRows } from "./_opcua_weight.ts";

/** Variables changed every tick, and the tick. */
const VARS = 1000;
const TICK_MS = 10;
const PUBLISHING_MS = 50;

interface Sample {
  values: number;
  seconds: number;
  latencies: number[];
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

/** The sample with the median rate. */
function median(samples: Sample[]): Sample {
  const s = [...samples].sort((a, b) => a.values / a.seconds - b.values / b.seconds);
  return s[Math.floor(s.length / 2)];
}

const nodeIds = Array.from({ length: VARS }, (_, i) => `ns=1;s=Bench${i}`);

interface Security {
  mode: "None" | "SignAndEncrypt";
  serverSha: string;
  cert: string;
  key: string;
}

/** node-opcua's own client: counts data changes and their latency for `ms`. */
async function anchor(server: OpcuaServer, sec: Security, ms: number): Promise<Sample> {
  // The anchor trusts the server the way node-opcua does by default (its
  // own PKI folder); only throughput matters here.
  const pki = await Deno.makeTempDir({ prefix: "edged-bench-pki-" });
  const { OPCUACertificateManager } = await import("node-opcua");
  const cm = new OPCUACertificateManager({
    rootFolder: pki,
    automaticallyAcceptUnknownCertificate: true,
  });
  const client = OPCUAClient.create({
    applicationName: "bench-anchor",
    applicationUri: "urn:edged-test:edged",
    securityMode: sec.mode === "None"
      ? MessageSecurityMode.None
      : MessageSecurityMode.SignAndEncrypt,
    securityPolicy: sec.mode === "None" ? SecurityPolicy.None : SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    certificateFile: sec.cert,
    privateKeyFile: sec.key,
    clientCertificateManager: cm,
    connectionStrategy: { maxRetry: 1, initialDelay: 200, maxDelay: 1000 },
  });
  try {
    await client.connect(server.endpoint);
    const session = await client.createSession();
    const sub = ClientSubscription.create(session, {
      requestedPublishingInterval: PUBLISHING_MS,
      requestedMaxKeepAliveCount: 100,
      requestedLifetimeCount: 600,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 10,
    });
    let counting = false;
    let values = 0;
    const latencies: number[] = [];
    const group = ClientMonitoredItemGroup.create(
      sub,
      nodeIds.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
      { samplingInterval: 0, queueSize: 100, discardOldest: true },
      TimestampsToReturn.Both,
    );
    group.on("changed", (_item: unknown, dv: DataValue) => {
      if (!counting) return;
      values++;
      if (values % 10 === 0) latencies.push(Date.now() - dv.sourceTimestamp!.getTime());
    });
    await new Promise((r) => setTimeout(r, 1500)); // initial values and warm-up
    counting = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, ms));
    counting = false;
    const seconds = (performance.now() - t0) / 1000;
    await sub.terminate();
    await session.close();
    return { values, seconds, latencies };
  } finally {
    await client.disconnect();
    await cm.dispose();
    await Deno.remove(pki, { recursive: true });
  }
}

/** edged's adapter into a real reading log: values made durable, and their latency. */
async function edged(server: OpcuaServer, sec: Security, ms: number): Promise<Sample> {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-bench-opcua-" });
  const store = Store.open(dataDir);
  const log = new ReadingLog(store, { forward: false, retainUplinked: 0 });
  let counting = false;
  let values = 0;
  const latencies: number[] = [];
  const ctl = new AbortController();
  const adapter = createOpcuaAdapter(
    opcuaAdapterSchema.parse({
      name: "bench",
      endpoint: server.endpoint,
      device_id: "bench",
      security_mode: sec.mode,
      security_policy: sec.mode === "None" ? "None" : "Basic256Sha256",
      server_certificate_sha256: sec.mode === "None" ? undefined : sec.serverSha,
      certificate_file: sec.cert,
      private_key_file: sec.key,
      publishing_interval_ms: PUBLISHING_MS,
      sampling_interval_ms: 0,
      queue_size: 100,
      points: nodeIds.map((node_id, i) => ({ metric: `b${i}`, node_id })),
    }),
    { dataDir },
  );
  try {
    await adapter.start({
      signal: ctl.signal,
      async ingest(batch) {
        await log.append(batch.map((r) => ({ device_id: "bench", ...r })));
        if (!counting) return;
        const now = Date.now();
        values += batch.length;
        for (let i = 0; i < batch.length; i += 10) latencies.push(now - batch[i].timestamp);
      },
    });
    const deadline = Date.now() + 20_000;
    while (adapter.status().state !== "connected") {
      if (Date.now() > deadline) {
        throw new Error(`adapter did not connect: ${JSON.stringify(adapter.status().last_error)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1500));
    counting = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, ms));
    counting = false;
    const seconds = (performance.now() - t0) / 1000;
    return { values, seconds, latencies };
  } finally {
    await adapter.stop();
    ctl.abort();
    store.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Runs the section. */
export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const ms = opts.quick ? 3_000 : 10_000;
  const dir = await Deno.makeTempDir({ prefix: "edged-bench-opcua-srv-" });
  const rows: BenchRow[] = [];
  let server: OpcuaServer | undefined;
  try {
    const serverCert = await makeCertificate(dir, "server", { uri: "urn:edged-test:opcua-server" });
    const client = await makeCertificate(dir, "edged-client", { uri: "urn:edged-test:edged" });
    await trustOnServer(dir, client.cert);
    server = await startOpcuaServer({
      dir,
      modes: ["None", "SignAndEncrypt"],
      tickMs: TICK_MS,
      benchVars: VARS,
    });
    const offered = VARS * (1000 / TICK_MS);
    const rounds = opts.quick ? 1 : 3;
    // The server's and the clients' code warm up (JIT) before anything counts.
    const warm = { mode: "None" as const, serverSha: "", cert: client.cert, key: client.key };
    await anchor(server, warm, 2000);
    await edged(server, warm, 2000);
    for (const mode of ["None", "SignAndEncrypt"] as const) {
      const sec = { mode, serverSha: serverCert.sha256, cert: client.cert, key: client.key };
      // Alternating rounds; the round with the median rate of each is reported.
      const as: Sample[] = [];
      const es: Sample[] = [];
      for (let r = 0; r < rounds; r++) {
        as.push(await anchor(server, sec, ms));
        es.push(await edged(server, sec, ms));
      }
      const a = median(as);
      const e = median(es);
      const label = mode === "None" ? "None" : "Basic256Sha256 SignAndEncrypt";
      const note =
        `${VARS} variables changing every ${TICK_MS} ms (${offered} values/s offered), ` +
        `publishing ${PUBLISHING_MS} ms, sampling 0; median of ${rounds} alternating ` +
        `${ms / 1000} s rounds; shared machine`;
      rows.push({
        section: "opcua",
        metric: `${label}: values/s through one subscription, durable`,
        edged: e.values / e.seconds,
        anchor: a.values / a.seconds,
        anchorName: "node-opcua client, same subscription, callback only",
        unit: "values/s",
        target: "",
        note,
      });
      for (const [p, name] of [[0.5, "p50"], [0.99, "p99"]] as const) {
        rows.push({
          section: "opcua",
          metric: `${label}: server change → durable reading, ${name}`,
          edged: percentile(e.latencies, p),
          anchor: percentile(a.latencies, p),
          anchorName: "node-opcua client: change → its callback",
          unit: "ms",
          target: "",
          note:
            `source timestamps are ms; includes up to one publishing interval (${PUBLISHING_MS} ms)`,
        });
      }
    }
  } finally {
    await server?.stop();
  }
  try {
    rows.push(...await weightRows({ quick: opts.quick, dir }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}
