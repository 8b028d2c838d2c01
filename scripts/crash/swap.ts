/**
 * Crash loop `swap`: a client swaps one module between three versions
 * (PUT, sometimes the version already running, sometimes DELETE) while
 * edged is killed with SIGKILL at a random moment. After each restart the
 * module must be exactly what the last acknowledged operation left, or what
 * the operation in flight at the kill would have left: never a mix, never
 * missing after an acknowledged install, and it must run (a message
 * delivered answers from the version the API reports).
 *
 * @module
 */
import { sha256Hex } from "../../lib/mod.ts";
import { type EdgedProcess, startEdged } from "../../tests/_helpers/edged.ts";
import { Rng } from "../fuzz/_prng.ts";
import { type CrashOptions, type CrashReport, kill9, sleep } from "./_common.ts";

const NAME = "swap";

/** A relay module that publishes every message on `uplink/telemetry/v{n}`. */
function wat(n: number): string {
  const topic = `uplink/telemetry/v${n}`;
  return `(module
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "${topic}")
  ;; padding so versions differ in size and writes take a moment
  (data (i32.const 4096) "${"v".repeat(2000 * n)}")
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 16384))
  (func (export "edge_on_message") (param i32 i32 i32 i32) (result i32)
    (call $publish (i32.const 0) (i32.const ${topic.length}) (local.get 2) (local.get 3))))`;
}

interface Version {
  n: number;
  version: string;
  wasm: Uint8Array;
  sha256: string;
  manifest: string;
}

async function build(n: number): Promise<Version> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, wat(n));
    const out = await new Deno.Command("wat2wasm", {
      args: [`${dir}/m.wat`, "-o", `${dir}/m.wasm`],
    })
      .output();
    if (!out.success) throw new Error("wat2wasm failed");
    const wasm = await Deno.readFile(`${dir}/m.wasm`);
    const sha256 = await sha256Hex(wasm);
    const version = `1.0.${n}`;
    const manifest = JSON.stringify({
      name: NAME,
      version,
      sha256,
      subscribe: ["sensors/+/swap"],
      grants: { publish: ["uplink/telemetry/#"] },
      limits: { memory_bytes: 1 << 20, fuel_per_message: 100000 },
    });
    return { n, version, wasm, sha256, manifest };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What the module should be: absent, or one version. */
type Expect = "absent" | Version;

async function observe(edged: EdgedProcess): Promise<{ state: string; topic?: string }> {
  const res = await edged.api(`/api/v1/modules/${NAME}`);
  if (res.status === 404) {
    await res.body?.cancel();
    return { state: "absent" };
  }
  const st = await res.json();
  const msg = await edged.api(`/api/v1/modules/${NAME}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic: "sensors/d/swap", payload: { x: 1 } }),
  });
  const out = await msg.json();
  return { state: `${st.version} ${st.sha256} ${st.state}`, topic: out.published?.[0]?.topic };
}

const describe = (e: Expect) => e === "absent" ? "absent" : e.version;

/** Runs the module-swap crash loop. */
export async function swapCrash(opts: CrashOptions): Promise<CrashReport> {
  const rng = new Rng(opts.seed, 2);
  const versions = await Promise.all([1, 2, 3].map(build));
  const dataDir = await Deno.makeTempDir({ prefix: "edged-crash-module-" });
  const report: CrashReport = {
    scenario: "module swap",
    trials: 0,
    violations: [],
    stats: { installs_acked: 0, removes_acked: 0, killed_mid_operation: 0 },
    notes: [],
  };
  let acked: Expect = "absent";
  let pending: Expect | null = null;
  for (let trial = 1; trial <= opts.trials; trial++) {
    const edged = await startEdged({ dataDir });
    // The invariant, checked on every start.
    const seen = await observe(edged);
    const allowed: Expect[] = [acked, ...(pending ? [pending] : [])];
    const ok = allowed.some((e) =>
      e === "absent"
        ? seen.state === "absent"
        : seen.state === `${e.version} ${e.sha256} running` &&
          seen.topic === `uplink/telemetry/v${e.n}`
    );
    if (!ok) {
      report.violations.push(
        `trial ${trial}: module is ${seen.state} (publishes to ${seen.topic}); ` +
          `expected ${allowed.map(describe).join(" or ")}`,
      );
    }
    // What is there now is the new acknowledged state.
    const now: Expect | undefined = allowed.find((e) =>
      e === "absent" ? seen.state === "absent" : seen.state.startsWith(e.version + " ")
    );
    acked = now ?? acked;
    pending = null;

    let stopped = false;
    const client = (async () => {
      while (!stopped) {
        const remove = acked !== "absent" && rng.chance(0.15);
        const v = rng.pick(versions);
        pending = remove ? "absent" : v;
        try {
          let res: Response;
          if (remove) {
            res = await edged.api(`/api/v1/modules/${NAME}`, { method: "DELETE" });
          } else {
            const form = new FormData();
            form.append("manifest", v.manifest);
            form.append("module", new File([v.wasm as Uint8Array<ArrayBuffer>], "module.wasm"));
            res = await edged.api(`/api/v1/modules/${NAME}`, { method: "PUT", body: form });
          }
          await res.body?.cancel();
          if (res.status >= 200 && res.status < 300) {
            acked = pending;
            pending = null;
            report.stats[remove ? "removes_acked" : "installs_acked"]++;
          } else {
            report.violations.push(
              `trial ${trial}: ${remove ? "DELETE" : "PUT"} answered ${res.status}`,
            );
            pending = null;
          }
        } catch {
          return; // killed mid-request: `pending` stays as the operation in flight
        }
      }
    })();
    const at = rng.int(50, 1200);
    await sleep(at);
    await kill9(edged);
    stopped = true;
    await client;
    if (pending) report.stats.killed_mid_operation++;
    report.trials++;
    opts.log?.(
      `module trial ${trial}: kill at ${at} ms, acknowledged ${describe(acked)}, ` +
        `in flight ${pending ? describe(pending) : "nothing"}`,
    );
  }
  await Deno.remove(dataDir, { recursive: true });
  return report;
}
