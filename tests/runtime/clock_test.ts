/**
 * Ingest on a gateway whose clock is not set: without a real-time clock it
 * boots in 1970, or at the time it last saved, until NTP answers. Correct
 * timestamps then lie ahead of its clock, and refusing them as "from the
 * future" would lose readings a sensor will not send again.
 */
import assert from "node:assert/strict";
import { CLOCK_SET_AFTER_MS } from "../../lib/mod.ts";
import { createApi, ingestRoutes, Metrics, ReadingLog, Store } from "../../runtime/mod.ts";

const DAY_MS = 86_400_000;
const TOKEN = "clock-test-token-0123456789";

/** Runs `fn` with the system clock reading `at` (the monotonic clock untouched). */
async function withClockAt<T>(at: number, fn: () => Promise<T>): Promise<T> {
  const real = Date.now;
  const offset = at - real();
  Date.now = () => real() + offset;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

/** The API over `log`, and a POST of one reading with `timestamp` to its ingest. */
function ingestApi(log: ReadingLog): (timestamp: number) => Promise<Response> {
  const metrics = new Metrics();
  const { app } = createApi({
    token: TOKEN,
    metrics,
    notReady: () => [],
    routes: [{
      path: "/api/v1/data",
      app: ingestRoutes({
        log,
        bodyLimitBytes: 4096,
        maxBatch: 10,
        maxFutureSkewMs: 60_000,
        readingsCounter: metrics.counter("edged_ingest_readings_total", "", ["outcome"]),
      }),
    }],
    dashboard: () => new Response(""),
    bodyLimitBytes: 4096,
  });
  return async (timestamp) =>
    await app.request("/api/v1/data", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ device_id: "d", metric: "m", value: 1, timestamp }),
    });
}

Deno.test("timestamps ahead of a clock never set, or set back before a restart, are kept as sent", async () => {
  const dir = await Deno.makeTempDir();
  const store = Store.open(dir);
  try {
    const log = new ReadingLog(store, {});
    const post = ingestApi(log);
    // A clock that reads before this release existed has not been set at all.
    await withClockAt(0, async () => {
      assert.equal((await post(CLOCK_SET_AFTER_MS + DAY_MS)).status, 202);
    });
    const now = Date.now();
    const ahead = now + 5 * DAY_MS;
    // A set clock refuses a timestamp five days ahead.
    const refused = await post(ahead);
    assert.equal(refused.status, 400, await refused.text());

    // A reading taken while the clock read ten days later, then NTP set it back
    // while edged ran: edged saw the step (lib/clock.ts), moved the reading's
    // receive time with it, and takes the clock it was set back to as set.
    await withClockAt(now + 10 * DAY_MS, async () => {
      assert.equal((await post(now + 10 * DAY_MS)).status, 202);
    });
    const back = await post(ahead);
    assert.equal(back.status, 400, await back.text());
    assert.ok(Math.abs(log.lastReceivedMs - Date.now()) < DAY_MS, "moved back with the clock");

    const stored = store.db.prepare("SELECT ts_ms FROM readings ORDER BY id").all() as {
      ts_ms: number;
    }[];
    assert.deepEqual(stored.map((r) => r.ts_ms), [CLOCK_SET_AFTER_MS + DAY_MS, now + 10 * DAY_MS]);
  } finally {
    store.close();
  }
  // After a restart (a power cut; the gateway boots with its clock two days behind): the
  // newest reading on disk says the clock is not set yet.
  const again = Store.open(dir);
  try {
    const log = new ReadingLog(again, {});
    const newest = again.db.prepare("SELECT received_ms FROM readings ORDER BY id DESC LIMIT 1")
      .get() as { received_ms: number };
    assert.equal(log.lastReceivedMs, newest.received_ms);
    const post = ingestApi(log);
    const stale = Date.now() - 2 * DAY_MS;
    await withClockAt(stale, async () => {
      const res = await post(Date.now() + 2 * DAY_MS);
      assert.equal(res.status, 202, await res.text());
    });
  } finally {
    again.close();
    await Deno.remove(dir, { recursive: true });
  }
});
