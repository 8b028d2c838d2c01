import assert from "node:assert/strict";
import { FileSyncer, OutboxFullError, ReadingLog, Store, StoreError } from "../../runtime/mod.ts";
import { UNSHARE_FLAGS, withTmpfs } from "../_helpers/namespace.ts";

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
    onCommitted: (rows, firstId) => committed.push(...rows.map((_, i) => firstId + i)),
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

Deno.test("requests of any size committed together are stored whole, in order, with contiguous ids", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  const log = new ReadingLog(store);
  // Sizes that cross every multi-row statement (100, 64, ..., 1) in one group commit.
  const sizes = [1, 3, 64, 100, 163, 7, 1, 127];
  let v = 0;
  const batches = sizes.map((n) =>
    Array.from({ length: n }, () => ({
      device_id: `d${v % 7}`,
      metric: `m${v % 3}`,
      value: v + 0.5,
      timestamp: 1_700_000_000_000 + v++,
    }))
  );
  const ids = await Promise.all(batches.map((b) => log.append(b)));
  assert.equal(log.commits, 1, "one group commit");
  const all = batches.flat();
  assert.deepEqual(ids.flat(), all.map((_, i) => i + 1));
  const stored = log.readAfter(0, 1000);
  assert.deepEqual(
    stored.map(({ id, device_id, metric, value, timestamp }) => ({
      id,
      device_id,
      metric,
      value,
      timestamp,
    })),
    all.map((r, i) => ({ id: i + 1, ...r })),
  );
  store.close();
  await Deno.remove(dir, { recursive: true });
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

Deno.test("syncWal overlaps up to parallelSyncs; callers beyond share one more", async () => {
  const store = Store.open(await Deno.makeTempDir(), { parallelSyncs: 3 });
  store.migrate("t", ["CREATE TABLE t (a)"]);
  store.db.exec("INSERT INTO t VALUES (1)");
  const before = store.syncs;
  await Promise.all(Array.from({ length: 20 }, () => store.syncWal()));
  // A later sync answers the callers of an earlier one: the earlier may still be finishing.
  const deadline = Date.now() + 5000;
  while (store.syncs - before < 4 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(store.syncs - before, 4, "three running plus one shared follow-up");
  store.close();
});

Deno.test("FileSyncer answers callers in order, each after a sync that began after its call", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/f`, "x");
  const syncer = new FileSyncer(`${dir}/f`, 2);
  const order: number[] = [];
  const calls = Array.from({ length: 7 }, (_, i) => syncer.sync().then(() => order.push(i)));
  await Promise.all(calls);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6]);
  // The last 5 found 2 running: they shared a third, started when one of those ended.
  const deadline = Date.now() + 5000;
  while (syncer.syncs < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(syncer.syncs, 3);
  syncer.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a hold keeps rows the uplink no longer needs until its consumer passes them", async () => {
  const store = Store.open(await Deno.makeTempDir());
  const log = new ReadingLog(store, { forward: false, retainUplinked: 0 });
  const r = { device_id: "d", metric: "m", value: 1, timestamp: 1 };
  const hold = log.hold(0);
  const count = () =>
    (store.db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
  for (let i = 0; i < 3; i++) await log.append(Array(10_000).fill(r));
  assert.equal(count(), 30_000, "nothing pruned below a hold at 0");
  hold.set(25_000);
  await log.append([r]);
  assert.equal(count(), 5_001, "pruned up to the hold");
  assert.equal(log.prunedId, 25_000);
  hold.release();
  for (let i = 0; i < 2; i++) await log.append(Array(10_000).fill(r));
  assert.equal(log.prunedId, log.lastId, "released: retention alone decides");
  store.close();
});

Deno.test("group commit: a participant that fails rolls back only its own writes", async () => {
  const store = Store.open(await Deno.makeTempDir());
  store.migrate("t", ["CREATE TABLE t (a TEXT)"]);
  const commits = store.commits;
  const insert = commits.db.prepare("INSERT INTO t VALUES (?)");
  const failures: unknown[] = [];
  let bad = false;
  commits.join({
    write: () => {
      if (!bad) return;
      insert.run("from the failing participant");
      throw new Error("boom");
    },
    seal: () => bad ? { durable: () => {}, failed: (e) => void failures.push(e) } : undefined,
  });
  bad = true;
  const ok = commits.stage(() => void insert.run("staged"));
  commits.schedule();
  await ok;
  bad = false;
  const rows = store.db.prepare("SELECT a FROM t").all() as { a: string }[];
  assert.deepEqual(rows.map((r) => r.a), ["staged"]);
  assert.equal(failures.length, 1);
  assert.match(String(failures[0]), /boom/);
  await assert.rejects(commits.stage(() => insert.run(null, "too many")), /bind|column|argument/i);
  store.close();
});

Deno.test("checkpoints run on a Worker: the WAL goes into the database file, not in a COMMIT", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  try {
    store.migrate("t", ["CREATE TABLE t (a BLOB)"]);
    assert.equal(
      (store.db.prepare("PRAGMA wal_autocheckpoint").get() as { wal_autocheckpoint: number })
        .wal_autocheckpoint,
      0,
    );
    const dbBytes = () => Deno.statSync(`${dir}/edged.db`).size;
    const before = dbBytes();
    const insert = store.commits.db.prepare("INSERT INTO t VALUES (?)");
    for (let i = 0; i < 200; i++) {
      await store.commits.stage(() => void insert.run(new Uint8Array(8192)));
    }
    const deadline = Date.now() + 10_000;
    while (store.checkpoints === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(store.checkpoints >= 1, "a checkpoint ran");
    assert.ok(dbBytes() > before + 100 * 8192, `database file ${before} -> ${dbBytes()} bytes`);
  } finally {
    store.close();
  }
});

Deno.test({
  name: "a store that cannot open on a full disk says so, not 'disk I/O error'",
  // A small disk of its own needs a private mount namespace.
  ignore: UNSHARE_FLAGS === null,
  fn: async () => {
    const mount = await Deno.makeTempDir();
    try {
      const [program, ...pre] = withTmpfs(mount, 1);
      const out = await new Deno.Command(program, {
        args: [
          ...pre,
          Deno.execPath(),
          "run",
          "--allow-all",
          new URL("./_full_disk_open.ts", import.meta.url).pathname,
          mount,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      assert.match(text, /cannot open database .*edged\.db: the disk of its directory is full/);
    } finally {
      await Deno.remove(mount, { recursive: true });
    }
  },
});
