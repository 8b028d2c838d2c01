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

Deno.test("bus.wants follows subscriptions as they come and go", () => {
  const bus = new Bus();
  const t = "sensors/pump-7/temperature";
  assert.equal(bus.wants(t), false);
  const off = bus.subscribe("sensors/+/temperature", () => {});
  assert.equal(bus.wants(t), true, "a new subscription is seen at once");
  assert.equal(bus.wants("sensors/pump-7/pressure"), false);
  const offAll = bus.subscribe("#", () => {});
  assert.equal(bus.wants("sensors/pump-7/pressure"), true);
  off();
  assert.equal(bus.wants(t), true, "still wanted by #");
  offAll();
  offAll();
  assert.equal(bus.wants(t), false, "nobody left");
  assert.equal(bus.wants("$SYS/x"), false);
  bus.subscribe("#", () => {});
  assert.equal(bus.wants("$SYS/x"), false, "a leading wildcard skips $ topics");
  for (let i = 0; i < 3000; i++) assert.equal(bus.wants(`sensors/d${i}/temperature`), true);
});
