/**
 * Reading the metrics registry as numbers (`Metrics.value`, `Metrics.sum`),
 * and `GET /api/v1/status` built on it: the same numbers `/metrics` shows.
 */
import assert from "node:assert/strict";
import { Metrics } from "../../runtime/metrics.ts";
import { parseSamples, statusComponent } from "../../runtime/api/status.ts";
import type { RuntimeContext } from "../../runtime/component.ts";

Deno.test("Metrics.value and sum read what render shows", () => {
  const m = new Metrics();
  m.counter("a_total", "A.").inc(undefined, 3);
  const byReason = m.counter("d_total", "D.", ["reason"]);
  m.counterFunc("f_total", "F.", () => 7.5);
  m.counterFunc("u_total", "Unknown yet.", () => undefined);
  let collected = 0;
  m.gauge("g", "Collected.", ["stream", "x"], (set) => {
    collected++;
    set(4, { stream: "readings", x: 'q"z\n' });
    set(2, { stream: "messages" });
  });
  m.gauge("unset", "Never set.");
  m.histogram("h_seconds", "H.").observe(0.2);

  assert.equal(m.value("a_total"), 3);
  assert.equal(m.value("f_total"), 7.5);
  assert.equal(m.value("u_total"), null);
  assert.equal(m.value("unset"), null);
  assert.equal(m.value("h_seconds"), null);
  assert.equal(m.value("nope"), null);
  assert.equal(m.sum("d_total"), null, "no series yet");
  byReason.inc({ reason: "full" }, 2);
  byReason.inc({ reason: "expired" });
  assert.equal(m.sum("d_total"), 3);
  assert.equal(m.value("d_total", { reason: "full" }), 2);
  assert.equal(m.value("g", { stream: "readings", x: 'q"z\n' }), 4);
  assert.equal(m.value("g", { stream: "messages" }), 2, "a label left out counts as empty");
  assert.equal(collected, 2, "a collected gauge is read on each call");
  assert.throws(() => m.value("g", { nope: "1" }), /unknown label/);

  // Every series /metrics renders has the same number through value().
  const samples = parseSamples(m.render());
  let compared = 0;
  for (const [name, list] of samples) {
    if (name.startsWith("h_seconds")) continue;
    for (const { labels, value } of list) {
      assert.equal(m.value(name, labels), value, `${name} ${JSON.stringify(labels)}`);
      compared++;
    }
  }
  assert.equal(compared, 6);
});

Deno.test("GET /api/v1/status: the numbers /metrics shows, in the same shape", async () => {
  const m = new Metrics();
  m.gauge("process_resident_memory_bytes", "", [], (set) => set(1000));
  m.gauge("process_heap_bytes", "", [], (set) => set(500));
  m.counterFunc("process_cpu_seconds_total", "", () => 1.25);
  m.gauge("edged_event_loop_lag_seconds", "").set(0.003);
  m.gauge("edged_store_size_bytes", "", [], (set) => set(4096));
  m.counterFunc("edged_store_readings_committed_total", "", () => 12);
  m.gauge("edged_readings_pending", "", [], (set) => set(5));
  m.gauge("edged_store_disk_full", "", [], (set) => set(1));
  m.counterFunc("edged_store_commit_failures_total", "", () => 3);
  m.gauge("edged_mqtt_connected", "", [], (set) => set(1));
  m.counterFunc("edged_mqtt_connects_total", "", () => 2);
  m.counterFunc("edged_mqtt_connect_failures_total", "", () => 1);
  m.gauge("edged_mqtt_inflight_messages", "", [], (set) => set(3));
  m.counterFunc("edged_mqtt_acked_total", "", () => 9);
  m.gauge("edged_mqtt_outbox_messages", "", ["stream"], (set) => {
    set(5, { stream: "readings" });
    set(1, { stream: "messages" });
  });
  m.gauge("edged_mqtt_outbox_oldest_age_seconds", "", [], (set) => set(0.5));
  const dropped = m.counter("edged_mqtt_dropped_total", "", ["reason"]);
  dropped.inc({ reason: "full" }, 4);
  dropped.inc({ reason: "expired" }, 1);
  const ctx = {
    config: { device_id: "gw-1", mqtt: { url: "mqtt://u:p@broker:1883/?x=1" } },
    metrics: m,
    readiness: () => [],
  } as unknown as RuntimeContext;
  const status = statusComponent(ctx, {
    update: () => Promise.resolve({ current: { slot: "b" } }),
  });
  const res = await status.routes![0].app.request("/?logs=0");
  assert.equal(res.status, 200);
  const s = await res.json();
  // The values as the route read them before, from the rendered text.
  const text = parseSamples(m.render());
  const pick = (name: string, stream?: string) =>
    text.get(name)!.find((x) => stream === undefined || x.labels.stream === stream)!.value;
  assert.deepEqual(Object.keys(s), [
    "device_id",
    "version",
    "slot",
    "started_at",
    "uptime_seconds",
    "ready",
    "not_ready",
    "process",
    "store",
    "mqtt",
    "outbox",
    "update",
    "modules",
    "adapters",
    "alerts",
    "logs",
  ]);
  assert.equal(s.slot, "b");
  assert.deepEqual(s.process, {
    resident_memory_bytes: pick("process_resident_memory_bytes"),
    heap_bytes: pick("process_heap_bytes"),
    cpu_seconds: pick("process_cpu_seconds_total"),
    event_loop_lag_seconds: pick("edged_event_loop_lag_seconds"),
  });
  assert.deepEqual(s.store, {
    size_bytes: 4096,
    readings_committed: 12,
    readings_pending: 5,
    disk_full: true,
    commit_failures: 3,
  });
  assert.deepEqual(s.mqtt, {
    configured: true,
    broker: "mqtt://broker:1883",
    connected: true,
    connects: 2,
    connect_failures: 1,
    inflight: 3,
    acked: 9,
  });
  assert.deepEqual(s.outbox, {
    readings: pick("edged_mqtt_outbox_messages", "readings"),
    messages: pick("edged_mqtt_outbox_messages", "messages"),
    oldest_age_seconds: 0.5,
    dropped: 5,
  });
  assert.deepEqual([s.modules, s.adapters, s.alerts, s.logs], [[], [], [], []]);
});

Deno.test("GET /api/v1/status without a broker or an update source: nulls, not errors", async () => {
  const m = new Metrics();
  const ctx = {
    config: { device_id: "gw-2", mqtt: {} },
    metrics: m,
    readiness: () => ["starting"],
  } as unknown as RuntimeContext;
  const res = await statusComponent(ctx).routes![0].app.request("/?logs=0");
  const s = await res.json();
  assert.equal(s.ready, false);
  assert.deepEqual(s.not_ready, ["starting"]);
  assert.equal(s.update, null);
  assert.deepEqual(s.mqtt, {
    configured: false,
    broker: null,
    connected: false,
    connects: null,
    connect_failures: null,
    inflight: null,
    acked: null,
  });
  assert.deepEqual(s.outbox, {
    readings: null,
    messages: null,
    oldest_age_seconds: null,
    dropped: 0,
  });
});
