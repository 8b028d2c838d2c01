import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Checkpointer } from "../../runtime/checkpoint.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("the checkpoint Worker runs while writes come and stops after a quiet idleStopMs", async () => {
  const dir = await Deno.makeTempDir();
  const db = new DatabaseSync(`${dir}/t.db`);
  db.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (a INTEGER)");
  const cp = new Checkpointer(`${dir}/t.db`, { everyCommits: 1, idleStopMs: 300 });
  try {
    assert.equal(cp.active, false, "no Worker before the first write");
    // Writes every 50 ms for a second, and on until a checkpoint has run (a
    // Worker's start can take seconds on a loaded machine): never quiet for
    // 300 ms, so the Worker stays.
    const until = performance.now() + 10_000;
    for (let i = 0; i < 20 || (cp.checkpoints < 1 && performance.now() < until); i++) {
      db.exec(`INSERT INTO t VALUES (${i})`);
      cp.committed();
      await sleep(50);
      assert.equal(cp.active, true, `after write ${i}`);
    }
    assert.ok(cp.checkpoints >= 1, "checkpoints ran");
    const quietFrom = performance.now();
    while (cp.active && performance.now() - quietFrom < 5000) await sleep(20);
    assert.equal(cp.active, false, "stopped once quiet");
    assert.ok(performance.now() - quietFrom >= 250, "not before idleStopMs of quiet");
  } finally {
    cp.close();
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writes too few for a checkpoint get one once quiet, and the Worker stops after it", async () => {
  const dir = await Deno.makeTempDir();
  const db = new DatabaseSync(`${dir}/t.db`);
  db.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (a INTEGER)");
  const cp = new Checkpointer(`${dir}/t.db`, { everyCommits: 64, idleStopMs: 200 });
  try {
    for (let i = 0; i < 3; i++) {
      db.exec(`INSERT INTO t VALUES (${i})`);
      cp.committed();
    }
    assert.equal(cp.active, false, "3 writes of 64: no checkpoint yet");
    const deadline = performance.now() + 5000;
    while (cp.checkpoints === 0 && performance.now() < deadline) await sleep(20);
    assert.equal(cp.checkpoints, 1, "the quiet brought a last checkpoint");
    while (cp.active && performance.now() < deadline) await sleep(20);
    assert.equal(cp.active, false, "and the Worker stopped after it");
  } finally {
    cp.close();
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
