/**
 * The packed batch a sandbox Worker gets (`sandbox/pool_protocol.ts`): each
 * call's instance, topic and payload come out as they went in, whatever their
 * sizes and contents, and packing keeps no more than a bounded amount of what
 * it has seen.
 */
import assert from "node:assert/strict";
import { packCalls, PackedReader, type WireCall } from "../../sandbox/pool_protocol.ts";
import { collectNow } from "../../lib/mod.ts";

const enc = new TextEncoder();

Deno.test("a packed batch frames every call's topic and payload apart", () => {
  const backing = new Uint8Array(100).map((_, i) => i);
  const calls: WireCall[] = [
    { inst: 1, topic: "a/b", payload: enc.encode("hello") },
    { inst: 2, topic: "", payload: new Uint8Array() },
    { inst: 3, topic: "t", payload: new Uint8Array() },
    { inst: 2 ** 31 - 1, topic: "", payload: enc.encode("x") },
    { inst: 4, topic: "Kühlraum/\ud83c\udf21/lone\ud800", payload: backing.subarray(10, 20) },
    { inst: 5, topic: "big/" + "x".repeat(70_000), payload: new Uint8Array(300_000).fill(7) },
    { inst: 6, topic: "a/b", payload: enc.encode("hello again") },
  ];
  const r = new PackedReader(packCalls(calls));
  assert.equal(r.n, calls.length);
  calls.forEach((c, i) => {
    const topic = enc.encode(c.topic);
    assert.equal(r.inst(i), c.inst);
    assert.equal(r.topicLength(i), topic.length);
    assert.deepEqual(r.joined(i), new Uint8Array([...topic, ...c.payload]), `call ${i}`);
  });
  assert.equal(new PackedReader(packCalls([])).n, 0);
});

Deno.test("packing thousands of distinct long topics keeps no more than a bounded amount of them", () => {
  // A module may publish onto thousands of distinct topics of up to 64 KiB, and
  // each reaches its subscribers in a batch: what packing remembers of topics
  // it saw must stay small whatever they are.
  const live = () => {
    collectNow();
    const m = Deno.memoryUsage();
    return m.heapUsed + m.external;
  };
  const before = live();
  for (let i = 0; i < 4000; i++) {
    const topic = `m/${i}/` + String.fromCharCode(97 + (i % 26)).repeat(16 * 1024);
    packCalls([{ inst: 1, topic, payload: new Uint8Array(1) }]);
  }
  const grew = live() - before;
  // Each topic is 16 KiB: 4000 of them kept, as strings and as bytes, would be 125 MiB.
  assert.ok(grew < 16 * 1024 * 1024, `packing 4000 topics of 16 KiB left ${grew} bytes held`);
});
