/**
 * Crash loop `module`: effectively-once module effects across `kill -9`.
 *
 * Two rule modules with kv state run under load while edged is killed with
 * SIGKILL at random moments:
 * - `count` subscribes to `sensors/+/seq`; per reading it adds one to its kv
 *   counter n and publishes n plus the reading on `uplink/effects/out` (the
 *   MQTT outbox) and on `effects/seen` (to the other module);
 * - `tally` subscribes to `effects/seen`; per message it adds one to its kv
 *   counter m and publishes m plus the message on `uplink/effects/tally`.
 *
 * The oracle reads the store after every kill (the outbox keeps every output:
 * no broker is configured) and checks that each module's effects happened
 * exactly once: `count`'s outputs carry n = 1..N with no gap or duplicate and
 * N equals its kv counter; they are for exactly the stored readings up to its
 * cursor, each once; `tally` saw `count`'s messages 1..M in order, M equal to
 * its counter. After the last kill edged runs until both modules caught up:
 * then every reading that was answered 202 has had its effect, exactly once.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { sha256Hex } from "../../lib/mod.ts";
import { type EdgedProcess, postJson, startEdged } from "../../tests/_helpers/edged.ts";
import { Rng } from "../fuzz/_prng.ts";
import { type CrashOptions, type CrashReport, integrityCheck, kill9, sleep } from "./_common.ts";

/** `count`: kv counter n, then n (4 bytes, little-endian) + the payload on two topics. */
const COUNT_WAT = `(module
  (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "n")
  (data (i32.const 16) "uplink/effects/out")
  (data (i32.const 48) "effects/seen")
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param $tp i32) (param $tl i32) (param $pp i32) (param $pl i32)
    (result i32) (local $n i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 64) (i32.const 0))))
    (local.set $n (i32.add (i32.load (i32.const 64)) (i32.const 1)))
    (i32.store (i32.const 64) (local.get $n))
    (if (call $set (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 4)) (then unreachable))
    ;; n goes just before the payload (over the topic's last bytes, read no more)
    (i32.store (i32.sub (local.get $pp) (i32.const 4)) (local.get $n))
    (if (call $publish (i32.const 16) (i32.const 18)
          (i32.sub (local.get $pp) (i32.const 4)) (i32.add (local.get $pl) (i32.const 4)))
      (then unreachable))
    (if (call $publish (i32.const 48) (i32.const 12)
          (i32.sub (local.get $pp) (i32.const 4)) (i32.add (local.get $pl) (i32.const 4)))
      (then unreachable))
    (i32.const 0)))`;

/** `tally`: kv counter m, then m + the message on `uplink/effects/tally`. */
const TALLY_WAT = `(module
  (import "edge" "kv_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "edge" "kv_set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "m")
  (data (i32.const 16) "uplink/effects/tally")
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_on_message") (param $tp i32) (param $tl i32) (param $pp i32) (param $pl i32)
    (result i32) (local $m i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 4)) (i32.const 4))
      (then (i32.store (i32.const 64) (i32.const 0))))
    (local.set $m (i32.add (i32.load (i32.const 64)) (i32.const 1)))
    (i32.store (i32.const 64) (local.get $m))
    (if (call $set (i32.const 0) (i32.const 1) (i32.const 64) (i32.const 4)) (then unreachable))
    (i32.store (i32.sub (local.get $pp) (i32.const 4)) (local.get $m))
    (if (call $publish (i32.const 16) (i32.const 20)
          (i32.sub (local.get $pp) (i32.const 4)) (i32.add (local.get $pl) (i32.const 4)))
      (then unreachable))
    (i32.const 0)))`;

async function wat2wasm(source: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, source);
    const out = await new Deno.Command("wat2wasm", {
      args: [`${dir}/m.wat`, "-o", `${dir}/m.wasm`],
    })
      .output();
    if (!out.success) throw new Error(`wat2wasm failed: ${new TextDecoder().decode(out.stderr)}`);
    return await Deno.readFile(`${dir}/m.wasm`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function install(
  edged: EdgedProcess,
  name: string,
  wat: string,
  manifest: Record<string, unknown>,
): Promise<void> {
  const wasm = await wat2wasm(wat);
  const form = new FormData();
  form.append(
    "manifest",
    JSON.stringify({ name, version: "1.0.0", sha256: await sha256Hex(wasm), ...manifest }),
  );
  form.append("module", new File([wasm as Uint8Array<ArrayBuffer>], "module.wasm"));
  const res = await edged.api(`/api/v1/modules/${name}`, { method: "PUT", body: form });
  if (res.status !== 201) throw new Error(`installing ${name}: ${res.status} ${await res.text()}`);
  await res.body?.cancel();
}

/** One output: the module's counter and the bytes it was given. */
interface Output {
  n: number;
  inner: Uint8Array;
}

function outputs(db: DatabaseSync, topic: string): Output[] {
  const rows = db.prepare("SELECT payload FROM mqtt_outbox WHERE topic = ? ORDER BY id")
    .all(topic) as { payload: Uint8Array }[];
  return rows.map((r) => ({
    n: new DataView(r.payload.buffer, r.payload.byteOffset).getUint32(0, true),
    inner: r.payload.subarray(4),
  }));
}

const dec = new TextDecoder();

/** What the store says after a kill, checked against the exactly-once rules. */
export function checkEffects(dataDir: string): { violations: string[]; n: number; m: number } {
  const v: string[] = [];
  const db = new DatabaseSync(`${dataDir}/edged.db`, { readOnly: true });
  try {
    const counter = (module: string, key: string) => {
      const row = db.prepare("SELECT value FROM module_kv WHERE module = ? AND key = ?")
        .get(module, new TextEncoder().encode(key)) as { value: Uint8Array } | undefined;
      return row ? new DataView(row.value.buffer, row.value.byteOffset).getUint32(0, true) : 0;
    };
    const cursor = (module: string) =>
      db.prepare("SELECT readings, messages FROM module_cursors WHERE module = ?").get(module) as
        | { readings: number; messages: number }
        | undefined;
    const n = counter("count", "n");
    const m = counter("tally", "m");
    const out = outputs(db, "effects/out");
    const tally = outputs(db, "effects/tally");
    // count: n = 1..N, in order, once each, N = its counter.
    const ns = out.map((o) => o.n);
    if (ns.length !== n || ns.some((x, i) => x !== i + 1)) {
      v.push(
        `count: kv counter ${n} but outputs carry ${ns.length} values` +
          (ns.length ? ` from ${ns[0]} to ${ns[ns.length - 1]}` : "") +
          ` (${ns.filter((x, i) => x !== i + 1).length} out of sequence)`,
      );
    }
    // ... for exactly the stored readings up to its cursor, each once.
    const c = cursor("count");
    const stored = db.prepare(
      "SELECT id, device_id, value FROM readings WHERE metric = 'seq' ORDER BY id",
    ).all() as { id: number; device_id: string; value: number }[];
    const idOf = new Map(stored.map((r) => [`${r.device_id}:${r.value}`, r.id]));
    const seenIds = new Set<number>();
    for (const o of out) {
      const r = JSON.parse(dec.decode(o.inner));
      const id = idOf.get(`${r.device_id}:${r.value}`);
      if (id === undefined) v.push(`count: output ${o.n} is for a reading not in the store`);
      else if (seenIds.has(id)) v.push(`count: reading ${id} had its effect twice`);
      else seenIds.add(id);
    }
    const upTo = c?.readings ?? 0;
    const missed = stored.filter((r) => r.id <= upTo && !seenIds.has(r.id));
    const beyond = stored.filter((r) => r.id > upTo && seenIds.has(r.id));
    if (missed.length) {
      v.push(
        `count: ${missed.length} readings at or below its cursor ${upTo} have no effect, e.g. id ${
          missed[0].id
        }`,
      );
    }
    if (beyond.length) {
      v.push(`count: ${beyond.length} readings above its cursor ${upTo} had their effect`);
    }
    // tally: saw count's messages 1..M in order, M = its counter.
    const seen = tally.map((t) =>
      new DataView(t.inner.buffer, t.inner.byteOffset).getUint32(0, true)
    );
    const ms = tally.map((t) => t.n);
    if (ms.length !== m || ms.some((x, i) => x !== i + 1)) {
      v.push(`tally: kv counter ${m} but ${ms.length} outputs, not 1..${m} in order`);
    }
    if (seen.some((x, i) => x !== i + 1)) {
      v.push(
        `tally: saw count's messages out of order or twice: ${seen.slice(0, 10).join(",")}...`,
      );
    }
    if (m > n) v.push(`tally: counted ${m} messages, count published only ${n}`);
    return { violations: v, n, m };
  } finally {
    db.close();
  }
}

async function status(edged: EdgedProcess, name: string): Promise<Record<string, unknown>> {
  const res = await edged.api(`/api/v1/modules/${name}`);
  return await res.json();
}

/** Runs the module effects crash loop. */
export async function moduleCrash(opts: CrashOptions): Promise<CrashReport> {
  const rng = new Rng(opts.seed, 3);
  const dataDir = await Deno.makeTempDir({ prefix: "edged-crash-effects-" });
  const acked = new Set<string>();
  const report: CrashReport = {
    scenario: "module effects",
    trials: 0,
    violations: [],
    stats: { acked: 0, requests: 0, kills: 0, effects_count: 0, effects_tally: 0 },
    notes: [],
  };
  const env = { EDGED_DEVICE_ID: "crash" };
  // Fuel for a kv_get miss (a round trip after each restart) and the writes, and publish rates
  // above the load: the rules must never fault, or a message would count as handled without
  // its effects (checked at the end).
  const lim = {
    memory_bytes: 65536,
    fuel_per_message: 10_000_000,
    messages_per_second: 100_000,
    publish_messages_per_second: 100_000,
    publish_bytes_per_second: 64 << 20,
  };
  try {
    for (let trial = 1; trial <= opts.trials; trial++) {
      const edged = await startEdged({ dataDir, env });
      if (trial === 1) {
        await install(edged, "count", COUNT_WAT, {
          subscribe: ["sensors/+/seq"],
          grants: { kv: { max_bytes: 64 }, publish: ["uplink/effects/#", "effects/#"] },
          limits: lim,
        });
        await install(edged, "tally", TALLY_WAT, {
          subscribe: ["effects/seen"],
          grants: { kv: { max_bytes: 64 }, publish: ["uplink/effects/#"] },
          limits: lim,
        });
      }
      let stopped = false;
      const clients = Array.from({ length: 4 }, async (_, w) => {
        let seq = 0;
        while (!stopped) {
          const n = rng.chance(0.5) ? 1 : rng.int(2, 40);
          const batch = Array.from({ length: n }, () => ({
            device_id: `t${trial}c${w}`,
            metric: "seq",
            value: seq++,
          }));
          try {
            report.stats.requests++;
            const res = await postJson(edged, n === 1 ? batch[0] : batch);
            await res.body?.cancel();
            if (res.status === 202) {
              for (const r of batch) acked.add(`${r.device_id}:${r.value}`);
            }
          } catch {
            return; // killed
          }
        }
      });
      const at = rng.int(30, 1500);
      await sleep(at);
      await kill9(edged);
      report.stats.kills++;
      stopped = true;
      await Promise.all(clients);
      const integrity = integrityCheck(dataDir);
      if (integrity !== "ok") {
        report.violations.push(`trial ${trial}: integrity_check ${integrity}`);
      }
      const check = checkEffects(dataDir);
      for (const x of check.violations) {
        report.violations.push(`trial ${trial} (kill at ${at} ms): ${x}`);
      }
      report.trials++;
      opts.log?.(
        `module trial ${trial}: kill at ${at} ms, ${acked.size} readings acknowledged so far; ` +
          `count ${check.n}, tally ${check.m}, ${check.violations.length} violations`,
      );
    }
    // After the last kill: edged catches up, then every acknowledged reading has had its effect.
    const last = await startEdged({ dataDir, env });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const [c, t] = [await status(last, "count"), await status(last, "tally")];
      const lag = (s: Record<string, unknown>) => {
        const d = s.delivery as { readings: { lag: number }; messages: { lag: number } } | null;
        return d ? d.readings.lag + d.messages.lag : Infinity;
      };
      if ((lag(c) === 0 && lag(t) === 0) || Date.now() > deadline) break;
      await sleep(100);
    }
    for (const name of ["count", "tally"]) {
      const s = await status(last, name);
      if (s.errors !== 0) {
        report.violations.push(
          `${name} faulted ${s.errors} times since the last start: ${JSON.stringify(s.last_error)}`,
        );
      }
    }
    await last.stop();
    const final = checkEffects(dataDir);
    for (const x of final.violations) report.violations.push(`after catching up: ${x}`);
    const db = new DatabaseSync(`${dataDir}/edged.db`, { readOnly: true });
    try {
      const done = new Set(
        outputs(db, "effects/out").map((o) => {
          const r = JSON.parse(dec.decode(o.inner));
          return `${r.device_id}:${r.value}`;
        }),
      );
      const without = [...acked].filter((k) => !done.has(k));
      if (without.length > 0) {
        report.violations.push(
          `${without.length} acknowledged readings never had their effect, e.g. ${without[0]}`,
        );
      }
      if (final.m !== final.n) {
        report.violations.push(`tally counted ${final.m} of count's ${final.n} messages`);
      }
    } finally {
      db.close();
    }
    report.stats.acked = acked.size;
    report.stats.effects_count = final.n;
    report.stats.effects_tally = final.m;
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
  return report;
}
