import assert from "node:assert/strict";
import {
  CLOCK_SET_AFTER_MS,
  clockIsSet,
  ClockSteps,
  type OwedStep,
  StampFollower,
} from "../../lib/mod.ts";

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

Deno.test("StampFollower: a step owes a move of the ids stamped before it; inside a transaction it waits; a failed move is tried again", async () => {
  let wall = 1_000_000;
  const steps = new ClockSteps({ now: () => wall, monotonic: () => 0 });
  let lastId = 10;
  let writing = false;
  let fail = true;
  const moves: OwedStep[][] = [];
  const seen: number[] = [];
  const f = new StampFollower({
    firstId: 5, // ids 1..4 came from an earlier run
    lastId: () => lastId,
    writing: () => writing,
    onStep: (d) => seen.push(d),
    move: (owed) => {
      moves.push(owed.map((o) => ({ ...o })));
      return fail ? Promise.reject(new Error("disk full")) : Promise.resolve();
    },
    steps,
  });
  assert.equal(f.follow(), false, "no step, nothing owed");
  // A step seen while a transaction is written: the range is fixed now, the move comes after it.
  wall += 86_400_000;
  writing = true;
  assert.equal(f.follow(), true);
  assert.deepEqual(seen, [86_400_000]);
  assert.equal(moves.length, 0, "not inside the transaction");
  lastId = 12; // rows stamped after the step
  writing = false;
  await Promise.resolve();
  assert.deepEqual(moves, [[{ upTo: 10, deltaMs: 86_400_000 }]]);
  await new Promise((r) => setTimeout(r, 0));
  // It failed: still owed, tried again at the next look; a rollback gave ids back meanwhile.
  f.clampTo(8);
  fail = false;
  assert.equal(f.follow(), true);
  assert.deepEqual(moves[1], [{ upTo: 8, deltaMs: 86_400_000 }]);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(f.follow(), false, "moved: nothing owed");
  assert.equal(moves.length, 2);
  // Nothing stamped by this process yet: nothing to move.
  const fresh = new StampFollower({
    firstId: 13,
    lastId: () => 12,
    writing: () => false,
    move: () => Promise.reject(new Error("never")),
    steps: new ClockSteps({ now: () => wall, monotonic: () => 0 }),
  });
  wall -= 3_600_000;
  assert.equal(fresh.follow(), false);
});
