import assert from "node:assert/strict";
import { Bus, TopicError, topicMatches, validateFilter, validateTopic } from "../../runtime/mod.ts";

Deno.test("topic filters follow MQTT 3.1.1 section 4.7", () => {
  const cases: [string, string, boolean][] = [
    ["sensors/+/temperature", "sensors/pump-7/temperature", true],
    ["sensors/+/temperature", "sensors/pump-7/pressure", false],
    ["sensors/+/temperature", "sensors/a/b/temperature", false],
    ["sensors/#", "sensors/pump-7/temperature", true],
    ["sensors/#", "sensors", true], // '#' also matches the parent level
    ["sensors/#", "sensorsX/a", false],
    ["#", "anything/at/all", true],
    ["#", "$SYS/broker", false],
    ["+/x", "$SYS/x", false],
    ["a/+", "a/", true], // empty level is a level
    ["a/b", "a/b", true],
    ["a/b", "a/b/c", false],
    ["+", "a", true],
    ["+", "a/b", false],
  ];
  for (const [filter, topic, want] of cases) {
    assert.equal(topicMatches(filter, topic), want, `${filter} vs ${topic}`);
  }
});

Deno.test("invalid filters and topics are refused with TopicError", () => {
  for (const f of ["", "a/#/b", "a#", "a/b+", "sensors/te#"]) {
    assert.throws(() => validateFilter(f), TopicError, f);
  }
  for (const t of ["", "a/+/b", "a/#", "nul\0byte"]) {
    assert.throws(() => validateTopic(t), TopicError, t);
  }
  validateFilter("a/+/b/#");
  validateTopic("sensors/pump-7/temperature");
});

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
