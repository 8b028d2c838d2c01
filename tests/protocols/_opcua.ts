/**
 * Shared set-up of the OPC UA adapter tests: certificates, a real server, a
 * real reading log as the adapter's sink.
 *
 * @module
 */
import type { AdapterSink } from "../../protocols/adapters/contract.ts";
import { type OpcuaAdapterConfig, opcuaAdapterSchema } from "../../runtime/config_opcua.ts";
import { ReadingLog, type StoredReading } from "../../runtime/readings.ts";
import { Store } from "../../runtime/store.ts";
import { makeCertificate, type OpcuaServer, type TestCertificate } from "../_helpers/opcua.ts";

/** A reading log in a temporary data directory, fed by an adapter. */
export interface TestLog {
  dataDir: string;
  store: Store;
  readings: ReadingLog;
  sink: AdapterSink;
  /** Aborts the sink's signal. */
  abort: () => void;
  /** Every committed row, read back from SQLite. */
  rows(): StoredReading[];
  /** Resolves once `pred` holds over the committed rows (polls SQLite), or throws after `ms`. */
  waitFor(
    pred: (rows: StoredReading[]) => boolean,
    ms?: number,
    what?: string,
  ): Promise<StoredReading[]>;
  close(): void;
}

/** Opens a store and a reading log; the sink appends as device `deviceId`. */
export async function openTestLog(deviceId: string): Promise<TestLog> {
  const dataDir = await Deno.makeTempDir({ prefix: "edged-opcua-" });
  const store = Store.open(dataDir);
  const readings = new ReadingLog(store, { forward: false, retainUplinked: 1_000_000 });
  const ctl = new AbortController();
  const rows = () => readings.readAfter(0, 1_000_000);
  return {
    dataDir,
    store,
    readings,
    sink: {
      async ingest(batch) {
        await readings.append(batch.map((r) => ({ device_id: deviceId, ...r })));
      },
      signal: ctl.signal,
    },
    abort: () => ctl.abort(),
    rows,
    async waitFor(pred, ms = 20_000, what = "the expected readings") {
      const deadline = Date.now() + ms;
      while (true) {
        const r = rows();
        if (pred(r)) return r;
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${ms} ms waiting for ${what}; have ${r.length} rows`);
        }
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    close() {
      if (store.isOpen) store.close();
    },
  };
}

/** The server's and edged's certificates, in a fresh directory laid out for the server. */
export async function certificates(): Promise<
  { dir: string; server: TestCertificate; client: TestCertificate }
> {
  const dir = await Deno.makeTempDir({ prefix: "edged-opcua-srv-" });
  const server = await makeCertificate(dir, "server", { uri: "urn:edged-test:opcua-server" });
  const client = await makeCertificate(dir, "edged-client", { uri: "urn:edged-test:edged" });
  return { dir, server, client };
}

/**
 * The settings of a SignAndEncrypt session (Basic256Sha256) with the server
 * pinned by its certificate's SHA-256 and edged's own client certificate.
 */
export function pinnedSecure(
  certs: { server: TestCertificate; client: TestCertificate },
): Record<string, string> {
  return {
    security_mode: "SignAndEncrypt",
    security_policy: "Basic256Sha256",
    server_certificate_sha256: certs.server.sha256,
    certificate_file: certs.client.cert,
    private_key_file: certs.client.key,
  };
}

/** A validated adapter configuration (defaults applied, rules checked). */
export function adapterConfig(raw: Record<string, unknown>): OpcuaAdapterConfig {
  return opcuaAdapterSchema.parse({
    name: "line2",
    device_id: "line-2",
    publishing_interval_ms: 100,
    timeout_ms: 3000,
    reconnect_min_ms: 200,
    reconnect_max_ms: 1000,
    ...raw,
  });
}

/**
 * Ends what a test started, pass or fail: the servers (killed), the log
 * (closed, its data directory removed) and the other temporary directories.
 */
export async function teardown(servers: OpcuaServer[], log: TestLog, dirs: string[]) {
  for (const s of servers) await s.stop();
  log.abort();
  log.close();
  for (const d of [...dirs, log.dataDir]) await Deno.remove(d, { recursive: true });
}
