import assert from "node:assert/strict";
import { configureLogging, getLogger, type LogRecord, renderTemplate } from "../../lib/log.ts";

Deno.test("log: templates render as LogTape's do (placeholders, escaped braces, missing values)", () => {
  assert.deepEqual(renderTemplate("plain", {}), ["plain"]);
  assert.deepEqual(renderTemplate("", {}), [""]);
  assert.deepEqual(renderTemplate("a {x} b {y}", { x: 1, y: "two" }), ["a ", 1, " b ", "two", ""]);
  assert.deepEqual(renderTemplate("{{literal}} {x}", { x: true }), ["{literal} ", true, ""]);
  assert.deepEqual(renderTemplate("{ x } and {gone}", { x: 3 }), ["", 3, " and ", undefined, ""]);
  assert.deepEqual(renderTemplate("open { only", {}), ["open { only"]);
});

Deno.test("log: records reach the sinks by category and level; nothing before a setup", () => {
  const got: LogRecord[] = [];
  const log = getLogger(["edged", "test"]);
  configureLogging(undefined);
  log.error("dropped");
  try {
    configureLogging({ category: ["edged"], lowestLevel: "info", sinks: [(r) => got.push(r)] });
    log.debug("below the level");
    getLogger(["other"]).error("outside the category");
    log.info("hello {who}", { who: "edge" });
    log.warn("alias");
    assert.equal(got.length, 2);
    assert.deepEqual(got[0].category, ["edged", "test"]);
    assert.equal(got[0].level, "info");
    assert.deepEqual(got[0].message, ["hello ", "edge", ""]);
    assert.equal(got[0].rawMessage, "hello {who}");
    assert.deepEqual(got[0].properties, { who: "edge" });
    assert.equal(got[1].level, "warning");
    assert.deepEqual(got[1].properties, {});
    assert.strictEqual(getLogger(["edged", "test"]), log);
  } finally {
    configureLogging(undefined);
  }
});

Deno.test("log: a sink that throws neither fails the caller nor keeps the others from the record", () => {
  const got: string[] = [];
  configureLogging({
    category: ["edged"],
    lowestLevel: "trace",
    sinks: [() => {
      throw new Error("stdout gone");
    }, (r) => got.push(r.rawMessage)],
  });
  try {
    getLogger(["edged"]).fatal("still here");
    assert.deepEqual(got, ["still here"]);
  } finally {
    configureLogging(undefined);
  }
});
