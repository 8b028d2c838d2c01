/** MQTT topic and filter rules (MQTT 3.1.1 section 4.7), shared by the bus, grants and MQTT. */
import assert from "node:assert/strict";
import {
  filterProblem,
  TopicCache,
  TopicError,
  topicMatches,
  topicProblem,
  validateFilter,
  validateTopic,
} from "../../lib/mod.ts";

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

Deno.test("a topic or filter over 65535 UTF-8 bytes is refused, by bytes not characters", () => {
  const long = "é".repeat(32768); // 65536 bytes in 32768 characters
  assert.match(topicProblem(long)!, /longer than 65535 bytes/);
  assert.match(filterProblem(long)!, /longer than 65535 bytes/);
  assert.equal(topicProblem("é".repeat(32767)), undefined);
});

Deno.test("a TopicError answers 400 invalid_topic", () => {
  assert.throws(
    () => validateTopic("a/+"),
    (e: unknown) => e instanceof TopicError && e.code === "invalid_topic" && e.status === 400,
  );
});

Deno.test("a topic cache remembers short topics within its bound, never long ones", () => {
  let computed = 0;
  const cache = new TopicCache(3, (t) => {
    computed++;
    return t.length;
  });
  assert.equal(cache.get("a/b"), 3);
  assert.equal(cache.get("a/b"), 3);
  assert.equal(computed, 1, "a repeated short topic is worked out once");

  // A long topic (an attacker's 64 KiB one, or thousands of them) is never kept.
  const long = "x/".repeat(TopicCache.MAX_CHARS);
  for (let i = 0; i < 3; i++) assert.equal(cache.get(long), long.length);
  assert.equal(computed, 4, "a topic over MAX_CHARS is worked out every time");
  assert.equal(cache.size, 1);
  const edge = "y".repeat(TopicCache.MAX_CHARS);
  cache.get(edge);
  cache.get(edge);
  assert.equal(computed, 5, "a topic of exactly MAX_CHARS is remembered");

  // Full: it starts over rather than grow.
  for (let i = 0; i < 10; i++) cache.get(`d/${i}`);
  assert.ok(cache.size <= 3, `size ${cache.size}`);
  cache.clear();
  assert.equal(cache.size, 0);
  cache.get("a/b");
  assert.equal(computed, 16, "after clear the topic is worked out again");
});
