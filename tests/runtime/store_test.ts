import assert from "node:assert/strict";
import { OutboxFullError, ReadingLog, Store, StoreError } from "../../runtime/mod.ts";

Deno.test("store opens in WAL mode with synchronous=FULL", async () => {
  const store = Store.open(await Deno.makeTempDir());
  try {
    assert.equal(
      (store.db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode,
      "wal",
    );
    assert.equal(
      (store.db.prepare("PRAGMA synchronous").get() as { synchronous: number }).synchronous,
      2,
    );
  } finally {
    store.close();
  }
});

Deno.test("migrations run once, in order, and refuse a newer schema", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  store.migrate("demo", ["CREATE TABLE demo (a INTEGER)"]);
  store.migrate("demo", ["CREATE TABLE demo (a INTEGER)", "ALTER TABLE demo ADD COLUMN b TEXT"]);
  store.db.prepare("INSERT INTO demo (a, b) VALUES (1, 'x')").run();
  assert.throws(() => store.migrate("demo", ["CREATE TABLE demo (a INTEGER)"]), StoreError);
  // A failing migration leaves the version where it was.
  assert.throws(() =>
    store.migrate("demo", [
      "CREATE TABLE demo (a INTEGER)",
      "ALTER TABLE demo ADD COLUMN b TEXT",
      "CREATE TABLE broken (",
    ])
  );
  const v = store.db.prepare("SELECT version FROM schema_version WHERE component = 'demo'").get();
  assert.equal((v as { version: number }).version, 2);
  store.close();
});

Deno.test("a corrupt database file is refused with a clear error", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/edged.db`, new Uint8Array(8192).fill(0x41));
  assert.throws(() => Store.open(dir), StoreError);
});

Deno.test("reading log: pending cap, uplink cursor and retention", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  const committed: number[] = [];
  const log = new ReadingLog(store, {
    maxPending: 10,
    retainUplinked: 2,
    onCommitted: (rows) => committed.push(...rows.map((r) => r.id)),
  });
  const r = (v: number) => ({ device_id: "d", metric: "m", value: v, timestamp: 1 });
  const ids = await Promise.all([log.append([r(1), r(2)]), log.append([r(3)])]);
  assert.deepEqual(ids, [[1, 2], [3]]);
  assert.equal(log.commits, 1, "two appends in one tick share a commit");
  assert.deepEqual(committed, [1, 2, 3]);
  assert.equal(log.pending, 3);
  assert.throws(() => log.append(Array.from({ length: 8 }, (_, i) => r(i))), OutboxFullError);
  assert.deepEqual(log.readAfter(1, 10).map((x) => x.value), [2, 3]);
  log.markUplinked(3);
  assert.equal(log.pending, 0);
  const left = store.db.prepare("SELECT id FROM readings ORDER BY id").all();
  assert.deepEqual(
    left.map((x) => (x as { id: number }).id),
    [2, 3],
    "retains the last 2 uplinked",
  );
  store.close();
  // The cursor is durable.
  const reopened = new ReadingLog(Store.open(dir));
  assert.equal(reopened.uplinkedId, 3);
  assert.equal(reopened.pending, 0);
});

Deno.test("reading ids keep growing after retention empties the table", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  const log = new ReadingLog(store, { retainUplinked: 0 });
  const r = (v: number) => ({ device_id: "d", metric: "m", value: v, timestamp: 1 });
  const ids = await log.append(Array.from({ length: 120 }, (_, i) => r(i)));
  assert.deepEqual(ids, Array.from({ length: 120 }, (_, i) => i + 1), "contiguous across chunks");
  log.markUplinked(120);
  assert.equal(
    (store.db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n,
    0,
  );
  store.close();
  const again = new ReadingLog(Store.open(dir));
  assert.deepEqual(await again.append([r(1)]), [121]);
  assert.equal(again.pending, 1);
});

Deno.test("without forwarding, nothing is pending and retention bounds the table", async () => {
  const store = Store.open(await Deno.makeTempDir());
  const log = new ReadingLog(store, { forward: false, retainUplinked: 100, maxPending: 10 });
  for (let i = 0; i < 25; i++) {
    await log.append(
      Array.from(
        { length: 1000 },
        (_, v) => ({ device_id: "d", metric: "m", value: v, timestamp: 1 }),
      ),
    );
  }
  assert.equal(log.pending, 0);
  const n = (store.db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
  assert.ok(n <= 100 + 10_000, `table holds ${n} rows`);
  store.close();
});

Deno.test("an append resolves only after a WAL sync that began after its commit", async () => {
  const store = Store.open(await Deno.makeTempDir());
  const events: string[] = [];
  const original = store.syncWal.bind(store);
  store.syncWal = () => {
    events.push("sync requested");
    return original().then(() => void events.push("synced"));
  };
  const log = new ReadingLog(store);
  const r = { device_id: "d", metric: "m", value: 1, timestamp: 1 };
  await Promise.all([
    log.append([r]).then(() => events.push("acked 1")),
    log.append([r]).then(() => events.push("acked 2")),
  ]);
  await log.append([r]).then(() => events.push("acked 3"));
  assert.deepEqual(events, [
    "sync requested",
    "synced",
    "acked 1",
    "acked 2",
    "sync requested",
    "synced",
    "acked 3",
  ]);
  assert.ok(store.syncs >= 2);
  store.close();
});

Deno.test("syncWal coalesces: callers during a running sync share one more", async () => {
  const store = Store.open(await Deno.makeTempDir());
  store.migrate("t", ["CREATE TABLE t (a)"]);
  store.db.exec("INSERT INTO t VALUES (1)");
  const before = store.syncs;
  await Promise.all(Array.from({ length: 20 }, () => store.syncWal()));
  assert.equal(store.syncs - before, 2, "one running plus one shared follow-up");
  store.close();
});
