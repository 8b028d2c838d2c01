/**
 * The payload bytes modules get for readings, built a commit at a time
 * (`readingPayloads`, which the module feeder uses), are the bytes of the bus
 * message of each reading (`readingPayload`, docs/modules.md, "The ABI (v1)").
 */
import assert from "node:assert/strict";
import { type Reading, readingPayload, readingPayloads, readingTopic } from "../../runtime/mod.ts";

const dec = new TextDecoder();

Deno.test("a commit's reading payloads are each reading's bus payload, byte for byte", () => {
  const ascii: Reading[] = [
    { device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: 1700000000000 },
    { device_id: "a", metric: "b:c.d_e", value: -0.000001, timestamp: 0 },
    { device_id: "x", metric: "y", value: 1e21, timestamp: 1 },
    { device_id: "x", metric: "y", value: -0, timestamp: 1.5 },
    { device_id: "pump-7", metric: "temperature", value: 0.1 + 0.2, timestamp: 1700000000001 },
  ];
  // More series than the feeder keeps, each seen twice: its cache starts over on the way.
  const many: Reading[] = [];
  for (let i = 0; i < 5000; i++) {
    many.push({ device_id: `d${i}`, metric: "m", value: i, timestamp: i });
    many.push({ device_id: `d${i}`, metric: "m", value: -i, timestamp: i + 1 });
  }
  // Adapters name devices and metrics as their peers do: non-ASCII text, quotes, controls.
  const text: Reading[] = [
    ...ascii,
    { device_id: "Kühlraum", metric: "température", value: 4, timestamp: 2 },
    { device_id: 'say "hi"\\', metric: "tab\there\n", value: 3, timestamp: 3 },
    { device_id: "\ud83c\udf21", metric: "lone\ud800", value: 2, timestamp: 4 },
  ];
  for (const rows of [ascii, text, text.slice(5, 6), many, []]) {
    const { topics, payloads: got } = readingPayloads(rows);
    assert.equal(got.length, rows.length);
    assert.deepEqual(topics, rows.map(readingTopic));
    rows.forEach((r, i) => {
      assert.deepEqual([...got[i]], [...readingPayload(r)], dec.decode(readingPayload(r)));
      assert.equal(
        JSON.parse(dec.decode(got[i])).device_id,
        r.device_id.replace("\ud800", "\ufffd"),
      );
    });
  }
});

Deno.test("a reading payload a module keeps holds no more than a few KiB of its commit", () => {
  // A module's queue keeps payloads, one per reading it wants: one per commit for
  // a module that reads one device, up to queue_capacity of them. Each must not
  // keep the whole commit's bytes alive (a big commit is megabytes).
  const rows: Reading[] = [];
  for (let i = 0; i < 20_000; i++) {
    rows.push({ device_id: `dev-${i}`, metric: "temperature", value: i / 7, timestamp: i });
  }
  for (const text of [rows, [...rows.slice(0, 9_999), { ...rows[0], device_id: "Kühlraum" }]]) {
    const { payloads } = readingPayloads(text);
    for (const [i, p] of payloads.entries()) {
      assert.ok(
        p.buffer.byteLength <= 16 * 1024,
        `payload ${i} holds ${p.buffer.byteLength} bytes`,
      );
      assert.deepEqual([...p], [...readingPayload(text[i])]);
    }
  }
});
