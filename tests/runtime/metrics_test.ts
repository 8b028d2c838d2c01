import assert from "node:assert/strict";
import { Metrics } from "../../runtime/mod.ts";

Deno.test("metrics render the Prometheus text exposition format", () => {
  const m = new Metrics();
  const c = m.counter("edged_things_total", "Things seen.\nSecond line.", ["kind"]);
  c.inc({ kind: 'a"b\\c' }, 2);
  c.inc({ kind: "x" });
  m.gauge("edged_depth", "Depth.", [], (set) => set(7));
  const h = m.histogram("edged_latency_seconds", "Latency.", [0.1, 1]);
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  const text = m.render();
  assert.match(text, /^# HELP edged_things_total Things seen\.\\nSecond line\.$/m);
  assert.match(text, /^# TYPE edged_things_total counter$/m);
  assert.match(text, /^edged_things_total\{kind="a\\"b\\\\c"\} 2$/m);
  assert.match(text, /^edged_things_total\{kind="x"\} 1$/m);
  assert.match(text, /^edged_depth 7$/m);
  assert.match(text, /^edged_latency_seconds_bucket\{le="0.1"\} 1$/m);
  assert.match(text, /^edged_latency_seconds_bucket\{le="1"\} 2$/m);
  assert.match(text, /^edged_latency_seconds_bucket\{le="\+Inf"\} 3$/m);
  assert.match(text, /^edged_latency_seconds_sum 5.55$/m);
  assert.match(text, /^edged_latency_seconds_count 3$/m);
});

Deno.test("metrics refuse bad names, labels and negative increments", () => {
  const m = new Metrics();
  assert.throws(() => m.counter("bad-name", "x"));
  assert.throws(() => m.counter("ok_total", "x", ["__reserved"]));
  const c = m.counter("ok_total", "x", ["a"]);
  assert.throws(() => c.inc({ b: "1" }));
  assert.throws(() => c.inc({ a: "1" }, -1), RangeError);
  assert.throws(() => m.counter("ok_total", "again"));
});

Deno.test("a counter's bound series counts into the series inc names", () => {
  const m = new Metrics();
  const c = m.counter("edged_bound_total", "Bound.", ["route", "status"]);
  const ok = c.series({ route: "/x", status: "202" });
  assert.equal(c.get({ route: "/x", status: "202" }), 0);
  assert.doesNotMatch(m.render(), /^edged_bound_total\{/m, "no series until counted");
  ok();
  ok(4);
  c.inc({ route: "/x", status: "202" });
  assert.equal(c.get({ route: "/x", status: "202" }), 6);
  assert.match(m.render(), /^edged_bound_total\{route="\/x",status="202"\} 6$/m);
  assert.throws(() => ok(-1), RangeError);
  assert.throws(() => c.series({ nope: "1" }));
});
