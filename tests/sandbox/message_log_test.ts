/**
 * The durable bus sinks inside a group transaction: what a participant wrote
 * through them is forgotten with its savepoint when it fails, so the message
 * log and the MQTT outbox never announce rows the database does not hold,
 * and ids stay contiguous.
 */
import assert from "node:assert/strict";
import { type BusMessage, Store } from "../../runtime/mod.ts";
import { Outbox } from "../../protocols/mod.ts";
import { type LoggedMessage, MessageLog } from "../../sandbox/message_log.ts";

Deno.test("a participant that fails takes back what it wrote through the message log and the outbox", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  try {
    const durable: LoggedMessage[] = [];
    const log = new MessageLog(store, {
      wanted: () => true,
      onDurable: (rows) => durable.push(...rows),
    });
    const outbox = new Outbox(store);
    const commits = store.commits;
    let fail = false;
    let round = 0;
    commits.join({
      write: () => {
        round++;
        const msg = (topic: string): BusMessage => ({
          topic,
          payload: new TextEncoder().encode(`round ${round}`),
          source: "module:m",
        });
        log.sink.write(msg("alerts/a"));
        outbox.sink.write(msg("uplink/a"));
        if (fail) throw new Error("boom");
      },
      seal: () => undefined,
    });
    fail = true;
    await commits.stage(() => {}); // a transaction in which the participant fails
    assert.equal(durable.length, 0, "nothing announced from the rolled-back savepoint");
    assert.equal(log.durableId, 0);
    assert.equal(outbox.pending, 0);
    assert.equal(outbox.lastId, 0);

    fail = false;
    await commits.stage(() => {});
    assert.deepEqual(durable.map((m) => [m.id, new TextDecoder().decode(m.payload)]), [[
      1,
      "round 2",
    ]]);
    assert.equal(log.durableId, 1);
    assert.equal(outbox.pending, 1);
    assert.deepEqual(
      outbox.readAfter(0, 10).map((r) => [r.id, r.topic]),
      [[1, "a"]],
      "the outbox's ids stay contiguous",
    );
    const stored = store.db.prepare("SELECT id FROM module_messages").all() as { id: number }[];
    assert.deepEqual(stored.map((r) => r.id), [1]);
    log.close();
    outbox.close();
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
