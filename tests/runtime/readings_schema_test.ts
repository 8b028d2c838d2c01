import assert from "node:assert/strict";
import { parseReadings, parseRfc3339 } from "../../runtime/api/readings_schema.ts";
import { ApiError } from "../../runtime/mod.ts";

const NOW = Date.UTC(2026, 10, 21, 12, 0, 0);
const rules = { maxBatch: 3, maxFutureMs: 86_400_000, now: NOW };

function problem(body: unknown): ApiError {
  try {
    parseReadings(body, rules);
  } catch (err) {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 400);
    return err;
  }
  throw new Error(`accepted ${JSON.stringify(body)}`);
}

Deno.test("timestamps in seconds, milliseconds and RFC 3339 are stored as UTC ms", () => {
  const [a, b, c, d] = [
    { device_id: "p", value: 1, timestamp: 1700000000 },
    { device_id: "p", value: 1, timestamp: 1700000000123 },
    { device_id: "p", value: 1, timestamp: "2023-11-14T22:13:20.5+01:00" },
    { device_id: "p", value: 1 },
  ].map((r) => parseReadings(r, rules)[0]);
  assert.equal(a.timestamp, 1700000000000);
  assert.equal(b.timestamp, 1700000000123);
  assert.equal(c.timestamp, Date.UTC(2023, 10, 14, 21, 13, 20, 500));
  assert.equal(d.timestamp, NOW);
  assert.equal(d.metric, "value");
});

Deno.test("a valid batch keeps order and fields", () => {
  const got = parseReadings([
    { device_id: "pump-7", metric: "temperature", value: 71.5, timestamp: 1700000000 },
    { device_id: "pump-8", metric: "pressure", value: -2 },
  ], rules);
  assert.deepEqual(got.map((r) => [r.device_id, r.metric, r.value]), [
    ["pump-7", "temperature", 71.5],
    ["pump-8", "pressure", -2],
  ]);
});

Deno.test("each bad input names its field and rule", () => {
  const cases: [unknown, string, RegExp][] = [
    [{ value: 1 }, "device_id", /required/],
    [{ device_id: 7, value: 1 }, "device_id", /string/],
    [{ device_id: "a/b", value: 1 }, "device_id", /may contain only/],
    [{ device_id: "x".repeat(129), value: 1 }, "device_id", /1 to 128/],
    [{ device_id: "p" }, "value", /required/],
    [{ device_id: "p", value: "71" }, "value", /number/],
    [{ device_id: "p", value: 1e999 }, "value", /finite/],
    [{ device_id: "p", value: 1, timestamp: -5 }, "timestamp", /1970/],
    [{ device_id: "p", value: 1, timestamp: NOW + 2 * 86_400_000 }, "timestamp", /future/],
    [{ device_id: "p", value: 1, timestamp: "yesterday" }, "timestamp", /RFC 3339/],
    [{ device_id: "p", value: 1, timestamp: "2023-02-30T00:00:00Z" }, "timestamp", /RFC 3339/],
    [{ device_id: "p", value: 1, timestamp: true }, "timestamp", /number or/],
    [{ device_id: "p", value: 1, colour: "red" }, "colour", /unknown field/],
    [{ device_id: "p", metric: "", value: 1 }, "metric", /1 to 128/],
    [[], "body", /empty array/],
    [[1, 2, 3, 4], "body", /at most 3/],
    ["text", "body", /JSON object/],
    [null, "body", /JSON object/],
    [[{ device_id: "p", value: 1 }, { device_id: "p" }], "[1].value", /required/],
    [[[{ device_id: "p", value: 1 }]], "[0]", /must be a JSON object/],
    [{ device_id: "p", value: 1, ["k".repeat(100_000)]: 1 }, `${"k".repeat(64)}...`, /unknown/],
  ];
  for (const [body, field, rule] of cases) {
    const err = problem(body);
    assert.equal(err.field, field, JSON.stringify(body));
    assert.match(err.message, rule, JSON.stringify(body));
  }
});

Deno.test("every problem of a request is listed", () => {
  const err = problem([{ device_id: "p", value: "x", extra: 1 }, { value: 2 }]);
  assert.deepEqual(err.details?.map((d) => d.field), ["[0].extra", "[0].value", "[1].device_id"]);
});

Deno.test("RFC 3339 parser rejects impossible dates", () => {
  assert.ok(Number.isNaN(parseRfc3339("2023-13-01T00:00:00Z")));
  assert.ok(Number.isNaN(parseRfc3339("2023-04-31T00:00:00Z")));
  assert.ok(Number.isNaN(parseRfc3339("2023-04-01T24:00:00Z")));
  assert.ok(Number.isNaN(parseRfc3339("2023-04-01")));
  assert.equal(parseRfc3339("2024-02-29T00:00:00Z"), Date.UTC(2024, 1, 29));
});
