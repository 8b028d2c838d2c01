/**
 * The uplink sender and the outbox on a real SQLite store, with a publisher
 * the test controls: merge order of readings and module messages, cursors
 * that move only over acknowledged prefixes, replay after a dropped
 * connection, the in-flight window, outbox policies and age expiry.
 */
import assert from "node:assert/strict";
import { ReadingLog, Store } from "../../runtime/mod.ts";
import { backoffDelay, Outbox, type Publisher, redactUrl, Uplink } from "../../protocols/mod.ts";

interface Sent {
  topic: string;
  payload: string;
  ack: (err?: Error) => void;
}

function fakePublisher(): Publisher & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    publish(topic, payload, onAck) {
      sent.push({
        topic,
        payload: typeof payload === "string" ? payload : new TextDecoder().decode(payload),
        ack: onAck,
      });
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const enc = (s: string) => new TextEncoder().encode(s);

async function setup(outboxOpts: ConstructorParameters<typeof Outbox>[1] = {}) {
  const dir = await Deno.makeTempDir({ prefix: "edged-uplink-" });
  const store = Store.open(dir);
  const readings = new ReadingLog(store);
  const outbox = new Outbox(store, { readingMark: () => readings.lastId, ...outboxOpts });
  const uplink = new Uplink({ readings, outbox, prefix: "edged/t", forwardReadings: true });
  readings.addCommitListener((id?: number) => uplink.readingsDurable(id));
  return { dir, store, readings, outbox, uplink };
}

const reading = (value: number) => ({
  device_id: "d",
  metric: "m",
  value,
  timestamp: 1700000000000,
});

Deno.test("uplink: readings and module messages go out in the order they were accepted", async () => {
  const { store, readings, outbox, uplink } = await setup();
  try {
    await readings.append([reading(1), reading(2)]);
    outbox.add("telemetry/x", enc("after-2"));
    await outbox.flush();
    await readings.append([reading(3)]);
    outbox.add("telemetry/x", enc("after-3"));
    await outbox.flush();
    const pub = fakePublisher();
    uplink.attach(pub, 100);
    await tick();
    assert.deepEqual(
      pub.sent.map((s) =>
        s.topic.startsWith("edged/t/up/sensors/") ? JSON.parse(s.payload).value : s.payload
      ),
      [1, 2, "after-2", 3, "after-3"],
    );
    assert.equal(pub.sent[0].topic, "edged/t/up/sensors/d/m");
    assert.equal(pub.sent[2].topic, "edged/t/up/telemetry/x");
  } finally {
    store.close();
  }
});

Deno.test("uplink: cursors move over the acknowledged prefix only; a reconnect resends the rest", async () => {
  const { store, readings, outbox, uplink } = await setup();
  try {
    await readings.append([1, 2, 3, 4].map(reading));
    const pub = fakePublisher();
    uplink.attach(pub, 100);
    await tick();
    assert.equal(pub.sent.length, 4);
    pub.sent[0].ack();
    pub.sent[2].ack(); // out of order: 2 is still missing
    uplink.commit();
    assert.equal(readings.uplinkedId, 1);
    assert.equal(uplink.stats.acked, 2);

    uplink.detach(); // the connection dropped
    pub.sent[1].ack(); // a late PUBACK from the dead connection is ignored
    const pub2 = fakePublisher();
    uplink.attach(pub2, 100);
    await tick();
    assert.deepEqual(pub2.sent.map((s) => JSON.parse(s.payload).value), [2, 3, 4]);
    assert.equal(uplink.stats.retried, 3);
    for (const s of pub2.sent) s.ack();
    uplink.commit();
    assert.equal(readings.uplinkedId, 4);
    assert.equal(readings.pending, 0);
    assert.equal(outbox.pending, 0);
  } finally {
    store.close();
  }
});

Deno.test("uplink: never more than the window in flight", async () => {
  const { store, readings, uplink } = await setup();
  try {
    await readings.append(Array.from({ length: 50 }, (_, i) => reading(i)));
    const pub = fakePublisher();
    uplink.attach(pub, 8);
    await tick();
    assert.equal(pub.sent.length, 8);
    assert.equal(uplink.inflight, 8);
    pub.sent[0].ack();
    await tick();
    assert.equal(pub.sent.length, 9);
    let acked = 1;
    for (let round = 0; round < 100 && uplink.stats.acked < 50; round++) {
      const waiting = pub.sent.slice(acked);
      for (const s of waiting) s.ack();
      acked += waiting.length;
      await tick();
      assert.ok(uplink.inflight <= 8, `inflight ${uplink.inflight}`);
    }
    assert.equal(pub.sent.length, 50);
    uplink.commit();
    assert.equal(readings.pending, 0);
    assert.equal(uplink.stats.lastReplayCount, 50);
  } finally {
    store.close();
  }
});

Deno.test("uplink: a broker refusal (reason code) is counted and does not block the stream", async () => {
  const { store, readings, uplink } = await setup();
  try {
    await readings.append([1, 2].map(reading));
    const pub = fakePublisher();
    uplink.attach(pub, 10);
    await tick();
    pub.sent[0].ack(new Error("Publish error: Not authorized"));
    pub.sent[1].ack();
    uplink.commit();
    assert.equal(uplink.stats.rejected, 1);
    assert.equal(readings.uplinkedId, 2);
  } finally {
    store.close();
  }
});

Deno.test("outbox: survives a reopen; refuse-new and drop-oldest; age expiry", async () => {
  const dropped: Record<string, number> = {};
  const onDropped = (reason: string, n: number) => dropped[reason] = (dropped[reason] ?? 0) + n;
  const { dir, store, outbox } = await setup({ maxMessages: 3, onDropped });
  for (let i = 0; i < 5; i++) outbox.add("t", enc(`m${i}`));
  await outbox.flush();
  assert.equal(outbox.pending, 3);
  assert.equal(dropped.refused, 2);
  store.close();

  const store2 = Store.open(dir);
  try {
    const reopened = new Outbox(store2, { maxMessages: 3, policy: "drop-oldest", onDropped });
    assert.deepEqual(
      reopened.readAfter(0, 10).map((r) => new TextDecoder().decode(r.payload)),
      ["m0", "m1", "m2"],
    );
    reopened.add("t", enc("m5"));
    reopened.add("t", enc("m6"));
    await reopened.flush();
    assert.equal(dropped.full, 2);
    assert.deepEqual(
      reopened.readAfter(0, 10).map((r) => new TextDecoder().decode(r.payload)),
      ["m2", "m5", "m6"],
    );
    assert.equal(reopened.expire(Date.now() + 1), 3);
    assert.equal(dropped.expired, 3);
    assert.equal(reopened.pending, 0);
    assert.equal(reopened.oldestCreatedMs(), null);
  } finally {
    store2.close();
  }
});

Deno.test("outbox: a byte cap beside the message cap, counted from disk after a reopen; both policies", async () => {
  const dropped: Record<string, number> = {};
  const onDropped = (reason: string, n: number) => dropped[reason] = (dropped[reason] ?? 0) + n;
  const kib = (tag: string) => enc(tag.padEnd(1024, "."));
  // Each message is 1 KiB of payload plus a 1-byte topic: three fit in 3.1 KiB, four do not.
  const cap = 3 * 1025 + 100;
  const { dir, store, outbox } = await setup({ maxBytes: cap, onDropped });
  for (let i = 0; i < 5; i++) outbox.add("t", kib(`m${i}`));
  assert.equal(outbox.pendingBytes, 3 * 1025, "refused before the commit, not after");
  await outbox.flush();
  assert.equal(outbox.pending, 3);
  assert.equal(dropped.refused, 2);
  // Acknowledged rows give their bytes back.
  outbox.ackUpTo(outbox.readAfter(0, 1)[0].id);
  assert.equal(outbox.pendingBytes, 2 * 1025);
  assert.equal(outbox.add("t", kib("m5")), true);
  // Larger than the whole cap: refused whatever the policy.
  assert.equal(outbox.add("t", new Uint8Array(cap)), false);
  assert.equal(dropped.refused, 3);
  await outbox.flush();
  store.close();

  const store2 = Store.open(dir);
  try {
    const reopened = new Outbox(store2, { maxBytes: cap, policy: "drop-oldest", onDropped });
    assert.equal(reopened.pendingBytes, 3 * 1025, "bytes counted from the rows on disk");
    reopened.add("t", kib("m6"));
    reopened.add("t", kib("m7"));
    await reopened.flush();
    assert.equal(dropped.full, 2);
    assert.deepEqual(
      reopened.readAfter(0, 10).map((r) => new TextDecoder().decode(r.payload).slice(0, 2)),
      ["m5", "m6", "m7"],
    );
    assert.equal(reopened.pendingBytes, 3 * 1025);
    assert.equal(reopened.expire(Date.now() + 1), 3);
    assert.equal(reopened.pendingBytes, 0);
  } finally {
    store2.close();
  }
});

Deno.test("backoffDelay: grows, is capped, keeps jitter in the upper half, rejects bad input", () => {
  const opts = { minMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, { ...opts, random: () => 0 }), 50);
  assert.equal(backoffDelay(0, { ...opts, random: () => 0.999999 }) < 100, true);
  assert.equal(backoffDelay(3, { ...opts, random: () => 0 }), 400);
  assert.equal(backoffDelay(30, { ...opts, random: () => 0 }), 500);
  assert.ok(backoffDelay(30, opts) <= 1000);
  assert.ok(backoffDelay(1000, opts) >= 500);
  assert.throws(() => backoffDelay(-1), RangeError);
  assert.throws(() => backoffDelay(0, { minMs: 0 }), RangeError);
});

Deno.test("uplink: nothing above the durable id is sent; without forwarding only module messages go", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edged-uplink-" });
  const store = Store.open(dir);
  try {
    const readings = new ReadingLog(store);
    const outbox = new Outbox(store, { readingMark: () => readings.lastId });
    const gated = new Uplink({ readings, outbox, prefix: "p", forwardReadings: true });
    await readings.append([1, 2, 3].map(reading)); // no commit listener: not known durable
    const pub = fakePublisher();
    gated.attach(pub, 10);
    await tick();
    assert.equal(pub.sent.length, 0);
    gated.readingsDurable(2);
    await tick();
    assert.deepEqual(pub.sent.map((s) => JSON.parse(s.payload).value), [1, 2]);
    gated.readingsDurable(3);
    await tick();
    assert.equal(pub.sent.length, 3);

    const quiet = new Uplink({ readings, outbox, prefix: "p", forwardReadings: false });
    outbox.add("only/this", enc("m"));
    await outbox.flush();
    const pub2 = fakePublisher();
    quiet.attach(pub2, 10);
    await tick();
    assert.deepEqual(pub2.sent.map((s) => s.topic), ["p/up/only/this"]);
  } finally {
    store.close();
  }
});

Deno.test("redactUrl: broker credentials never reach a log line", () => {
  assert.equal(redactUrl("mqtts://dev:pa%40ss@broker:8883"), "mqtts://broker:8883");
  assert.equal(redactUrl("ws://u:p@h:80/mqtt"), "ws://h:80/mqtt");
  assert.equal(redactUrl("mqtt://127.0.0.1:1883"), "mqtt://127.0.0.1:1883");
});

Deno.test("outbox: after a step of the system clock, the messages of this run keep their age; 1970 stamps have none", async () => {
  const HOUR = 3_600_000;
  const real = Date.now;
  let offset = 0;
  Date.now = () => real() + offset;
  try {
    const { dir, store, outbox } = await setup();
    offset = Date.UTC(1970, 0, 2) - real(); // booted without a real-time clock
    outbox.add("t", enc("1970"));
    await outbox.flush();
    store.close();

    offset = 0; // set by NTP, then restarted
    const store2 = Store.open(dir);
    try {
      const reopened = new Outbox(store2);
      reopened.add("t", enc("a"));
      reopened.add("t", enc("b"));
      await reopened.flush();
      const stamps = () =>
        (store2.db.prepare("SELECT created_ms FROM mqtt_outbox ORDER BY id").all() as {
          created_ms: number;
        }[]).map((r) => r.created_ms);
      const [old, a] = stamps();
      offset = 2 * 24 * HOUR; // set ahead by two days
      // Seen at once; expiring waits until the stamps before the step have moved.
      assert.equal(reopened.expire(Date.now() + 1), 0);
      await store2.commits.flushed();
      const [oldAfter, aAfter] = stamps();
      assert.equal(oldAfter, old, "an earlier run's stamp stays");
      // The step as measured: Date.now() has whole milliseconds.
      assert.ok(Math.abs(aAfter - (a + offset)) <= 2, "this run's stamps move with the clock");
      // An hour's limit: the 1970 row has no age and keeps everything behind it.
      assert.equal(reopened.expire(Date.now() - HOUR), 0);
      assert.equal(reopened.pending, 3);
      reopened.ackUpTo(reopened.readAfter(0, 1)[0].id);
      // The two messages waited milliseconds, not two days.
      assert.equal(reopened.expire(Date.now() - HOUR), 0);
      assert.equal(reopened.expire(Date.now() + 1), 2);
    } finally {
      store2.close();
    }
  } finally {
    Date.now = real;
  }
});
