import assert from "node:assert/strict";
import { CLOCK_SET_AFTER_MS, clockIsSet, ClockSteps } from "../../lib/mod.ts";

Deno.test("ClockSteps: a step of the system clock is reported once; running and slewing are not steps", () => {
  let wall = 1_000_000;
  let mono = 0;
  const steps = new ClockSteps({ now: () => wall, monotonic: () => mono, toleranceMs: 1000 });
  // Both clocks run: no step, however long.
  wall += 3_600_000;
  mono += 3_600_000;
  assert.equal(steps.take(), 0);
  // NTP slews: 0.5 ms a second, looked at every second.
  for (let i = 0; i < 10_000; i++) {
    wall += 1000.5;
    mono += 1000;
    assert.equal(steps.take(), 0);
  }
  // Set ahead by two days, then back by one: each reported once.
  wall += 2 * 86_400_000;
  assert.equal(steps.take(), 2 * 86_400_000);
  assert.equal(steps.take(), 0);
  wall += 5 - 86_400_000; // 5 ms ran, and it was set back a day
  mono += 5;
  assert.equal(steps.take(), -86_400_000);
});

Deno.test("clockIsSet: a clock before 2026 is not set", () => {
  assert.equal(clockIsSet(0), false);
  assert.equal(clockIsSet(CLOCK_SET_AFTER_MS - 1), false);
  assert.equal(clockIsSet(CLOCK_SET_AFTER_MS), true);
  assert.equal(clockIsSet(Date.now()), true);
});
