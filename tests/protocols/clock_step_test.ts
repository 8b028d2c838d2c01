/**
 * The uplink's age limit on a gateway whose clock NTP sets while edged runs
 * (no real-time clock: it booted in 1970, or at the time it last saved).
 * The real edged runs under libfaketime (Debian's `faketime`), whose offset
 * file steps the system clock of that process alone; its monotonic clock
 * runs on untouched.
 */
import assert from "node:assert/strict";
import { type EdgedProcess, postJson, startEdged } from "../_helpers/edged.ts";
import { freePort } from "../_helpers/mosquitto.ts";
import { batch, metric, mqttEnv } from "./_mqtt.ts";

const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const haveFaketime = (() => {
  try {
    return Deno.statSync(LIBFAKETIME).isFile;
  } catch {
    return false;
  }
})();

const PENDING = 'edged_mqtt_outbox_messages{stream="readings"}';
const EXPIRED = 'edged_mqtt_dropped_total{reason="expired"}';

/** An edged (its broker away) whose system clock follows the offset written to `clockFile`. */
async function edgedOnFakeClock(clockFile: string, maxAgeS: number, dataDir?: string) {
  return await startEdged({
    dataDir,
    env: mqttEnv(`mqtt://127.0.0.1:${freePort()}`, {
      EDGED_MQTT_OUTBOX_MAX_AGE_S: String(maxAgeS),
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: clockFile,
      FAKETIME_CACHE_DURATION: "1", // read the file again every second
      FAKETIME_DONT_FAKE_MONOTONIC: "1",
    }),
  });
}

/** Runs `fn` with a clock file for libfaketime (offset `initial`), removed afterwards. */
async function withClockFile(initial: string, fn: (file: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "edged-clock-" });
  try {
    await Deno.writeTextFile(`${dir}/offset`, initial);
    await fn(`${dir}/offset`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function post(edged: EdgedProcess, from: number, n: number): Promise<void> {
  const res = await postJson(edged, batch(from, n));
  assert.equal(res.status, 202, await res.text());
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const STEP_LOGGED = "the system clock was set by";
const stepLogged = (edged: EdgedProcess) => edged.lines.some((l) => l.includes(STEP_LOGGED));

Deno.test({
  name: "uplink age limit: NTP setting the clock ahead by days does not age what waits",
  ignore: !haveFaketime,
  fn: () =>
    withClockFile("+0", async (clockFile) => {
      // 10 s: far more than the time the checks below take, far less than the step.
      const edged = await edgedOnFakeClock(clockFile, 10);
      try {
        const posted = performance.now();
        await post(edged, 0, 10);
        assert.equal(await metric(edged, PENDING), 10);
        await Deno.writeTextFile(clockFile, "+2d");
        await until(
          "the step to be noticed, or the readings to expire",
          async () => stepLogged(edged) || (await metric(edged, EXPIRED) ?? 0) > 0,
          8000,
        );
        // Before: the step counted as two days of waiting and all 10 were dropped here.
        assert.equal(await metric(edged, EXPIRED) ?? 0, 0, "nothing expired for the step");
        const line = JSON.parse(edged.lines.find((l) => l.includes(STEP_LOGGED))!);
        assert.equal(line.properties?.moved ?? line.moved, 10, JSON.stringify(line));
        assert.equal(await metric(edged, PENDING), 10);
        const age = Number(await metric(edged, "edged_mqtt_outbox_oldest_age_seconds"));
        assert.ok(age < 10, `the oldest reading's age is the time it waited, not ${age} s`);
        // The limit still holds for the time they really waited.
        await until(
          "the readings to expire",
          async () => await metric(edged, EXPIRED) === 10,
          20000,
        );
        const waited = (performance.now() - posted) / 1000;
        assert.ok(waited >= 9, `expired after ${waited.toFixed(1)} s of a 10 s limit`);
        assert.equal(await metric(edged, PENDING), 0);
      } finally {
        await edged.stop();
        await Deno.remove(edged.dataDir, { recursive: true });
      }
    }),
});

Deno.test({
  name:
    "uplink age limit: readings stamped by a clock in 1970 are kept after a restart on a set clock",
  ignore: !haveFaketime,
  // Booted without a real-time clock: 1970 until NTP answers.
  fn: () =>
    withClockFile("@1970-01-02 00:00:00", async (clockFile) => {
      const first = await edgedOnFakeClock(clockFile, 1);
      const dataDir = first.dataDir;
      try {
        try {
          await post(first, 0, 10);
          // Nothing expires on a clock that is not set, however long it runs.
          await new Promise((r) => setTimeout(r, 2500));
          assert.equal(await metric(first, EXPIRED) ?? 0, 0);
          assert.equal(await metric(first, PENDING), 10);
        } finally {
          await first.stop();
        }
        // Restarted (an update, a crash) after NTP set the clock: its stamps of
        // 1970 say nothing of how long those readings have waited.
        await Deno.writeTextFile(clockFile, "+0");
        const second = await edgedOnFakeClock(clockFile, 1, dataDir);
        try {
          await new Promise((r) => setTimeout(r, 2500));
          assert.equal(await metric(second, EXPIRED) ?? 0, 0, "1970 stamps have no age");
          assert.equal(await metric(second, PENDING), 10);
        } finally {
          await second.stop();
        }
      } finally {
        await Deno.remove(dataDir, { recursive: true });
      }
    }),
});

Deno.test({
  name:
    "ingest: once NTP sets back a clock that ran ahead, timestamps from the future are refused again",
  ignore: !haveFaketime,
  fn: () =>
    withClockFile("+30d", async (clockFile) => {
      const edged = await edgedOnFakeClock(clockFile, 0);
      const DAY_MS = 86_400_000;
      const ahead = () => ({
        device_id: "d1",
        metric: "a",
        value: 1,
        timestamp: Date.now() + 2 * DAY_MS,
      });
      try {
        await post(edged, 0, 10);
        await Deno.writeTextFile(clockFile, "+0");
        // Readings received on the clock that ran ahead no longer make edged
        // take its corrected clock for one that is not set (before, it did
        // until the clock caught up with them: 30 days).
        let last = "";
        await until("a reading two days ahead to be refused", async () => {
          const res = await postJson(edged, ahead());
          last = `${res.status} ${await res.text()}`;
          return res.status === 400;
        }, 8000).catch((err) => {
          throw new Error(`${err.message}; last answer: ${last}`);
        });
        assert.match(last, /timestamp/);
        await until("the step to be logged", () => stepLogged(edged), 8000);
      } finally {
        await edged.stop();
        await Deno.remove(edged.dataDir, { recursive: true });
      }
    }),
});
