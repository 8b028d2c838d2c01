import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";
import { storedKeys } from "../../scripts/crash/_common.ts";

/** Posts readings from `workers` concurrent loops until `stop`; returns the acknowledged ones. */
async function loadUntil(
  edged: Awaited<ReturnType<typeof startEdged>>,
  workers: number,
  stop: Promise<void>,
): Promise<{ acked: Set<string>; errors: number }> {
  const acked = new Set<string>();
  let stopped = false;
  stop.then(() => (stopped = true));
  let errors = 0;
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    for (let seq = 0; !stopped && seq < 100_000; seq++) {
      try {
        const res = await postJson(edged, { device_id: `w${w}`, metric: "seq", value: seq });
        await res.body?.cancel();
        if (res.status === 202) acked.add(`w${w}:${seq}`);
      } catch {
        errors++;
        return; // connection refused or reset: the process is gone
      }
    }
  }));
  return { acked, errors };
}

Deno.test("every reading answered 202 survives kill -9", async () => {
  const edged = await startEdged();
  const { promise: killed, resolve } = Promise.withResolvers<void>();
  const load = loadUntil(edged, 16, killed);
  // Let some commits happen, then kill without any chance to flush.
  await new Promise((r) => setTimeout(r, 1500));
  edged.child.kill("SIGKILL");
  await edged.exited;
  resolve();
  const { acked } = await load;
  assert.ok(acked.size > 100, `only ${acked.size} readings were acknowledged`);
  const stored = storedKeys(edged.dataDir);
  const lost = [...acked].filter((k) => !stored.has(k));
  assert.deepEqual(lost, [], `${lost.length} acknowledged readings lost`);

  // The same data directory starts again and keeps counting from where it was.
  const again = await startEdged({ dataDir: edged.dataDir });
  try {
    const res = await postJson(again, { device_id: "after", value: 1 });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  } finally {
    assert.equal(await again.stop(), 0);
  }
});

Deno.test("SIGTERM finishes in-flight requests, commits them and exits 0", async () => {
  const edged = await startEdged();
  const { promise: stopping, resolve } = Promise.withResolvers<void>();
  const load = loadUntil(edged, 8, stopping);
  await new Promise((r) => setTimeout(r, 500));
  const code = await edged.stop("SIGTERM");
  resolve();
  const { acked } = await load;
  assert.equal(code, 0);
  const stored = storedKeys(edged.dataDir);
  assert.deepEqual([...acked].filter((k) => !stored.has(k)), []);
  assert.ok(edged.lines.some((l) => l.includes('"message":"stopped"')), "logged a clean stop");
});

Deno.test("concurrent requests share commits (group commit)", async () => {
  const edged = await startEdged();
  try {
    await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          postJson(edged, { device_id: "g", value: i }).then((r) => {
            assert.equal(r.status, 202);
            return r.body?.cancel();
          }),
      ),
    );
    const text = await (await fetch(edged.url + "/metrics")).text();
    const commits = Number(/^edged_store_commits_total (\d+)$/m.exec(text)![1]);
    const committed = Number(/^edged_store_readings_committed_total (\d+)$/m.exec(text)![1]);
    assert.equal(committed, 200);
    assert.ok(commits < 200, `expected fewer commits than requests, got ${commits}`);
  } finally {
    await edged.stop();
  }
});
