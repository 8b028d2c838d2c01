import assert from "node:assert/strict";
import { Bus } from "../../runtime/mod.ts";
import { TopicError } from "../../lib/mod.ts";

Deno.test("bus delivers in order to matching subscribers and isolates a failing one", () => {
  const errors: unknown[] = [];
  const bus = new Bus({ onError: (e) => errors.push(e) });
  const got: string[] = [];
  bus.subscribe("sensors/#", () => {
    throw new Error("boom");
  });
  const off = bus.subscribe(
    "sensors/+/temperature",
    (m) => got.push(new TextDecoder().decode(m.payload)),
  );
  const enc = new TextEncoder();
  assert.equal(bus.publish("sensors/a/temperature", enc.encode("1")), 2);
  bus.publish("sensors/a/pressure", enc.encode("x"));
  bus.publish("sensors/b/temperature", enc.encode("2"));
  off();
  bus.publish("sensors/c/temperature", enc.encode("3"));
  assert.deepEqual(got, ["1", "2"]);
  assert.equal(errors.length, 4);
  assert.equal(bus.handlerErrors, 4);
  assert.throws(() => bus.subscribe("a/#/b", () => {}), TopicError);
});
